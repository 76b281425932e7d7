//! One JSON call to a registry, as the API suites make them.

use http::{Method, StatusCode};
use lucid_client::RegistryClient;
use serde_json::Value;

/// Send `body` (nothing for `Value::Null`) and return the status and the JSON answer
/// (`Value::Null` when the answer is not JSON).
pub async fn call(
    c: &RegistryClient,
    method: Method,
    path: &str,
    body: Value,
) -> anyhow::Result<(StatusCode, Value)> {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let r = c.call(method, path, body).await?;
    Ok((
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    ))
}
