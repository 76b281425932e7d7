//! A per-endpoint circuit breaker with the platform's semantics: closed until
//! `FailureThreshold` consecutive failures, then open; after `RecoveryTimeout` half-open,
//! admitting `HalfOpenMaxCalls` probes; closed again after `SuccessThreshold` successes, open
//! again on any failure. `ErrorTypes` decide which outcomes are failures ([`Outcome::fails`]).
//!
//! The time-based step (open -> half-open) happens lazily, when the breaker is next asked, so
//! there is no timer per endpoint.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use lucid_core::config_entry::CircuitBreaker;

/// What an attempt to reach an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    Timeout,
    /// Could not connect or complete the TLS handshake.
    Connect,
    /// The connection broke mid-request.
    Reset,
}

impl Outcome {
    /// Does this outcome count as a failure under `error_types`? Known tokens: `5xx`, `4xx`,
    /// `gateway-error` (502/503/504), `timeout`, `connection-error`/`connect-failure`,
    /// `reset`, and exact statuses like `503`. Any other token (the platform's
    /// `payment-error`) matches an upstream response whose `x-lucid-error-type` names it.
    pub fn fails(&self, error_types: &[String], app_type: Option<&str>) -> bool {
        error_types.iter().any(|t| match (t.as_str(), self) {
            ("5xx", Outcome::Status(s)) => *s >= 500,
            ("4xx", Outcome::Status(s)) => (400..500).contains(s),
            ("gateway-error", Outcome::Status(s)) => {
                matches!(s, 502..=504)
            }
            ("timeout", Outcome::Timeout) => true,
            ("connection-error" | "connect-failure", Outcome::Connect | Outcome::Reset) => true,
            ("reset", Outcome::Reset) => true,
            (code, Outcome::Status(s))
                if code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) =>
            {
                code == s.to_string()
            }
            (other, Outcome::Status(_)) => app_type == Some(other),
            _ => false,
        })
    }
}

/// What `/clusters` and the metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { admitted: u32, successes: u32 },
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Phase::Closed { .. } => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

#[derive(Debug)]
struct Inner {
    cfg: CircuitBreaker,
    phase: Phase,
}

/// One endpoint's breaker.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

/// Permission to send one request; whether it was a half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Admission {
    probe: bool,
}

/// An admission that gives its probe slot back when dropped unrecorded (the caller went
/// away mid-request), so a half-open circuit cannot wedge with its probes all taken.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    admission: Option<Admission>,
}

impl<'a> Permit<'a> {
    pub fn new(breaker: &'a Breaker, admission: Admission) -> Self {
        Permit {
            breaker,
            admission: Some(admission),
        }
    }

    pub fn record(mut self, failed: bool, now: Instant) -> Option<Transition> {
        let a = self.admission.take()?;
        self.breaker.record(a, failed, now)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(a) = self.admission.take() {
            self.breaker.release(a);
        }
    }
}

/// A state change, for logs and metrics.
pub type Transition = (State, State);

impl Breaker {
    pub fn new(cfg: CircuitBreaker) -> Breaker {
        Breaker {
            inner: Mutex::new(Inner {
                cfg,
                phase: Phase::Closed { failures: 0 },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new configuration applies from now on; the current state is kept.
    pub fn configure(&self, cfg: &CircuitBreaker) {
        let mut g = self.lock();
        if g.cfg != *cfg {
            g.cfg = cfg.clone();
        }
    }

    /// The state now (moving open -> half-open once the recovery timeout has passed).
    pub fn state(&self, now: Instant) -> (State, Option<Transition>) {
        let mut g = self.lock();
        let t = Self::tick(&mut g, now);
        (g.phase.state(), t)
    }

    fn tick(g: &mut Inner, now: Instant) -> Option<Transition> {
        match g.phase {
            Phase::Open { until } if now >= until => {
                g.phase = Phase::HalfOpen {
                    admitted: 0,
                    successes: 0,
                };
                Some((State::Open, State::HalfOpen))
            }
            _ => None,
        }
    }

    /// Would a request be admitted now? (No side effects beyond the lazy time step.)
    pub fn available(&self, now: Instant) -> bool {
        let mut g = self.lock();
        Self::tick(&mut g, now);
        match g.phase {
            Phase::Closed { .. } => true,
            Phase::Open { .. } => false,
            Phase::HalfOpen { admitted, .. } => admitted < g.cfg.half_open_max_calls,
        }
    }

    /// Admit one request, or refuse (open, or half-open with all probes taken).
    pub fn admit(&self, now: Instant) -> (Option<Admission>, Option<Transition>) {
        let mut g = self.lock();
        let t = Self::tick(&mut g, now);
        let max = g.cfg.half_open_max_calls;
        let a = match &mut g.phase {
            Phase::Closed { .. } => Some(Admission { probe: false }),
            Phase::Open { .. } => None,
            Phase::HalfOpen { admitted, .. } if *admitted < max => {
                *admitted += 1;
                Some(Admission { probe: true })
            }
            Phase::HalfOpen { .. } => None,
        };
        (a, t)
    }

    /// An admitted request ended without an outcome (the caller went away): free its probe.
    pub fn release(&self, a: Admission) {
        let mut g = self.lock();
        if let (true, Phase::HalfOpen { admitted, .. }) = (a.probe, &mut g.phase) {
            *admitted = admitted.saturating_sub(1);
        }
    }

    /// Record an admitted request's result.
    pub fn record(&self, a: Admission, failed: bool, now: Instant) -> Option<Transition> {
        let mut g = self.lock();
        let (threshold, successes_needed, recovery) = (
            g.cfg.failure_threshold,
            g.cfg.success_threshold,
            g.cfg.recovery_timeout,
        );
        let before = g.phase.state();
        g.phase = match g.phase {
            Phase::Closed { failures } if failed => {
                if failures + 1 >= threshold {
                    Phase::Open {
                        until: now + recovery,
                    }
                } else {
                    Phase::Closed {
                        failures: failures + 1,
                    }
                }
            }
            Phase::Closed { .. } => Phase::Closed { failures: 0 },
            // A probe's failure re-opens at once; a late answer from before opening is ignored.
            Phase::HalfOpen { .. } if failed && a.probe => Phase::Open {
                until: now + recovery,
            },
            Phase::HalfOpen {
                admitted,
                successes,
            } if a.probe => {
                if successes + 1 >= successes_needed {
                    Phase::Closed { failures: 0 }
                } else {
                    Phase::HalfOpen {
                        admitted,
                        successes: successes + 1,
                    }
                }
            }
            p => p,
        };
        let after = g.phase.state();
        (before != after).then_some((before, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> CircuitBreaker {
        CircuitBreaker {
            failure_threshold: 3,
            recovery_timeout: Duration::from_secs(10),
            half_open_max_calls: 2,
            success_threshold: 2,
            timeout: Duration::from_secs(1),
            error_types: vec!["5xx".into(), "timeout".into()],
        }
    }

    fn call(b: &Breaker, failed: bool, now: Instant) -> Option<Transition> {
        let (a, _) = b.admit(now);
        b.record(a.expect("admitted"), failed, now)
    }

    #[test]
    fn consecutive_failures_open_and_probes_close() {
        let b = Breaker::new(cfg());
        let t0 = Instant::now();
        assert_eq!(call(&b, true, t0), None);
        assert_eq!(call(&b, true, t0), None);
        // A success resets the count: failures must be consecutive.
        assert_eq!(call(&b, false, t0), None);
        assert_eq!(call(&b, true, t0), None);
        assert_eq!(call(&b, true, t0), None);
        assert_eq!(
            call(&b, true, t0),
            Some((State::Closed, State::Open)),
            "third consecutive failure"
        );
        assert!(b.admit(t0 + Duration::from_secs(9)).0.is_none());
        assert_eq!(b.state(t0 + Duration::from_secs(9)).0, State::Open);
        // After the recovery timeout: half-open, exactly two probes.
        let t1 = t0 + Duration::from_secs(10);
        let (p1, t) = b.admit(t1);
        assert_eq!(t, Some((State::Open, State::HalfOpen)));
        let (p2, _) = b.admit(t1);
        assert!(b.admit(t1).0.is_none(), "a third probe is refused");
        assert_eq!(b.record(p1.expect("probe"), false, t1), None);
        assert_eq!(
            b.record(p2.expect("probe"), false, t1),
            Some((State::HalfOpen, State::Closed))
        );
        assert!(b.available(t1));
    }

    #[test]
    fn a_failed_probe_reopens_and_released_probes_free_their_slot() {
        let b = Breaker::new(cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            let _ = call(&b, true, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        let (p1, _) = b.admit(t1);
        let (p2, _) = b.admit(t1);
        b.release(p2.expect("probe"));
        assert!(b.available(t1), "the released probe's slot is free again");
        assert_eq!(
            b.record(p1.expect("probe"), true, t1),
            Some((State::HalfOpen, State::Open))
        );
        assert!(!b.available(t1 + Duration::from_secs(9)));
        assert!(b.available(t1 + Duration::from_secs(10)));
    }

    #[test]
    fn error_types_decide_what_fails() {
        let all: Vec<String> = ["5xx", "timeout", "connection-error", "payment-error", "429"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(Outcome::Status(503).fails(&all, None));
        assert!(Outcome::Status(429).fails(&all, None));
        assert!(!Outcome::Status(404).fails(&all, None));
        assert!(Outcome::Status(402).fails(&all, Some("payment-error")));
        assert!(Outcome::Timeout.fails(&all, None));
        assert!(Outcome::Connect.fails(&all, None));
        assert!(Outcome::Reset.fails(&all, None));
        let only_5xx = vec!["5xx".to_string()];
        assert!(!Outcome::Timeout.fails(&only_5xx, None));
        assert!(!Outcome::Connect.fails(&only_5xx, None));
        assert!(!Outcome::Status(402).fails(&only_5xx, Some("payment-error")));
    }
}
