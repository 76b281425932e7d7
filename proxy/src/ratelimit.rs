//! The inbound rate limit: one token bucket (governor's GCRA) for the whole sidecar, sized by
//! the service's config entry (`RequestsPerSecond` refill, `Burst` capacity) or else the global
//! `proxy-defaults`, rebuilt when the entry changes. Without either there is no limit, as
//! with Envoy.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lucid_core::config_entry::RateLimit;

struct Bucket {
    cfg: RateLimit,
    limiter: DefaultDirectRateLimiter,
}

impl Bucket {
    fn new(cfg: &RateLimit) -> Bucket {
        let rate = NonZeroU32::new(cfg.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN);
        Bucket {
            cfg: cfg.clone(),
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    }
}

/// The sidecar's inbound limiter.
#[derive(Default)]
pub struct Limiter {
    bucket: ArcSwapOption<Bucket>,
}

impl Limiter {
    /// Apply a (possibly) new configuration (`None`: no limit); an unchanged one keeps the
    /// bucket's state.
    pub fn configure(&self, cfg: Option<&RateLimit>) {
        let current = self.bucket.load();
        if current.as_ref().map(|b| &b.cfg) == cfg {
            return;
        }
        match cfg {
            Some(c) => {
                tracing::info!(
                    rps = c.requests_per_second,
                    burst = c.burst,
                    "inbound rate limit"
                );
                self.bucket.store(Some(Arc::new(Bucket::new(c))));
            }
            None => {
                tracing::info!("no inbound rate limit");
                self.bucket.store(None);
            }
        }
    }

    /// Take a token, or say how long until one is free.
    pub fn check(&self) -> Result<(), Duration> {
        match self.bucket.load().as_ref() {
            Some(b) => b
                .limiter
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
            None => Ok(()),
        }
    }

    pub fn current(&self) -> Option<RateLimit> {
        self.bucket.load().as_ref().map(|b| b.cfg.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused() {
        let l = Limiter::default();
        assert!(
            (0..10_000).all(|_| l.check().is_ok()),
            "no limit by default"
        );
        l.configure(Some(&RateLimit {
            requests_per_second: 1,
            burst: 5,
        }));
        for _ in 0..5 {
            assert!(l.check().is_ok());
        }
        let wait = l.check().expect_err("the sixth is over the burst");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // The same configuration again keeps the (empty) bucket.
        l.configure(Some(&RateLimit {
            requests_per_second: 1,
            burst: 5,
        }));
        assert!(l.check().is_err());
        l.configure(None);
        assert!(l.check().is_ok());
    }
}
