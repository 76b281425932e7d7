//! A pooled HTTP/1.1 client with timeouts; bodies are buffered (every API body is small).
//! `https://` URLs go over rustls (ring) with the trust anchors, and optionally the client
//! certificate, the client was built with.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lucid_core::ErrorBody;

/// The transport's own error (hyper's, with the io error beneath it), kept as the cause.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong with a call. Each variant keeps what a caller decides on (was the
/// connection made, the status and body, the decoder's error) instead of a message to parse.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid request: {0}")]
    Request(String),
    #[error("request to {url} failed")]
    Transport {
        url: String,
        /// The connection (TCP or TLS handshake) was never made, so the request cannot have
        /// reached the server: safe to send elsewhere.
        connect: bool,
        #[source]
        source: Cause,
    },
    #[error("request to {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{status}: {message}")]
    Status {
        status: StatusCode,
        /// `LUCID_ERR_<n>` when the server sent the JSON envelope.
        code: Option<String>,
        message: String,
        /// The whole body, for callers that read more than the envelope.
        body: Bytes,
    },
    #[error("cannot decode the response")]
    Decode {
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// True when the request certainly never reached the server.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Transport { connect: true, .. })
    }

    /// True when no answer came in time (the request may have been processed).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }

    /// The server's status, when it answered with a non-2xx one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `e` and every cause beneath it, `: `-separated: for logs and messages that show one string
/// (anyhow's `{:#}` does the same).
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
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
            body: self.body,
        })
    }

    /// Decode the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|source| ClientError::Decode { source })
    }
}

/// Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// `https` when built with a TLS configuration: the scheme of [`HttpClient::url`].
    scheme: &'static str,
}

impl HttpClient {
    /// A client whose calls time out after `timeout` unless told otherwise. It has no trust
    /// anchors, so `https://` calls fail verification.
    pub fn new(timeout: Duration) -> Self {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        match cfg {
            Ok(cfg) => Self::build(timeout, Arc::new(cfg), "http"),
            // ring always offers the default protocol versions; keep a working plain client
            // even if that ever changes.
            Err(_) => Self::build(timeout, Arc::new(fallback_config()), "http"),
        }
    }

    /// A client for TLS peers: `https://` calls verify the server with `tls`'s roots and
    /// present its client certificate, if any. [`HttpClient::url`] builds `https` URLs.
    pub fn with_tls(timeout: Duration, tls: Arc<rustls::ClientConfig>) -> Self {
        Self::build(timeout, tls, "https")
    }

    fn build(timeout: Duration, tls: Arc<rustls::ClientConfig>, scheme: &'static str) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            // Below the registry's 10 s idle timeout, so a pooled connection is dropped here
            // before the server closes it under a request about to be sent.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build(connector);
        HttpClient {
            inner,
            timeout,
            scheme,
        }
    }

    /// `<scheme>://<authority><path>`, the scheme being this client's (peer calls between
    /// registry nodes, which are all TLS or all plain).
    pub fn url(&self, authority: &str, path: &str) -> String {
        format!("{}://{authority}{path}", self.scheme)
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
                    connect: e.is_connect(),
                    source: Box::new(e),
                })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ClientError::Transport {
                    url: url.to_owned(),
                    connect: false,
                    source: Box::new(e),
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

fn fallback_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}
