//! ACL policies, roles and templated policies (`/v1/acl/polic{y,ies}`, `/v1/acl/role{,s}`,
//! `/v1/acl/templated-polic{y,ies}`). A policy's `Rules` (HCL or JSON) must parse and
//! validate before it is stored, and is kept verbatim. The two built-in policies are never
//! stored: they are listed and read like the others and cannot be changed or deleted. A
//! missing policy or role is 404; an ID that is not a UUID is 400.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lucid_core::acl::{self as rules};
use lucid_core::acl_request::{self, Link};
use lucid_core::wire::acl::{PolicyView, RoleView};
use serde_json::{json, Value};

use super::acl::{new_id, policy_ids, refused, uuid_path};
use super::acl_resolve::{self as resolve, builtin_policies};
use super::error::ApiError;
use super::extract::{ApiBody, Incoming};
use super::ApiState;
use crate::store::acl::{AclKind, AclObject};
use crate::types::Command;

fn is_builtin(id: &str) -> bool {
    builtin_policies()
        .iter()
        .any(|p| p.id.eq_ignore_ascii_case(id))
}

/// `GET /v1/acl/policies`: every policy without its rules, the built-ins first.
pub async fn policies(State(api): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let mut all = builtin_policies();
    all.extend(api.node.state.acl_policies()?);
    for p in &mut all {
        p.rules.clear();
    }
    Ok(Json(all).into_response())
}

fn body_policy(body: &ApiBody) -> Result<acl_request::PolicyRequest, ApiError> {
    let v: Value = body.json()?;
    let p = acl_request::policy(&v)
        .map_err(|e| ApiError::bad_request(format!("Policy decoding failed: {e}")))?;
    // Unknown or malformed rules never reach the state.
    rules::parse(&p.rules).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(p)
}

async fn store_policy(api: &ApiState, p: PolicyView, create: bool) -> Result<Response, ApiError> {
    let id = p.id.clone();
    let r = api
        .node
        .write(Command::AclSet {
            object: AclObject::Policy(p),
            create,
        })
        .await?;
    if !r.ok {
        return Err(refused(&r, "the policy was not stored"));
    }
    let stored = api.node.state.acl_policy(&id)?.ok_or_else(|| {
        ApiError::unavailable("the policy was stored but is not readable here yet")
    })?;
    Ok(Json(stored).into_response())
}

/// `PUT /v1/acl/policy`.
pub async fn policy_create(
    State(api): State<Arc<ApiState>>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let p = body_policy(&body)?;
    if p.id.is_some() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new policy",
        ));
    }
    let view = PolicyView {
        id: new_id(),
        name: p.name,
        description: p.description,
        rules: p.rules,
        datacenters: p.datacenters,
        ..PolicyView::default()
    };
    store_policy(&api, view, true).await
}

/// `PUT /v1/acl/policy/<id>`: replace it.
pub async fn policy_update(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    uuid_path(&id, "policy ID")?;
    let p = body_policy(&body)?;
    if p.id
        .as_deref()
        .is_some_and(|b| !b.eq_ignore_ascii_case(&id))
    {
        return Err(ApiError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    if is_builtin(&id) {
        return Err(ApiError::bad_request(format!(
            "Changing the builtin policy {id} is not permitted"
        )));
    }
    let old = api
        .node
        .state
        .acl_policy(&id)?
        .ok_or_else(|| ApiError::not_found(format!("cannot find policy {id}")))?;
    let view = PolicyView {
        name: p.name,
        description: p.description,
        rules: p.rules,
        datacenters: p.datacenters,
        ..old
    };
    store_policy(&api, view, false).await
}

/// `GET /v1/acl/policy/<id>`.
pub async fn policy_read(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&id, "policy ID")?;
    resolve::policy(&api, &id)?
        .map(|p| Json(p).into_response())
        .ok_or_else(|| ApiError::not_found("Requested policy does not exist: ACL not found"))
}

/// `GET /v1/acl/policy/name/<name>`.
pub async fn policy_by_name(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let found = match resolve::policy_id(&api, &name)? {
        Some(id) => resolve::policy(&api, &id)?,
        None => None,
    };
    found
        .map(|p| Json(p).into_response())
        .ok_or_else(|| ApiError::not_found("Requested policy does not exist: ACL not found"))
}

/// `DELETE /v1/acl/policy/<id>`: `true`, also when there was none. Tokens and roles that
/// linked it keep the dead link, which grants nothing and is not shown.
pub async fn policy_delete(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&id, "policy ID")?;
    if let Some(b) = builtin_policies()
        .into_iter()
        .find(|p| p.id.eq_ignore_ascii_case(&id))
    {
        return Err(ApiError::bad_request(format!(
            "Delete operation not permitted on the builtin {} policy",
            b.name
        )));
    }
    api.node
        .write(Command::AclDelete {
            kind: AclKind::Policy,
            id,
        })
        .await?;
    Ok(Json(true).into_response())
}

/// A role as shown: its policy links with their current names.
fn role_view(api: &ApiState, mut r: RoleView) -> Result<RoleView, ApiError> {
    let ids: Vec<String> = r.policies.iter().map(|l| l.id.clone()).collect();
    r.policies = resolve::policy_links(api, &ids)?;
    Ok(r)
}

/// `GET /v1/acl/roles[?policy=<id>]`.
pub async fn roles(State(api): State<Arc<ApiState>>, req: Incoming) -> Result<Response, ApiError> {
    let policy = req.params.get("policy").filter(|p| !p.is_empty());
    let mut out = Vec::new();
    for r in api.node.state.acl_roles()? {
        if policy.is_some_and(|p| !r.policies.iter().any(|l| l.id.eq_ignore_ascii_case(p))) {
            continue;
        }
        out.push(role_view(&api, r)?);
    }
    Ok(Json(out).into_response())
}

fn body_role(api: &ApiState, body: &ApiBody) -> Result<(Option<String>, RoleView), ApiError> {
    let v: Value = body.json()?;
    let r = acl_request::role(&v)
        .map_err(|e| ApiError::bad_request(format!("Role decoding failed: {e}")))?;
    let links: Vec<Link> = r.policies.clone();
    let policies = policy_ids(api, &links)?
        .into_iter()
        .map(|id| lucid_core::wire::acl::PolicyLink {
            id,
            name: String::new(),
        })
        .collect();
    Ok((
        r.id,
        RoleView {
            name: r.name,
            description: r.description,
            policies,
            service_identities: r.service_identities,
            node_identities: r.node_identities,
            templated_policies: r.templated_policies,
            ..RoleView::default()
        },
    ))
}

async fn store_role(api: &ApiState, r: RoleView, create: bool) -> Result<Response, ApiError> {
    let id = r.id.clone();
    let res = api
        .node
        .write(Command::AclSet {
            object: AclObject::Role(r),
            create,
        })
        .await?;
    if !res.ok {
        return Err(refused(&res, "the role was not stored"));
    }
    let stored =
        api.node.state.acl_role(&id)?.ok_or_else(|| {
            ApiError::unavailable("the role was stored but is not readable here yet")
        })?;
    Ok(Json(role_view(api, stored)?).into_response())
}

/// `PUT /v1/acl/role`.
pub async fn role_create(
    State(api): State<Arc<ApiState>>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    let (id, r) = body_role(&api, &body)?;
    if id.is_some() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new role",
        ));
    }
    store_role(&api, RoleView { id: new_id(), ..r }, true).await
}

/// `PUT /v1/acl/role/<id>`: replace it.
pub async fn role_update(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: ApiBody,
) -> Result<Response, ApiError> {
    uuid_path(&id, "role ID")?;
    let (body_id, r) = body_role(&api, &body)?;
    if body_id.is_some_and(|b| !b.eq_ignore_ascii_case(&id)) {
        return Err(ApiError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    let old = api
        .node
        .state
        .acl_role(&id)?
        .ok_or_else(|| ApiError::not_found(format!("cannot find role {id}")))?;
    store_role(&api, RoleView { id: old.id, ..r }, false).await
}

/// `GET /v1/acl/role/<id>`.
pub async fn role_read(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&id, "role ID")?;
    let r = api
        .node
        .state
        .acl_role(&id)?
        .ok_or_else(|| ApiError::not_found("Requested role does not exist: ACL not found"))?;
    Ok(Json(role_view(&api, r)?).into_response())
}

/// `GET /v1/acl/role/name/<name>`.
pub async fn role_by_name(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let st = &api.node.state;
    let r = match st.acl_role_id(&name)? {
        Some(id) => st.acl_role(&id)?,
        None => None,
    }
    .ok_or_else(|| ApiError::not_found("Requested role does not exist: ACL not found"))?;
    Ok(Json(role_view(&api, r)?).into_response())
}

/// `DELETE /v1/acl/role/<id>`: `true`, also when there was none.
pub async fn role_delete(
    State(api): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    uuid_path(&id, "role ID")?;
    api.node
        .write(Command::AclDelete {
            kind: AclKind::Role,
            id,
        })
        .await?;
    Ok(Json(true).into_response())
}

fn template_json(t: &rules::Template) -> Value {
    json!({
        "TemplateName": t.name,
        "Schema": t.schema,
        "Template": t.template,
        "Description": t.description,
    })
}

/// `GET /v1/acl/templated-policies`: every template, by name.
pub async fn templates() -> Json<Value> {
    let map: serde_json::Map<String, Value> = rules::templates()
        .iter()
        .map(|t| (t.name.to_owned(), template_json(t)))
        .collect();
    Json(Value::Object(map))
}

fn template_named(name: &str) -> Result<&'static rules::Template, ApiError> {
    rules::template(name)
        .ok_or_else(|| ApiError::not_found(format!("templated policy {name:?} does not exist")))
}

/// `GET /v1/acl/templated-policy/name/<name>` (names hold a `/`: `builtin/service`).
pub async fn template_read(Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(template_json(template_named(&name)?)))
}

/// `POST /v1/acl/templated-policy/preview/<name>` `{"Name": "api"}`: the policy the template
/// renders to, as a token holding it would get it.
pub async fn template_preview(
    Path(name): Path<String>,
    body: ApiBody,
) -> Result<Json<PolicyView>, ApiError> {
    let t = template_named(&name)?;
    let variable = if body.0.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v: Value = body.json()?;
        let o = v
            .as_object()
            .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
        let mut name = None;
        for (k, val) in o {
            if lucid_core::fold_key(k) != "name" {
                return Err(ApiError::bad_request(format!("{k}: unknown field")));
            }
            name = Some(
                val.as_str()
                    .ok_or_else(|| ApiError::bad_request("Name must be a string"))?
                    .to_owned(),
            );
        }
        name
    };
    let text = rules::render(t, variable.as_deref()).map_err(|e| {
        ApiError::bad_request(format!(
            "validation error for templated policy {name:?}: {e}"
        ))
    })?;
    let id = rules::synthetic_policy_id(&text);
    Ok(Json(PolicyView {
        name: format!("synthetic-policy-{id}"),
        id,
        description: format!("synthetic policy generated from templated policy: {name}"),
        rules: text,
        ..PolicyView::default()
    }))
}
