//! Stage 3, replay: whether a request can be sent more than once. An idempotent request whose
//! body is known to be at most [`MAX_REPLAY`] bytes, to a service with retries, is held in
//! memory; anything else streams once, and only a request the connection handed back unsent
//! can go out again.

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};

use crate::Body;

/// Idempotent requests with bodies up to this size are held so they can be retried.
pub(super) const MAX_REPLAY: u64 = 64 * 1024;

/// The request body: held (so the request can be sent again) or streamed once.
pub(super) enum Payload<B> {
    Held(Bytes),
    Stream(Option<B>),
}

/// May a request with this method be repeated (RFC 9110 §9.2.2)?
pub(super) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl<B> Payload<B>
where
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + 'static,
{
    /// Hold `body` when the request may be retried, else keep it to stream once.
    pub(super) async fn new(parts: &Parts, body: B, attempts: u32) -> Result<Self, hyper::Error> {
        let replayable = idempotent(&parts.method)
            && attempts > 0
            && body.size_hint().upper().is_some_and(|n| n <= MAX_REPLAY);
        if replayable {
            Ok(Payload::Held(body.collect().await?.to_bytes()))
        } else {
            Ok(Payload::Stream(Some(body)))
        }
    }

    /// Can every try carry the body?
    pub(super) fn held(&self) -> bool {
        matches!(self, Payload::Held(_))
    }

    /// The request for the next try: the one handed back unsent, else a fresh copy of a held
    /// body, else the stream (once: `None` after).
    pub(super) fn next(
        &mut self,
        parts: &Parts,
        unsent: Option<Request<Body>>,
    ) -> Option<Request<Body>> {
        if let Some(r) = unsent {
            return Some(r);
        }
        match self {
            Payload::Held(b) => {
                let body = Full::new(b.clone()).map_err(|never| match never {}).boxed();
                Some(Request::from_parts(parts.clone(), body))
            }
            Payload::Stream(s) => s
                .take()
                .map(|b| Request::from_parts(parts.clone(), b.boxed())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::combinators::MapErr;

    use super::*;

    type TestBody = MapErr<Full<Bytes>, fn(Infallible) -> hyper::Error>;

    fn body(n: usize) -> TestBody {
        Full::new(Bytes::from(vec![b'x'; n])).map_err(|never| match never {})
    }

    fn parts(method: Method) -> Parts {
        Request::builder()
            .method(method)
            .uri("/")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    async fn len(r: Request<Body>) -> usize {
        r.into_body().collect().await.unwrap().to_bytes().len()
    }

    #[tokio::test]
    async fn a_small_idempotent_request_is_held_and_sent_as_often_as_needed() {
        let p = parts(Method::PUT);
        let mut payload = Payload::new(&p, body(100), 2).await.unwrap();
        assert!(payload.held());
        for _ in 0..3 {
            assert_eq!(len(payload.next(&p, None).unwrap()).await, 100);
        }
    }

    #[tokio::test]
    async fn anything_else_streams_once() {
        for (method, size, attempts) in [
            (Method::POST, 10, 2),                     // not idempotent
            (Method::GET, MAX_REPLAY as usize + 1, 2), // too large to hold
            (Method::GET, 10, 0),                      // no retries configured
        ] {
            let p = parts(method.clone());
            let mut payload = Payload::new(&p, body(size), attempts).await.unwrap();
            assert!(!payload.held(), "{method} {size} {attempts}");
            assert_eq!(len(payload.next(&p, None).unwrap()).await, size);
            assert!(payload.next(&p, None).is_none(), "a stream goes out once");
        }
    }

    #[tokio::test]
    async fn a_request_handed_back_unsent_goes_out_again_even_when_streamed() {
        let p = parts(Method::POST);
        let mut payload = Payload::new(&p, body(10), 0).await.unwrap();
        let first = payload.next(&p, None).unwrap();
        let again = payload.next(&p, Some(first)).unwrap();
        assert_eq!(len(again).await, 10);
    }
}
