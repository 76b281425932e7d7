//! Stage 5, classify: what a try came to, as the breaker and the retry decision see it. A
//! refusal (the peer processed nothing) says nothing about the endpoint's health, so it never
//! counts against its breaker.

use crate::breaker::Outcome;
use crate::pool::Refusal;

/// One try, reduced to what decides what happens next.
#[derive(Debug, Clone)]
pub(super) struct Report {
    pub outcome: Outcome,
    /// `x-lucid-error-type` from the peer's answer: an app naming its own error kind.
    pub app_type: Option<String>,
    /// The peer refused the request unprocessed.
    pub refused: Option<Refusal>,
    /// The connection handed the request back: the peer never saw it.
    pub came_back: bool,
}

impl Report {
    /// Does this try count as a failure on the endpoint's breaker (`ErrorTypes`)?
    pub(super) fn breaker_failure(&self, error_types: &[String]) -> bool {
        self.refused.is_none() && self.outcome.fails(error_types, self.app_type.as_deref())
    }

    /// A plain outcome: no app error kind, not refused, not handed back.
    pub(super) fn of(outcome: Outcome) -> Report {
        Report {
            outcome,
            app_type: None,
            refused: None,
            came_back: false,
        }
    }

    /// Envoy's `rq_error`: 5xx answers and requests that got no answer.
    pub(super) fn rq_error(&self) -> bool {
        match self.outcome {
            Outcome::Status(s) => s >= 500,
            Outcome::Grpc(c) => lucid_core::grpc::http_status(c) >= 500,
            Outcome::Timeout | Outcome::Connect | Outcome::Reset => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> Report {
        Report::of(outcome)
    }

    #[test]
    fn a_refusal_never_counts_against_the_breaker() {
        let types = ["5xx".to_owned(), "connect-failure".to_owned()];
        assert!(report(Outcome::Connect).breaker_failure(&types));
        let refused = Report {
            refused: Some(Refusal::GoAway),
            ..report(Outcome::Connect)
        };
        assert!(!refused.breaker_failure(&types));
        assert!(report(Outcome::Status(503)).breaker_failure(&types));
        assert!(!report(Outcome::Status(404)).breaker_failure(&types));
    }

    #[test]
    fn an_app_error_kind_counts_when_named() {
        let types = ["payment-error".to_owned()];
        let flagged = Report {
            app_type: Some("payment-error".into()),
            ..report(Outcome::Status(402))
        };
        assert!(flagged.breaker_failure(&types));
        assert!(!report(Outcome::Status(402)).breaker_failure(&types));
    }

    #[test]
    fn rq_error_is_5xx_or_no_answer() {
        assert!(report(Outcome::Status(500)).rq_error());
        assert!(report(Outcome::Reset).rq_error());
        assert!(!report(Outcome::Status(499)).rq_error());
    }
}
