//! A pooled HTTP/1.1 client with timeouts; bodies are buffered (every API body is small).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lucid_core::ErrorBody;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid request: {0}")]
    Request(String),
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("request to {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{status}: {message}")]
    Status {
        status: StatusCode,
        /// `LUCID_ERR_<n>` when the server sent the JSON envelope.
        code: Option<String>,
        message: String,
    },
    #[error("cannot decode response from {url}: {reason}")]
    Decode { url: String, reason: String },
}

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header as a string, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Consul-Index` as a number.
    pub fn consul_index(&self) -> Option<u64> {
        self.header("x-consul-index").and_then(|v| v.parse().ok())
    }

    /// Turn a non-2xx response into [`ClientError::Status`].
    pub fn error_for_status(self) -> Result<Response, ClientError> {
        if self.status.is_success() {
            return Ok(self);
        }
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(b) => (Some(b.error.code), b.error.message),
            Err(_) => (None, String::from_utf8_lossy(&self.body).into_owned()),
        };
        Err(ClientError::Status {
            status: self.status,
            code,
            message,
        })
    }

    /// Decode the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode {
            url: String::new(),
            reason: e.to_string(),
        })
    }
}

/// Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose calls time out after `timeout` unless told otherwise.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(32)
            .build(connector);
        HttpClient { inner, timeout }
    }

    /// Send a request with the default timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Response, ClientError> {
        self.send_with_timeout(method, url, headers, body, self.timeout)
            .await
    }

    /// Send a request that must finish within `timeout`.
    pub async fn send_with_timeout(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::Request(format!("bad url {url:?}: {e}")))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body.into()))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| ClientError::Request(format!("bad header name {k:?}: {e}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|e| ClientError::Request(format!("bad header value for {k}: {e}")))?;
            req.headers_mut().insert(name, value);
        }
        let call = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| ClientError::Transport {
                    url: url.to_owned(),
                    reason: error_chain(&e),
                })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                url: url.to_owned(),
                after: timeout,
            }),
        }
    }
}

/// hyper-util's errors hide the useful part (connection refused) in their sources.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
