//! Typed calls on the registry's HTTP API.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use lucid_core::wire::operator::{JoinAnswer, JoinRequest, Status};
use serde::{Deserialize, Serialize};

use crate::http::{ClientError, HttpClient, Response};

/// One KV entry as Consul returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    pub key: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    /// Base64, or `None` for an empty value.
    pub value: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
}

/// A client for one registry node.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: HttpClient,
    base: String,
    token: Option<String>,
}

impl RegistryClient {
    /// `base` is `http://host:port`; a bare `host:port` (Consul's `CONSUL_HTTP_ADDR`) works too.
    pub fn new(base: &str) -> Self {
        Self::with_http(base, HttpClient::new(Duration::from_secs(15)))
    }

    /// Share an existing connection pool.
    pub fn with_http(base: &str, http: HttpClient) -> Self {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        RegistryClient {
            http,
            base,
            token: None,
        }
    }

    /// Send `X-Consul-Token` with every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A raw call; `path` starts with `/` and may carry a query.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        match &self.token {
            Some(t) => {
                self.http
                    .send(method, &url, &[("x-consul-token", t)], body)
                    .await
            }
            None => self.http.send(method, &url, &[], body).await,
        }
    }

    /// A raw call with its own timeout (blocking queries).
    pub async fn call_with_timeout(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let headers: Vec<(&str, &str)> = match &self.token {
            Some(t) => vec![("x-consul-token", t.as_str())],
            None => vec![],
        };
        self.http
            .send_with_timeout(method, &url, &headers, body, timeout)
            .await
    }

    /// `PUT /v1/kv/<key>`; `Ok(false)` when a `cas` did not match.
    pub async fn kv_put(&self, key: &str, value: impl Into<Bytes>) -> Result<bool, ClientError> {
        self.kv_put_query(key, "", value).await
    }

    /// `PUT /v1/kv/<key>?<query>`.
    pub async fn kv_put_query(
        &self,
        key: &str,
        query: &str,
        value: impl Into<Bytes>,
    ) -> Result<bool, ClientError> {
        let path = with_query(&format!("/v1/kv/{key}"), query);
        let resp = self
            .call(Method::PUT, &path, value)
            .await?
            .error_for_status()?;
        resp.json()
    }

    /// `GET /v1/kv/<key>?raw`: the value, or `None` when absent.
    pub async fn kv_get_raw(&self, key: &str) -> Result<Option<Bytes>, ClientError> {
        let resp = self
            .call(Method::GET, &format!("/v1/kv/{key}?raw"), Bytes::new())
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(resp.error_for_status()?.body))
    }

    /// `GET /v1/kv/<key>?<query>` decoded as the entry list, `None` on 404.
    pub async fn kv_get(
        &self,
        key: &str,
        query: &str,
    ) -> Result<Option<(u64, Vec<KvPair>)>, ClientError> {
        let resp = self
            .call(
                Method::GET,
                &with_query(&format!("/v1/kv/{key}"), query),
                Bytes::new(),
            )
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = resp.error_for_status()?;
        let index = resp.consul_index().unwrap_or(0);
        Ok(Some((index, resp.json()?)))
    }

    /// `DELETE /v1/kv/<key>?<query>`.
    pub async fn kv_delete(&self, key: &str, query: &str) -> Result<bool, ClientError> {
        let resp = self
            .call(
                Method::DELETE,
                &with_query(&format!("/v1/kv/{key}"), query),
                Bytes::new(),
            )
            .await?
            .error_for_status()?;
        resp.json()
    }

    /// `GET /status`: node id, role, term, leader, indexes, peers.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.call(Method::GET, "/status", Bytes::new())
            .await?
            .error_for_status()?
            .json()
    }

    /// `GET /v1/status/leader`: the leader's Raft address, `""` when none.
    pub async fn leader(&self) -> Result<String, ClientError> {
        self.call(Method::GET, "/v1/status/leader", Bytes::new())
            .await?
            .error_for_status()?
            .json()
    }

    /// `POST /v1/operator/raft/join`.
    pub async fn join(&self, req: &JoinRequest) -> Result<JoinAnswer, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Request(e.to_string()))?;
        self.call(Method::POST, "/v1/operator/raft/join", body)
            .await?
            .error_for_status()?
            .json()
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}
