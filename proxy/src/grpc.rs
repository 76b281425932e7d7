//! gRPC through the sidecar (HTTP/2 with `content-type: application/grpc*`): its deadline
//! (`grpc-timeout`), its status (`grpc-status` in the headers of a Trailers-Only answer, or in
//! the trailers after the messages), the mesh's own refusals turned into gRPC statuses (a gRPC
//! client reads those, not an HTTP status or a JSON body), and a response body that reports
//! the status in its trailers once they pass, for the breaker.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use lucid_core::grpc;

use crate::reply::{full, Refusal};
use crate::Body;

/// Is this a gRPC message (`application/grpc`, `application/grpc+proto`, ...)?
pub fn is_grpc(h: &HeaderMap) -> bool {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
        })
}

/// The caller's deadline from `grpc-timeout` (1 to 8 digits and a unit: `H`, `M`, `S`, `m`,
/// `u`, `n`); `None` when absent or malformed.
pub fn timeout(h: &HeaderMap) -> Option<Duration> {
    let v = h.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `grpc-status`, if present and a number.
pub fn status(h: &HeaderMap) -> Option<u32> {
    h.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

/// The gRPC status a mesh refusal with this HTTP status becomes: intention denied ->
/// PERMISSION_DENIED, rate limited -> RESOURCE_EXHAUSTED, no endpoint / open circuit / app
/// unreachable -> UNAVAILABLE, timeout -> DEADLINE_EXCEEDED, a request the mesh cannot route
/// -> INTERNAL (gRPC's mapping of 400).
fn code_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        403 => grpc::PERMISSION_DENIED,
        429 => grpc::RESOURCE_EXHAUSTED,
        502 | 503 => grpc::UNAVAILABLE,
        504 => grpc::DEADLINE_EXCEEDED,
        _ => grpc::INTERNAL,
    }
}

/// `grpc-message` is percent-encoded: everything outside printable ASCII, and `%`.
fn encode_message(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    for b in m.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// For a gRPC caller, the mesh's own refusal (`reply::refuse`) as a Trailers-Only gRPC answer:
/// HTTP 200, `grpc-status`, and a `grpc-message` that names the `LUCID_ERR_` code. Anything
/// else (the peer's or the app's answer) passes unchanged.
pub fn for_caller(resp: Response<Body>) -> Response<Body> {
    let Some(r) = resp.extensions().get::<Refusal>() else {
        return resp;
    };
    let code = code_for(resp.status());
    let message = encode_message(&format!("{}: {}", r.code.as_str(), r.message));
    let mut out = Response::new(full(Bytes::new()));
    let h = out.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&message) {
        h.insert("grpc-message", v);
    }
    h.insert("x-lucid-error", HeaderValue::from_static(r.code.as_str()));
    if let Some(v) = resp.headers().get(http::header::RETRY_AFTER) {
        h.insert(http::header::RETRY_AFTER, v.clone());
    }
    out
}

/// How a watched gRPC answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The trailers carried this `grpc-status`.
    Status(u32),
    /// The stream broke, or ended without a status.
    Broken,
    /// The caller went away before the end.
    Dropped,
}

/// A response body that calls `on_end` once: with the status in its trailers, when the stream
/// breaks, or when it is dropped unfinished.
pub struct Watched<B, F: FnOnce(End)> {
    inner: B,
    on_end: Option<F>,
}

impl<B, F: FnOnce(End)> Watched<B, F> {
    pub fn new(inner: B, on_end: F) -> Self {
        Watched {
            inner,
            on_end: Some(on_end),
        }
    }

    fn end(&mut self, how: End) {
        if let Some(f) = self.on_end.take() {
            f(how);
        }
    }
}

impl<B, F: FnOnce(End)> Drop for Watched<B, F> {
    fn drop(&mut self) {
        self.end(End::Dropped);
    }
}

impl<B, F> HttpBody for Watched<B, F>
where
    B: HttpBody<Data = Bytes> + Unpin,
    F: FnOnce(End) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(t) = f.trailers_ref() {
                    this.end(status(t).map_or(End::Broken, End::Status));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.end(End::Broken),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use lucid_core::ErrorCode;

    use super::*;
    use crate::reply::refuse;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn grpc_requests_and_their_deadlines() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[(
            "content-type",
            "application/grpc+proto"
        )])));
        assert!(!is_grpc(&headers(&[("content-type", "application/grpcx")])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        let t = |v| timeout(&headers(&[("grpc-timeout", v)]));
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5000u"), Some(Duration::from_millis(5)));
        assert_eq!(t("123456789S"), None, "at most 8 digits");
        assert_eq!(t("10"), None);
        assert_eq!(t("S"), None);
        assert_eq!(t("-1S"), None);
    }

    #[test]
    fn refusals_become_grpc_statuses_that_name_the_code() {
        let cases = [
            (StatusCode::FORBIDDEN, ErrorCode::SecurityPolicyViolation, 7),
            (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TrafficPolicyFailed,
                8,
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::UpstreamUnavailable,
                14,
            ),
            (StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout, 4),
        ];
        for (http, code, grpc) in cases {
            let r = for_caller(refuse(http, code, "nope 100%"));
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(status(r.headers()), Some(grpc));
            let m = r.headers()["grpc-message"].to_str().unwrap();
            assert_eq!(m, format!("{}: nope 100%25", code.as_str()));
        }
        // The app's own answer is left alone.
        let mut app = Response::new(full(Bytes::from_static(b"x")));
        *app.status_mut() = StatusCode::FORBIDDEN;
        assert_eq!(for_caller(app).status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn the_trailers_status_is_reported_once_at_the_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers(trailers)),
        ];
        let inner = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let body = Watched::new(inner, move |e| tx.send(e).unwrap());
        let collected = body.collect().await.unwrap();
        assert_eq!(status(collected.trailers().unwrap()), Some(14));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [End::Status(14)]);

        let (tx, rx) = std::sync::mpsc::channel();
        let body = Watched::new(full(Bytes::from_static(b"abc")), move |e| {
            tx.send(e).unwrap()
        });
        drop(body);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [End::Dropped]);
    }
}
