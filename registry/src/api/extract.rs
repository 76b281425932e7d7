//! Request extractors that fail with [`ApiError`] (never axum's plain-text rejections):
//! query parameters as Consul sends them, and size-limited bodies.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONNECTION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Query parameters in order; Consul flags like `?recurse` carry no value.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Self {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// Present at all (`?recurse`, `?recurse=1`, `?recurse=true`), and not explicitly false.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v != "false" && v != "0")
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter {key}={v:?} is not a non-negative integer"
                ))
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

/// What a handler needs to answer here or relay the request to the leader: the query
/// parameters, method, original URI and headers.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub params: Params,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl<S: Send + Sync> FromRequestParts<S> for Incoming {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Nested routers see a stripped URI; forwarding needs the one the client sent.
        let uri = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
        Ok(Incoming {
            params: Params::parse(uri.query().unwrap_or("")),
            method: parts.method.clone(),
            uri,
            headers: parts.headers.clone(),
        })
    }
}

/// A request body of at most `LIMIT` bytes.
pub struct BodyBytes<const LIMIT: usize>(pub Bytes);

/// 1 MiB: the API's body limit (DESIGN §5).
/// Largest API body (KV values have their own, smaller limit).
pub const API_BODY_LIMIT: usize = 1024 * 1024;

pub type ApiBody = BodyBytes<API_BODY_LIMIT>;

/// A body that could not be read. The rest of it is still on the wire, so the connection
/// is closed after the answer: a client must not send its next request behind it.
pub struct BodyRejection(ApiError);

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for BodyBytes<LIMIT> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, _: &S) -> Result<Self, BodyRejection> {
        let body: Body = req.into_body();
        match Limited::new(body, LIMIT).collect().await {
            Ok(c) => Ok(BodyBytes(c.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyRejection(
                ApiError::too_large(format!("request body exceeds the {LIMIT} byte limit")),
            )),
            Err(e) => Err(BodyRejection(ApiError::bad_request(format!(
                "reading request body: {e}"
            )))),
        }
    }
}

impl<const LIMIT: usize> BodyBytes<LIMIT> {
    /// Decode as JSON with a reason on failure. Every JSON body of the API comes through
    /// here, so this is where two spellings of one key (`Service` and `service`, `Name` and
    /// `_name`: Consul's keys ignore case and `_`) are refused, at any depth, before any
    /// reader could pick a different one than another.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let v: serde_json::Value = serde_json::from_slice(&self.0)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
        colliding_keys(&v, "")?;
        serde_json::from_value(v)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
    }
}

/// Refuse an object (at any depth) with two keys equal once case and `_` are ignored.
fn colliding_keys(v: &serde_json::Value, at: &str) -> Result<(), ApiError> {
    match v {
        serde_json::Value::Object(map) => {
            let mut seen: std::collections::HashMap<String, &str> =
                std::collections::HashMap::new();
            for (k, child) in map {
                if let Some(first) = seen.insert(lucid_core::fold_key(k), k) {
                    return Err(ApiError::bad_request(format!(
                        "body keys {at}{first:?} and {at}{k:?} are the same key once case and '_' are ignored; send one"
                    )));
                }
                colliding_keys(child, &format!("{at}{k}."))?;
            }
            Ok(())
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| colliding_keys(x, &format!("{at}[{i}]."))),
        _ => Ok(()),
    }
}
