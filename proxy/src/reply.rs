//! The proxy's own answers: JSON `{"error": {"code", "message"}}` with the `LUCID_ERR_` code
//! also in `x-lucid-error`, so callers can tell the proxy's refusals from their peer's.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lucid_core::{ErrorBody, ErrorCode};

use crate::Body;

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON error answer with a `LUCID_ERR_` code.
pub fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&ErrorBody::new(code, message)).unwrap_or_default();
    let mut r = Response::new(full(body));
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
