//! A per-endpoint circuit breaker with the platform's semantics: closed until
//! `FailureThreshold` consecutive failures, then open; after `RecoveryTimeout` half-open,
//! admitting `HalfOpenMaxCalls` probes; closed again after `SuccessThreshold` successes, open
//! again on any failure. `ErrorTypes` decide which outcomes are failures ([`Outcome::fails`]).
//!
//! The time-based step (open -> half-open) happens lazily, when the breaker is next asked, so
//! there is no timer per endpoint. Every change of state is logged and counted where it
//! happens, inside the breaker, whichever call made it: a caller cannot drop one on the floor.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use lucid_core::config_entry::CircuitBreaker;

/// What an attempt to reach an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// A gRPC call ended with this `grpc-status` (in a Trailers-Only answer, or in the
    /// trailers after the messages).
    Grpc(u32),
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
        if let Outcome::Grpc(code) = self {
            // A gRPC status by its name, else as its HTTP equivalent (`5xx` covers
            // `unavailable`, `internal`, ...).
            let name = lucid_core::grpc::name_of(*code);
            return *code != lucid_core::grpc::OK
                && (error_types.iter().any(|t| Some(t.as_str()) == name)
                    || Outcome::Status(lucid_core::grpc::http_status(*code))
                        .fails(error_types, app_type));
        }
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
    pub const ALL: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

    fn index(self) -> usize {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

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
    /// Changes of state so far, by the state moved to ([`State::index`]).
    moved: [u64; 3],
}

/// One endpoint's breaker.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    /// For the log line of a change: the cluster and the endpoint's address.
    cluster: String,
    endpoint: String,
}

/// Permission to send one request; whether it was a half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Admission {
    probe: bool,
}

/// An admission that gives its probe slot back when dropped unrecorded (the caller went
/// away mid-request), so a half-open circuit cannot wedge with its probes all taken.
pub struct Permit {
    breaker: Arc<Breaker>,
    admission: Option<Admission>,
}

impl Permit {
    pub fn new(breaker: Arc<Breaker>, admission: Admission) -> Self {
        Permit {
            breaker,
            admission: Some(admission),
        }
    }

    pub fn record(mut self, failed: bool, now: Instant) {
        if let Some(a) = self.admission.take() {
            self.breaker.record(a, failed, now);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(a) = self.admission.take() {
            self.breaker.release(a);
        }
    }
}

impl Breaker {
    pub fn new(cfg: CircuitBreaker, cluster: String, endpoint: String) -> Breaker {
        Breaker {
            inner: Mutex::new(Inner {
                cfg,
                phase: Phase::Closed { failures: 0 },
                moved: [0; 3],
            }),
            cluster,
            endpoint,
        }
    }

    /// Move to `next`, logging and counting a change of state.
    fn set(&self, g: &mut Inner, next: Phase) {
        let (from, to) = (g.phase.state(), next.state());
        g.phase = next;
        if from != to {
            g.moved[to.index()] += 1;
            tracing::info!(service = %self.cluster, endpoint = %self.endpoint,
                from = from.as_str(), to = to.as_str(), "circuit");
        }
    }

    /// How many times the circuit has moved to each state.
    pub fn transitions(&self) -> [(State, u64); 3] {
        let g = self.lock();
        State::ALL.map(|s| (s, g.moved[s.index()]))
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
    pub fn state(&self, now: Instant) -> State {
        let mut g = self.lock();
        self.tick(&mut g, now);
        g.phase.state()
    }

    fn tick(&self, g: &mut Inner, now: Instant) {
        if let Phase::Open { until } = g.phase {
            if now >= until {
                let next = Phase::HalfOpen {
                    admitted: 0,
                    successes: 0,
                };
                self.set(g, next);
            }
        }
    }

    /// Would a request be admitted now? (No side effects beyond the lazy time step.)
    pub fn available(&self, now: Instant) -> bool {
        let mut g = self.lock();
        self.tick(&mut g, now);
        match g.phase {
            Phase::Closed { .. } => true,
            Phase::Open { .. } => false,
            Phase::HalfOpen { admitted, .. } => admitted < g.cfg.half_open_max_calls,
        }
    }

    /// Admit one request, or refuse (open, or half-open with all probes taken).
    pub fn admit(&self, now: Instant) -> Option<Admission> {
        let mut g = self.lock();
        self.tick(&mut g, now);
        let max = g.cfg.half_open_max_calls;
        match &mut g.phase {
            Phase::Closed { .. } => Some(Admission { probe: false }),
            Phase::Open { .. } => None,
            Phase::HalfOpen { admitted, .. } if *admitted < max => {
                *admitted += 1;
                Some(Admission { probe: true })
            }
            Phase::HalfOpen { .. } => None,
        }
    }

    /// An admitted request ended without an outcome (the caller went away): free its probe.
    pub fn release(&self, a: Admission) {
        let mut g = self.lock();
        if let (true, Phase::HalfOpen { admitted, .. }) = (a.probe, &mut g.phase) {
            *admitted = admitted.saturating_sub(1);
        }
    }

    /// Record an admitted request's result.
    pub fn record(&self, a: Admission, failed: bool, now: Instant) {
        let mut g = self.lock();
        let (threshold, successes_needed, recovery) = (
            g.cfg.failure_threshold,
            g.cfg.success_threshold,
            g.cfg.recovery_timeout,
        );
        let next = match g.phase {
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
        self.set(&mut g, next);
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

    fn breaker() -> Breaker {
        Breaker::new(cfg(), "ledger".into(), "127.0.0.1:1".into())
    }

    fn call(b: &Breaker, failed: bool, now: Instant) {
        let a = b.admit(now);
        b.record(a.expect("admitted"), failed, now);
    }

    /// Moves to (closed, open, half-open) so far.
    fn moved(b: &Breaker) -> [u64; 3] {
        b.transitions().map(|(_, n)| n)
    }

    #[test]
    fn consecutive_failures_open_and_probes_close() {
        let b = breaker();
        let t0 = Instant::now();
        call(&b, true, t0);
        call(&b, true, t0);
        // A success resets the count: failures must be consecutive.
        call(&b, false, t0);
        call(&b, true, t0);
        call(&b, true, t0);
        assert_eq!(b.state(t0), State::Closed);
        call(&b, true, t0);
        assert_eq!(moved(&b), [0, 1, 0], "third consecutive failure opens");
        assert!(b.admit(t0 + Duration::from_secs(9)).is_none());
        assert_eq!(b.state(t0 + Duration::from_secs(9)), State::Open);
        // After the recovery timeout: half-open, exactly two probes.
        let t1 = t0 + Duration::from_secs(10);
        let p1 = b.admit(t1);
        assert_eq!(moved(&b), [0, 1, 1]);
        let p2 = b.admit(t1);
        assert!(b.admit(t1).is_none(), "a third probe is refused");
        b.record(p1.expect("probe"), false, t1);
        assert_eq!(b.state(t1), State::HalfOpen);
        b.record(p2.expect("probe"), false, t1);
        assert_eq!(moved(&b), [1, 1, 1]);
        assert!(b.available(t1));
    }

    #[test]
    fn the_half_open_step_is_counted_whichever_call_takes_it() {
        // The balancer asks `available` before it admits: that step must count too.
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            call(&b, true, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.available(t1));
        let p = b.admit(t1).expect("probe");
        assert_eq!(moved(&b), [0, 1, 1], "open, then half-open once");
        b.release(p);
    }

    #[test]
    fn a_failed_probe_reopens_and_released_probes_free_their_slot() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            call(&b, true, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        let p1 = b.admit(t1);
        let p2 = b.admit(t1);
        b.release(p2.expect("probe"));
        assert!(b.available(t1), "the released probe's slot is free again");
        b.record(p1.expect("probe"), true, t1);
        assert_eq!(b.state(t1), State::Open);
        assert_eq!(moved(&b), [0, 2, 1]);
        assert!(!b.available(t1 + Duration::from_secs(9)));
        assert!(b.available(t1 + Duration::from_secs(10)));
    }

    #[test]
    fn error_types_decide_what_fails() {
        let all: Vec<String> = ["5xx", "timeout", "connection-error", "payment-error", "429"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(Outcome::Grpc(14).fails(&all, None), "unavailable is a 5xx");
        assert!(!Outcome::Grpc(0).fails(&all, None));
        assert!(!Outcome::Grpc(5).fails(&all, None), "not-found is a 4xx");
        let named = vec!["not-found".to_owned()];
        assert!(Outcome::Grpc(5).fails(&named, None));
        assert!(!Outcome::Grpc(14).fails(&named, None));
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
