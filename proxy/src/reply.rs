//! The proxy's own answers: JSON `{"error": {"code", "message"}}` with the `LUCID_ERR_` code
//! also in `x-lucid-error`, so callers can tell the proxy's refusals from their peer's (and,
//! for gRPC callers, the same refusal as a gRPC status: `grpc.rs`).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lucid_core::{ErrorBody, ErrorCode};

use crate::Body;

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// Marks an answer as the mesh's own refusal, with what it said: a gRPC caller gets it as a
/// gRPC status instead (`grpc::for_caller`).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// A JSON error answer with a `LUCID_ERR_` code.
pub fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    let mut r = Response::new(full(body));
    r.extensions_mut().insert(Refusal {
        code,
        message: message.to_owned(),
    });
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "x-lucid-error",
        http::HeaderValue::from_static(code.as_str()),
    );
    r
}
