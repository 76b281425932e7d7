//! The registry's HTTP API on `--http-addr`: Consul-compatible KV, agent, catalog, health,
//! status, operator and Connect CA endpoints, and Lucid's native `/health`, `/status`,
//! `/metrics` and controller API.

pub mod acl;
mod acl_methods;
mod acl_objects;
pub(crate) mod acl_resolve;
mod agent;
mod agent_ops;
pub mod authz;
mod autopilot;
mod ca;
mod ca_config;
mod catalog;
mod config;
mod discovery;
pub mod error;
mod events;
pub mod extract;
mod filter;
mod gateways;
mod health;
mod intentions;
mod kv;
pub mod limits;
mod native;
mod operator;
mod query;
pub mod read;
mod register;
mod session;
mod snapshot;
mod status;
mod txn;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, delete, get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use self::error::ApiError;
use crate::node::Node;

/// What every handler can reach.
pub struct ApiState {
    pub node: Arc<Node>,
    pub metrics: PrometheusHandle,
    pub ca: Arc<crate::ca::Ca>,
    /// What intentions decide when none matches.
    pub intentions_default: lucid_core::intention::Action,
    pub acl: acl::AclSettings,
    /// Blocking queries waiting now, per token and address.
    pub watchers: limits::Watchers,
    /// CSR signings per second, per token.
    pub signing: limits::Signing,
    /// `--enable-script-checks`.
    pub script_checks: bool,
    /// Fired by `PUT /v1/agent/leave`: the node shuts down.
    pub leave: tokio_util::sync::CancellationToken,
    /// Tokens set with `PUT /v1/agent/token/<kind>`, for this run.
    pub agent_tokens: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

/// All routes of the HTTP API.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/health", get(status::health))
        .route("/status", get(status::status))
        .route("/metrics", get(status::metrics))
        .route("/v1/status/leader", get(operator::leader))
        .route("/v1/status/peers", get(operator::peers_handler))
        .route(
            "/v1/operator/raft/configuration",
            get(operator::configuration),
        )
        .route(
            "/v1/operator/raft/join",
            post(operator::join).put(operator::join),
        )
        .route("/v1/operator/raft/peer", delete(operator::remove_peer))
        .route(
            "/v1/operator/raft/transfer-leader",
            post(operator::transfer_leader).put(operator::transfer_leader),
        )
        .route("/v1/operator/autopilot/health", get(autopilot::health))
        .route("/v1/operator/usage", get(autopilot::usage))
        .route("/v1/operator/keyring", any(autopilot::keyring))
        .route("/v1/event/fire/{name}", put(events::fire))
        .route("/v1/coordinate/datacenters", get(events::datacenters))
        .route("/v1/coordinate/update", put(events::update))
        .route("/", get(status::root))
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/reload", put(agent_ops::reload))
        .route("/v1/agent/leave", put(agent_ops::leave))
        .route("/v1/agent/force-leave/{node}", put(agent_ops::force_leave))
        .route("/v1/agent/metrics", get(agent_ops::metrics))
        .route("/v1/agent/monitor", get(agent_ops::monitor))
        .route("/v1/agent/token/{kind}", put(agent_ops::token))
        .route("/v1/agent/maintenance", put(agent_ops::node_maintenance))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/service/register", put(agent::register_service))
        .route(
            "/v1/agent/service/deregister/{id}",
            put(agent::deregister_service),
        )
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent::maintenance),
        )
        .route("/v1/agent/check/register", put(agent::register_check))
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent::deregister_check),
        )
        .route("/v1/agent/check/pass/{id}", put(agent::pass))
        .route("/v1/agent/check/warn/{id}", put(agent::warn))
        .route("/v1/agent/check/fail/{id}", put(agent::fail))
        .route("/v1/agent/check/update/{id}", put(agent::update))
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route("/v1/txn", put(txn::txn))
        .route("/v1/catalog/nodes", get(health::catalog_nodes))
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/services/register", post(native::register))
        .route("/v1/connect/ca/roots", get(ca::roots))
        .route("/v1/agent/connect/ca/roots", get(ca::roots))
        .route("/v1/connect/ca/sign", post(ca::sign))
        .route("/v1/agent/connect/ca/leaf/{service}", get(ca::agent_leaf))
        .route("/v1/connect/ca/certs/{serial}", delete(ca::revoke))
        .route("/certificates", get(ca::list))
        .route("/certificates/ca", get(ca::ca_cert))
        .route(
            "/certificates/{service}",
            post(ca::issue).delete(ca::revoke_service),
        )
        .merge(leader_reads(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authz::enforce,
        ))
        .layer(middleware::from_fn(one_datacenter))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Routes whose `GET` follows Consul's consistency modes: default and `?consistent` are
/// answered by the leader (relayed there by [`read::leader_reads`]), `?stale` locally. Their
/// other methods are writes and pass straight through.
fn leader_reads(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    Router::new()
        .route("/v1/kv", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/v1/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/snapshot", get(snapshot::save).put(snapshot::restore))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/list", get(session::list))
        .route("/v1/event/list", get(events::list))
        .route("/v1/query", get(query::list).post(query::create))
        .route(
            "/v1/query/{id}",
            get(query::get).put(query::update).delete(query::delete),
        )
        .route("/v1/query/{id}/execute", get(query::execute))
        .route("/v1/query/{id}/explain", get(query::explain))
        .route(
            "/v1/operator/autopilot/configuration",
            get(autopilot::get_config).put(autopilot::put_config),
        )
        .route("/v1/coordinate/node/{node}", get(events::node))
        .route("/v1/coordinate/nodes", get(events::nodes))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/catalog/services", get(health::catalog_services))
        .route("/v1/catalog/service/{name}", get(health::catalog_service))
        .route("/v1/health/service/{name}", get(health::health_service))
        .route("/v1/health/checks/{name}", get(health::health_checks))
        .route("/v1/health/state/{state}", get(health::health_state))
        .route("/v1/health/node/{node}", get(health::health_node))
        .route("/v1/health/connect/{name}", get(health::health_connect))
        .route("/v1/health/ingress/{name}", get(gateways::health_ingress))
        .route(
            "/v1/catalog/gateway-services/{gateway}",
            get(gateways::services),
        )
        .route("/v1/catalog/connect/{name}", get(health::catalog_connect))
        .route("/v1/catalog/node/{node}", get(health::catalog_node))
        .route("/v1/catalog/datacenters", get(health::catalog_datacenters))
        .route(
            "/v1/connect/ca/configuration",
            get(ca_config::get).put(ca_config::put),
        )
        .route(
            "/v1/discovery-chain/{name}",
            get(discovery::chain).post(discovery::chain),
        )
        .route("/services", get(native::list))
        .route("/services/{name}", get(native::get).delete(native::delete))
        .route("/v1/connect/ca/revoked", get(ca::revoked))
        .route(
            "/v1/connect/intentions",
            get(intentions::list).post(intentions::create),
        )
        .route(
            "/v1/connect/intentions/exact",
            get(intentions::get_exact)
                .put(intentions::put_exact)
                .delete(intentions::delete_exact),
        )
        .route("/v1/connect/intentions/check", get(intentions::check))
        .route("/v1/connect/intentions/match", get(intentions::matches))
        .route(
            "/v1/connect/intentions/default",
            get(intentions::default_action),
        )
        .route(
            "/v1/connect/intentions/{id}",
            get(intentions::get_id).delete(intentions::delete_id),
        )
        .route("/v1/agent/connect/authorize", post(intentions::authorize))
        .route("/v1/connect/policy", put(intentions::apply_policy))
        .route("/v1/connect/planes", get(intentions::planes))
        .route("/v1/config", put(config::put))
        .route("/v1/config/{kind}", get(config::list))
        .route(
            "/v1/config/{kind}/{name}",
            get(config::get).delete(config::delete),
        )
        .merge(acl::routes(state.clone()))
        .route_layer(middleware::from_fn_with_state(state, read::leader_reads))
}

/// A request for another datacenter (`?dc=`) is refused before anything runs: this cluster
/// is the only one it knows (Consul answers "No path to datacenter" the same way).
async fn one_datacenter(req: Request, next: Next) -> Response {
    use axum::response::IntoResponse;
    let other = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, v)| k == "dc" && !v.is_empty() && v != agent::DATACENTER)
            .map(|(_, v)| v.into_owned())
    });
    match other {
        Some(dc) => ApiError::bad_request(format!("No path to datacenter {dc:?}")).into_response(),
        None => next.run(req).await,
    }
}

async fn not_found() -> Response {
    closing(ApiError::not_found("no such endpoint"))
}

async fn method_not_allowed() -> Response {
    closing(ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        lucid_core::ErrorCode::InvalidConfiguration,
        "method not allowed on this endpoint",
    ))
}

/// The fallbacks never read the request body, and hyper then closes the connection after
/// answering; saying so lets the client open a new one instead of reusing a closing one
/// (a keep-alive client otherwise lost its next request now and then).
fn closing(e: ApiError) -> Response {
    use axum::response::IntoResponse;
    let mut resp = e.into_response();
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// `lucid_http_requests_total` and `lucid_http_request_duration_seconds` by route and status.
async fn count_requests(State(_): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("lucid_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("lucid_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
