//! Stage 3, rate-limit: the service's one bucket (`ratelimit.rs`); a refused request gets 429
//! `LUCID_ERR_1201` with `Retry-After` in whole seconds, rounded up.

use std::time::Duration;

use http::{Response, StatusCode};
use lucid_core::config_entry::RateLimit;
use lucid_core::ErrorCode;

use super::Refused;
use crate::mesh::Mesh;
use crate::reply::refuse;
use crate::{stats, Body};

/// Admit one request to `mesh`'s app, or the 429.
pub(super) fn admit(mesh: &Mesh) -> Result<(), Refused> {
    mesh.limiter.check().map_err(|wait| {
        stats::rate_limited();
        Box::new(refused(&mesh.me.service, mesh.limiter.current(), wait))
    })
}

fn refused(service: &str, limit: Option<RateLimit>, wait: Duration) -> Response<Body> {
    let limit = limit
        .map(|l| {
            format!(
                " to {} requests/s (burst {})",
                l.requests_per_second, l.burst
            )
        })
        .unwrap_or_default();
    let mut r = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TrafficPolicyFailed,
        &format!("{service} is rate limited{limit}"),
    );
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limit = RateLimit {
            requests_per_second: 5,
            burst: 10,
        };
        let r = refused("api", Some(limit), Duration::from_millis(200));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["x-lucid-error"], "LUCID_ERR_1201");
        let r = refused("api", None, Duration::from_secs(2));
        assert_eq!(r.headers()["retry-after"], "2");
    }
}
