//! Stage 4, pool: one try on one endpoint, over its pooled mTLS connection, within the try's
//! timeout; and the app's answer made from the last try.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use lucid_core::ErrorCode;

use super::classify::Report;
use super::InFlight;
use crate::breaker::Outcome;
use crate::cluster::{Cluster, Endpoint};
use crate::mesh::Mesh;
use crate::pool::{Dial, Refusal, SendError};
use crate::reply::refuse;
use crate::{hop, Body};

pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What one try came to.
pub(super) enum Try {
    Answered(Response<Incoming>),
    Failed {
        outcome: Outcome,
        error: String,
        /// The request, when the peer never saw it.
        unsent: Option<Request<Body>>,
        /// The peer refused it unprocessed (the request itself did not come back).
        refused: Option<Refusal>,
    },
}

/// Send `req` to `ep`, giving up after `within`.
pub(super) async fn attempt(
    mesh: &Mesh,
    cluster: &Cluster,
    ep: &Endpoint,
    req: Request<Body>,
    within: Duration,
    generation: u64,
) -> Try {
    ep.rq_total.fetch_add(1, Ordering::Relaxed);
    let _active = InFlight::new(&ep.rq_active);
    let dial = Dial {
        addr: &ep.addr,
        port: ep.port,
        service: &cluster.service,
        tls: &cluster.tls.http,
        generation,
        connect_timeout: CONNECT_TIMEOUT.min(within),
        trust: &mesh.trust,
    };
    match tokio::time::timeout(within, ep.pool.send(&dial, req)).await {
        Ok(Ok(resp)) => Try::Answered(resp),
        Ok(Err((e, back))) => Try::Failed {
            outcome: match &e {
                SendError::Connect(_) => Outcome::Connect,
                SendError::Failed { unsent: true, .. } | SendError::Refused { .. } => {
                    Outcome::Connect
                }
                SendError::Failed { .. } => Outcome::Reset,
            },
            refused: match &e {
                SendError::Refused { why, .. } => Some(*why),
                _ => None,
            },
            error: e.to_string(),
            unsent: back,
        },
        Err(_) => Try::Failed {
            outcome: Outcome::Timeout,
            error: format!("no answer within {within:?}"),
            unsent: None,
            refused: None,
        },
    }
}

impl Try {
    /// The try as the breaker and the retry decision see it; a gRPC call answered with its
    /// status in the headers (Trailers-Only) by that status.
    pub(super) fn report(&self, is_grpc: bool) -> Report {
        match self {
            Try::Answered(r) => Report {
                outcome: match is_grpc.then(|| crate::grpc::status(r.headers())).flatten() {
                    Some(code) => Outcome::Grpc(code),
                    None => Outcome::Status(r.status().as_u16()),
                },
                app_type: r
                    .headers()
                    .get("x-lucid-error-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                refused: None,
                came_back: false,
            },
            Try::Failed {
                outcome,
                refused,
                unsent,
                ..
            } => Report {
                outcome: *outcome,
                app_type: None,
                refused: *refused,
                came_back: unsent.is_some(),
            },
        }
    }

    /// The request, if the connection handed it back unsent.
    pub(super) fn into_unsent(self) -> Option<Request<Body>> {
        match self {
            Try::Failed { unsent, .. } => unsent,
            Try::Answered(_) => None,
        }
    }

    /// The app's answer: the peer's (hop-by-hop headers dropped), or the mesh's refusal.
    pub(super) fn reply(self, service: &str, ep: &Endpoint, timeout: Duration) -> Response<Body> {
        match self {
            Try::Answered(mut r) => {
                hop::strip(r.headers_mut(), false);
                r.map(|b| b.boxed())
            }
            Try::Failed {
                outcome: Outcome::Timeout,
                ..
            } => refuse(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Timeout,
                &format!("{service} did not answer within {timeout:?}"),
            ),
            Try::Failed { error, .. } => refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::UpstreamUnavailable,
                &format!("{service} at {}:{}: {error}", ep.addr, ep.port),
            ),
        }
    }
}
