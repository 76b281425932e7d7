//! Stage 6, retry: after a try, what next. Send the same request again when the peer refused
//! it unprocessed (a refusal spends no retry), retry on another endpoint when the policy, the
//! method, the retry budget and the deadline allow, or answer the app.

use lucid_core::config_entry::Retry;

use super::classify::Report;
use crate::breaker::Outcome;

/// Retries in flight may be this share of requests in flight (Envoy's default budget)...
const BUDGET_PERCENT: u64 = 20;
/// ...but at least this many.
const BUDGET_MIN: u64 = 3;
/// Sends of one request that a peer refused unprocessed (GOAWAY, our certificate), beyond
/// its retries: each goes to a fresh connection, so more than a few means something else.
pub(super) const MAX_REFUSALS: u32 = 3;

/// Does the retry policy cover this outcome?
pub(super) fn retry_on(retry: &Retry, o: Outcome) -> bool {
    let on = |t: &str| retry.on.iter().any(|x| x == t);
    match o {
        Outcome::Status(s) => {
            (s >= 500 && on("5xx")) || (matches!(s, 502..=504) && on("gateway-error"))
        }
        // By name only, as Envoy's `retry_on` gRPC conditions: a gRPC call's HTTP status is 200.
        Outcome::Grpc(c) => lucid_core::grpc::name_of(c).is_some_and(|n| n != "ok" && on(n)),
        Outcome::Connect => on("connect-failure"),
        Outcome::Reset => on("reset"),
        Outcome::Timeout => on("timeout"),
    }
}

/// May one more retry start, with `active` requests and `retries_active` retries in flight
/// to the destination?
pub(super) fn budget_allows(active: u64, retries_active: u64) -> bool {
    retries_active < (active * BUDGET_PERCENT / 100).max(BUDGET_MIN)
}

/// Where the request stands after a try.
#[derive(Debug, Clone, Copy)]
pub(super) struct Progress {
    /// The body is held, so any try can carry it.
    pub held: bool,
    /// Endpoints tried so far, this one included.
    pub tries: usize,
    /// Refusals already resent.
    pub refusals: u32,
    pub before_deadline: bool,
    /// The destination's retry budget has room.
    pub budget_ok: bool,
    /// A call that is not idempotent (a gRPC call) may only be retried on a status the
    /// service names as safe (`Retry.On`'s gRPC names): not on a reset, a 5xx or a timeout,
    /// after which the server may have done the work.
    pub status_only: bool,
}

/// What to do after a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// The peer processed nothing: send it again, on a fresh connection, spending no retry.
    Resend,
    /// Try another endpoint.
    Retry,
    /// Answer the app with this try's result.
    Reply,
}

pub(super) fn decide(retry: &Retry, r: &Report, p: &Progress) -> Next {
    // A request that came back unsent can go out again whatever its body.
    let sendable = p.held || r.came_back;
    if r.refused.is_some() && sendable && p.refusals < MAX_REFUSALS && p.before_deadline {
        return Next::Resend;
    }
    // A request the peer never saw is safe to send elsewhere whatever its method.
    let named = !p.status_only || matches!(r.outcome, Outcome::Grpc(_));
    let covered = (named && retry_on(retry, r.outcome)) || r.came_back;
    if sendable && covered && p.budget_ok && p.tries <= retry.attempts as usize && p.before_deadline
    {
        Next::Retry
    } else {
        Next::Reply
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pool::Refusal;

    fn policy(on: &[&str]) -> Retry {
        Retry {
            attempts: 2,
            per_try_timeout: Duration::from_secs(1),
            on: on.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn report(outcome: Outcome) -> Report {
        Report::of(outcome)
    }

    const FIRST: Progress = Progress {
        held: true,
        tries: 1,
        refusals: 0,
        before_deadline: true,
        budget_ok: true,
        status_only: false,
    };

    #[test]
    fn a_grpc_call_is_retried_on_a_named_status_only() {
        let r = policy(&["unavailable", "5xx", "reset", "timeout"]);
        let grpc = Progress {
            status_only: true,
            ..FIRST
        };
        assert_eq!(decide(&r, &report(Outcome::Grpc(14)), &grpc), Next::Retry);
        for o in [Outcome::Status(503), Outcome::Reset, Outcome::Timeout] {
            assert_eq!(decide(&r, &report(o), &grpc), Next::Reply, "{o:?}");
        }
        let unsent = Report {
            came_back: true,
            ..report(Outcome::Connect)
        };
        assert_eq!(decide(&r, &unsent, &grpc), Next::Retry, "never sent: safe");
    }

    #[test]
    fn retry_conditions() {
        let r = policy(&["connect-failure", "gateway-error"]);
        assert!(retry_on(&r, Outcome::Connect));
        assert!(retry_on(&r, Outcome::Status(503)));
        assert!(!retry_on(&r, Outcome::Status(500)));
        assert!(!retry_on(&r, Outcome::Status(200)));
        assert!(!retry_on(&r, Outcome::Timeout));
        assert!(!retry_on(&r, Outcome::Reset));
        let g = policy(&["unavailable", "5xx"]);
        assert!(retry_on(&g, Outcome::Grpc(14)));
        assert!(!retry_on(&g, Outcome::Grpc(13)), "internal is not named");
        assert!(!retry_on(&g, Outcome::Grpc(0)));
    }

    #[test]
    fn the_budget_is_a_fifth_of_requests_in_flight_and_at_least_three() {
        assert!(budget_allows(0, 2));
        assert!(!budget_allows(0, 3));
        assert!(budget_allows(100, 19));
        assert!(!budget_allows(100, 20));
    }

    #[test]
    fn a_covered_outcome_is_retried_while_tries_budget_and_time_remain() {
        let r = policy(&["5xx"]);
        let failed = report(Outcome::Status(503));
        assert_eq!(decide(&r, &failed, &FIRST), Next::Retry);
        assert_eq!(
            decide(&r, &report(Outcome::Status(200)), &FIRST),
            Next::Reply
        );
        for p in [
            Progress { tries: 3, ..FIRST },
            Progress {
                budget_ok: false,
                ..FIRST
            },
            Progress {
                before_deadline: false,
                ..FIRST
            },
            Progress {
                held: false,
                ..FIRST
            },
        ] {
            assert_eq!(decide(&r, &failed, &p), Next::Reply, "{p:?}");
        }
    }

    #[test]
    fn a_request_that_came_back_unsent_is_retried_whatever_the_policy() {
        let streamed = Progress {
            held: false,
            ..FIRST
        };
        let back = Report {
            came_back: true,
            ..report(Outcome::Connect)
        };
        assert_eq!(decide(&policy(&[]), &back, &streamed), Next::Retry);
        let lost = report(Outcome::Reset);
        assert_eq!(decide(&policy(&["reset"]), &lost, &streamed), Next::Reply);
    }

    #[test]
    fn a_refusal_is_resent_without_spending_a_retry_a_few_times() {
        let refused = Report {
            refused: Some(Refusal::GoAway),
            ..report(Outcome::Connect)
        };
        let no_retries = Retry {
            attempts: 0,
            ..policy(&[])
        };
        assert_eq!(decide(&no_retries, &refused, &FIRST), Next::Resend);
        let used = Progress {
            refusals: MAX_REFUSALS,
            ..FIRST
        };
        assert_eq!(decide(&no_retries, &refused, &used), Next::Reply);
        let streamed = Progress {
            held: false,
            ..FIRST
        };
        assert_eq!(
            decide(&no_retries, &refused, &streamed),
            Next::Reply,
            "a streamed body that did not come back cannot be sent again"
        );
    }
}
