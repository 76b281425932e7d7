//! Stage 3, replay: whether a request can be sent more than once. An idempotent request whose
//! body is known to be at most [`MAX_REPLAY`] bytes, to a service with retries, is held in
//! memory. A gRPC call (a POST whose body is a stream of unknown length) to a service with
//! retries streams at once while a copy of what passes is kept, up to the same size: a retry
//! can carry the copy when the whole body fitted (a unary call, a short stream), never
//! otherwise. Anything else streams once, and only a request the connection handed back unsent
//! can go out again.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::Body;

/// Idempotent requests with bodies up to this size are held so they can be retried.
pub(super) const MAX_REPLAY: u64 = 64 * 1024;

/// Which requests may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Idempotent methods (RFC 9110 §9.2.2) with a body of known, small size.
    Idempotent,
    /// A gRPC call: `Retry.On` names the statuses the service says are safe to retry.
    GrpcStatuses,
}

/// The request body: held (so the request can be sent again), streamed with a copy kept, or
/// streamed once.
pub(super) enum Payload<B> {
    Held(Bytes),
    Tee {
        body: Option<B>,
        copy: Arc<Mutex<Copy>>,
    },
    Stream(Option<B>),
}

/// What a tee has seen of the body.
#[derive(Debug, Default)]
pub(super) struct Copy {
    data: BytesMut,
    /// The body ended with all of it copied.
    complete: bool,
    /// More than [`MAX_REPLAY`], or trailers: it cannot be sent again.
    spoiled: bool,
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
    B: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
{
    /// Hold `body` when the request may be retried, tee a gRPC call, else keep it to stream
    /// once.
    pub(super) async fn new(
        parts: &Parts,
        body: B,
        attempts: u32,
        replay: Replay,
    ) -> Result<Self, hyper::Error> {
        if attempts == 0 {
            return Ok(Payload::Stream(Some(body)));
        }
        match replay {
            Replay::Idempotent
                if idempotent(&parts.method)
                    && body.size_hint().upper().is_some_and(|n| n <= MAX_REPLAY) =>
            {
                Ok(Payload::Held(body.collect().await?.to_bytes()))
            }
            // Nothing to copy: hyper would never poll it.
            Replay::GrpcStatuses if body.is_end_stream() => Ok(Payload::Held(Bytes::new())),
            Replay::GrpcStatuses => Ok(Payload::Tee {
                body: Some(body),
                copy: Arc::default(),
            }),
            Replay::Idempotent => Ok(Payload::Stream(Some(body))),
        }
    }

    /// Can the next try carry the whole body?
    pub(super) fn held(&self) -> bool {
        match self {
            Payload::Held(_) => true,
            Payload::Tee { copy, .. } => {
                let c = copy.lock().unwrap_or_else(PoisonError::into_inner);
                c.complete && !c.spoiled
            }
            Payload::Stream(_) => false,
        }
    }

    /// The request for the next try: the one handed back unsent, else a fresh copy of a held
    /// (or fully copied) body, else the stream (once: `None` after).
    pub(super) fn next(
        &mut self,
        parts: &Parts,
        unsent: Option<Request<Body>>,
    ) -> Option<Request<Body>> {
        if let Some(r) = unsent {
            return Some(r);
        }
        let held = self.held();
        match self {
            Payload::Held(b) => Some(again(parts, b.clone())),
            Payload::Tee { body, copy } => match body.take() {
                Some(b) => {
                    let tee = Tee {
                        inner: b,
                        copy: copy.clone(),
                    };
                    Some(Request::from_parts(parts.clone(), tee.boxed()))
                }
                None if held => {
                    let c = copy.lock().unwrap_or_else(PoisonError::into_inner);
                    Some(again(parts, c.data.clone().freeze()))
                }
                None => None,
            },
            Payload::Stream(s) => s
                .take()
                .map(|b| Request::from_parts(parts.clone(), b.boxed())),
        }
    }
}

fn again(parts: &Parts, b: Bytes) -> Request<Body> {
    let body = Full::new(b).map_err(|never| match never {}).boxed();
    Request::from_parts(parts.clone(), body)
}

/// A body that streams its inner body while copying it.
struct Tee<B> {
    inner: B,
    copy: Arc<Mutex<Copy>>,
}

impl<B> HttpBody for Tee<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(ready) = &r {
            let mut c = this.copy.lock().unwrap_or_else(PoisonError::into_inner);
            match ready {
                Some(Ok(f)) => match f.data_ref() {
                    Some(d) if !c.spoiled => {
                        if c.data.len() as u64 + d.len() as u64 > MAX_REPLAY {
                            c.spoiled = true;
                            c.data = BytesMut::new();
                        } else {
                            c.data.extend_from_slice(d);
                        }
                        // hyper sends the last frame with END_STREAM when the body says it
                        // is at its end, and never polls it again for the `None`.
                        if this.inner.is_end_stream() {
                            c.complete = true;
                        }
                    }
                    Some(_) => {}
                    None => c.spoiled = true,
                },
                Some(Err(_)) => c.spoiled = true,
                None => c.complete = true,
            }
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
        let mut payload = Payload::new(&p, body(100), 2, Replay::Idempotent)
            .await
            .unwrap();
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
            let mut payload = Payload::new(&p, body(size), attempts, Replay::Idempotent)
                .await
                .unwrap();
            assert!(!payload.held(), "{method} {size} {attempts}");
            assert_eq!(len(payload.next(&p, None).unwrap()).await, size);
            assert!(payload.next(&p, None).is_none(), "a stream goes out once");
        }
    }

    #[tokio::test]
    async fn a_request_handed_back_unsent_goes_out_again_even_when_streamed() {
        let p = parts(Method::POST);
        let mut payload = Payload::new(&p, body(10), 0, Replay::Idempotent)
            .await
            .unwrap();
        let first = payload.next(&p, None).unwrap();
        let again = payload.next(&p, Some(first)).unwrap();
        assert_eq!(len(again).await, 10);
    }

    #[tokio::test]
    async fn a_grpc_call_streams_at_once_and_its_copy_serves_a_retry_when_whole() {
        let p = parts(Method::POST);
        let mut payload = Payload::new(&p, body(100), 1, Replay::GrpcStatuses)
            .await
            .unwrap();
        assert!(
            !payload.held(),
            "nothing copied before the first try sends it"
        );
        assert_eq!(len(payload.next(&p, None).unwrap()).await, 100);
        assert!(payload.held(), "the whole body passed and was copied");
        assert_eq!(len(payload.next(&p, None).unwrap()).await, 100);

        let big = MAX_REPLAY as usize + 1;
        let mut payload = Payload::new(&p, body(big), 1, Replay::GrpcStatuses)
            .await
            .unwrap();
        assert_eq!(len(payload.next(&p, None).unwrap()).await, big);
        assert!(!payload.held(), "too large to keep a copy of");
        assert!(payload.next(&p, None).is_none());
    }
}
