//! Consul's `PUT /v1/txn`: a list of KV, session, service and check operations, applied as
//! one Raft command, all or nothing (`store/txn.rs`). 200 with `{"Results", "Errors": null}`,
//! or 409 with the failed operations in `Errors` and nothing changed; more than
//! [`MAX_OPS`] operations is 413, and a body that does not parse is 400, before anything
//! is written.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use lucid_core::acl::{Access, Resource};
use lucid_core::fold_key;
use serde_json::{json, Map, Value};

use super::agent::NODE;
use super::authz::Caller;
use super::error::ApiError;
use super::extract::ApiBody;
use super::kv::{MAX_KEY, MAX_VALUE};
use super::ApiState;
use crate::store::txn::{CatalogVerb, KvVerb, TxnOp, MAX_OPS};
use crate::types::{now_ms, Command};

/// An object's fields by Consul's key rules (case and `_` ignored).
fn fields(v: &Value, what: &str) -> Result<Map<String, Value>, ApiError> {
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be an object")))?;
    Ok(o.iter().map(|(k, v)| (fold_key(k), v.clone())).collect())
}

fn text(o: &Map<String, Value>, k: &str) -> String {
    o.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn number(o: &Map<String, Value>, k: &str, at: &str) -> Result<u64, ApiError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!("{at}.{k}: must be a non-negative integer"))
        }),
    }
}

fn verb<T: serde::de::DeserializeOwned>(o: &Map<String, Value>, at: &str) -> Result<T, ApiError> {
    let v = text(o, "verb");
    serde_json::from_value(Value::String(v.clone())).map_err(|_| {
        ApiError::bad_request(format!("{at}.Verb: {v:?} is not a verb of this operation"))
    })
}

fn kv_op(o: &Map<String, Value>, at: &str) -> Result<TxnOp, ApiError> {
    let key = text(o, "key");
    if key.len() > MAX_KEY {
        return Err(ApiError::bad_request(format!(
            "{at}.Key: longer than {MAX_KEY} bytes"
        )));
    }
    let value = match o.get("value") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(b)) => STANDARD
            .decode(b)
            .map_err(|e| ApiError::bad_request(format!("{at}.Value: not base64: {e}")))?,
        Some(_) => return Err(ApiError::bad_request(format!("{at}.Value: must be base64"))),
    };
    if value.len() > MAX_VALUE {
        return Err(ApiError::too_large(format!(
            "{at}.Value: {} bytes; the limit is {MAX_VALUE}",
            value.len()
        )));
    }
    let verb: KvVerb = verb(o, at)?;
    let session = text(o, "session");
    if matches!(verb, KvVerb::Lock | KvVerb::Unlock) && session.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{at}.Session: required to lock or unlock"
        )));
    }
    Ok(TxnOp::Kv {
        verb,
        key,
        value,
        flags: number(o, "flags", at)?,
        index: number(o, "index", at)?,
        session,
    })
}

fn op(v: &Value, n: usize) -> Result<TxnOp, ApiError> {
    let top = fields(v, &format!("[{n}]"))?;
    if top.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "[{n}]: an operation has exactly one of KV, Session, Service, Check"
        )));
    }
    let (kind, body) = top
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("empty operation"))?;
    let at = format!("[{n}].{kind}");
    let o = fields(&body, &at)?;
    match kind.as_str() {
        "kv" => kv_op(&o, &at),
        "session" => {
            if text(&o, "verb") != "delete" {
                return Err(ApiError::bad_request(format!(
                    "{at}.Verb: sessions only take delete"
                )));
            }
            let s = o
                .get("session")
                .map(|s| fields(s, &at))
                .transpose()?
                .unwrap_or_default();
            Ok(TxnOp::Session { id: text(&s, "id") })
        }
        "service" => {
            let verb: CatalogVerb = verb(&o, &at)?;
            let svc = o.get("service").cloned().unwrap_or(Value::Null);
            let registration = if verb == CatalogVerb::Set {
                Some(
                    lucid_core::catalog::parse_registration(&svc, |name| name.to_owned())
                        .map_err(|e| ApiError::bad_request(format!("{at}.Service: {e}")))?,
                )
            } else {
                None
            };
            let id = svc
                .as_object()
                .map(|s| fields(&Value::Object(s.clone()), &at))
                .transpose()?
                .map(|s| text(&s, "id"))
                .unwrap_or_default();
            Ok(TxnOp::Service {
                verb,
                id,
                registration,
                // Set by `authorize` from the caller.
                keep_owner: true,
            })
        }
        "check" => {
            let verb: CatalogVerb = verb(&o, &at)?;
            let c = o.get("check").cloned().unwrap_or(Value::Null);
            let check = if verb == CatalogVerb::Set {
                Some(
                    lucid_core::catalog::parse_check(&c)
                        .map_err(|e| ApiError::bad_request(format!("{at}: {e}")))?,
                )
            } else {
                None
            };
            let id = c
                .as_object()
                .map(|s| fields(&Value::Object(s.clone()), &at))
                .transpose()?
                .map(|s| text(&s, "checkid"))
                .unwrap_or_default();
            Ok(TxnOp::Check { verb, id, check })
        }
        "node" => Err(ApiError::bad_request(format!(
            "{at}: node operations are not supported (lucid-registry's catalog is one node)"
        ))),
        other => Err(ApiError::bad_request(format!(
            "[{n}]: unknown operation {other:?}"
        ))),
    }
}

/// `PUT /v1/txn`.
/// Every operation is held to the rule its kind of request would be: keys to key rules
/// (a tree delete to write on the whole prefix), sessions to session rules on this node,
/// services and checks to their owning service.
fn authorize(api: &ApiState, caller: &Caller, ops: &mut [TxnOp]) -> Result<(), ApiError> {
    use KvVerb::*;
    let authz = caller.authorizer();
    for o in ops.iter_mut() {
        match o {
            TxnOp::Kv { verb, key, .. } => match verb {
                Get | GetTree | CheckIndex | CheckSession | CheckNotExists => {
                    caller.allows(Resource::Key, key, Access::Read)?
                }
                Set | Cas | Lock | Unlock | Delete | DeleteCas => {
                    caller.allows(Resource::Key, key, Access::Write)?
                }
                DeleteTree if authz.key_write_prefix(key) => {}
                DeleteTree => {
                    return Err(super::authz::denied(format!(
                        "this token lacks permission 'key:write' on {key:?} and every key under it"
                    )))
                }
            },
            TxnOp::Session { .. } => caller.allows(Resource::Session, NODE, Access::Write)?,
            // The same checks as every registration endpoint, and the owner kept at apply
            // time for anyone but management.
            TxnOp::Service {
                registration: Some(r),
                keep_owner,
                ..
            } => {
                super::register::vet(api, caller, r)?;
                *keep_owner = !caller.is_management();
            }
            TxnOp::Service { verb, id, .. } => match verb {
                CatalogVerb::Get => caller
                    .allows(Resource::Service, "", Access::Read)
                    .or_else(|_| super::agent::owns_instance(api, caller, id))?,
                _ => super::agent::owns_instance(api, caller, id)?,
            },
            TxnOp::Check { .. } if caller.is_management() => {}
            TxnOp::Check { .. } => {
                return Err(super::authz::denied(
                    "check operations need a management token",
                ))
            }
        }
    }
    Ok(())
}

pub async fn txn(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let v: Value = body.json()?;
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::bad_request("the body must be a list of operations"))?;
    if list.len() > MAX_OPS {
        return Err(ApiError::too_large(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            list.len()
        )));
    }
    let mut ops = list
        .iter()
        .enumerate()
        .map(|(n, v)| op(v, n))
        .collect::<Result<Vec<_>, _>>()?;
    authorize(&api, &caller, &mut ops)?;
    for o in &ops {
        if let TxnOp::Check { check: Some(c), .. } = o {
            super::register::scripts_allowed(&api, std::slice::from_ref(c))?
        }
    }
    let res = api
        .node
        .write(Command::Txn {
            ops,
            now_ms: now_ms(),
        })
        .await?;
    let mut answer = res
        .detail
        .unwrap_or_else(|| json!({"Results": null, "Errors": null}));
    // A get-tree answers the whole subtree: leave out what the caller may not read, as
    // Consul filters transaction results.
    if let Some(results) = answer.get_mut("Results").and_then(Value::as_array_mut) {
        results.retain(|r| {
            r.get("KV")
                .and_then(|kv| kv.get("Key"))
                .and_then(Value::as_str)
                .is_none_or(|k| caller.authorizer().allowed(Resource::Key, k, Access::Read))
        });
    }
    let status = if res.ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let mut resp = (status, Json(answer)).into_response();
    super::read::meta_headers(&api.node, res.index, resp.headers_mut());
    Ok(resp)
}
