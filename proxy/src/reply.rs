//! The proxy's own answers: JSON `{"error": {"code", "message"}}` with the `LUCID_ERR_` code
//! also in `x-lucid-error`, so callers can tell the proxy's refusals from their peer's.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::Body;

/// A body from bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A JSON error answer with a `LUCID_ERR_` code.
pub fn refuse(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-lucid-error", v);
    }
    r
}
