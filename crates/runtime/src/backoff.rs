//! One retry schedule for every reconnect loop of both binaries: exponential from a minimum
//! to a maximum, each delay stretched by a random part of itself (backon's jitter), so a
//! fleet restarted together (a power cut on a rack of Pis) does not come back knocking in
//! lockstep.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays between tries: `min`, doubling to `max`, each plus up to itself again at random.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::new()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
            max,
        }
    }

    /// How long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        // Endless by construction; `max` only if backon ever ends it.
        self.delays.next().unwrap_or(self.max)
    }

    /// After a success: the next failure starts from the minimum again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_starts_over_after_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let first = b.next_delay();
        assert!(first >= min && first <= min * 2, "{first:?}");
        let grown: Vec<Duration> = (0..25).map(|_| b.next_delay()).collect();
        let later = &grown[5..];
        assert!(
            later.iter().all(|d| *d >= max && *d <= max * 2),
            "{grown:?}"
        );
        // Jitter: twenty capped delays are not all the same.
        assert!(later.iter().any(|d| *d != later[0]), "{later:?}");
        b.reset();
        assert!(b.next_delay() <= min * 2);
    }
}
