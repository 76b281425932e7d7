//! Consul catalog and health reads: `/v1/catalog/services`, `/v1/catalog/service/<name>`,
//! `/v1/health/service/<name>` (with `?passing` and repeatable `?tag=`), all blocking-capable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use lucid_core::acl::{Access, Resource};
use lucid_core::catalog::{Check, CheckStatus, ExternalNode, Instance};
use lucid_core::wire::catalog::{AgentService, CatalogService, HealthCheck, Node, ServiceEntry};

use super::agent::{DATACENTER, NODE};
use super::authz::Caller;
use super::error::ApiError;
use super::extract::Incoming;
use super::filter;
use super::read::{self, Blocking};
use super::ApiState;
use crate::store::catalog::ServiceEntries;
use crate::store::state::StateError;

pub(super) fn node(api: &ApiState) -> Node {
    let addr = api
        .node
        .me
        .http_addr
        .rsplit_once(':')
        .map_or("", |(h, _)| h)
        .to_owned();
    Node {
        address: addr,
        datacenter: DATACENTER.to_owned(),
        id: api.node.id.to_string(),
        meta: BTreeMap::new(),
        node: NODE.to_owned(),
        tagged_addresses: BTreeMap::new(),
    }
}

/// The nodes an answer may name: the registry's own and the external ones.
pub(super) struct Nodes {
    own: Node,
    external: BTreeMap<String, Node>,
}

impl Nodes {
    fn with<'n>(api: &ApiState, external: impl IntoIterator<Item = &'n ExternalNode>) -> Nodes {
        Nodes {
            own: node(api),
            external: external
                .into_iter()
                .map(|n| (n.name.clone(), Node::external(n, DATACENTER)))
                .collect(),
        }
    }

    /// Every node (`/v1/catalog/nodes`).
    fn read(api: &ApiState) -> Result<Nodes, StateError> {
        Ok(Nodes::with(api, &api.node.state.external_nodes()?))
    }

    /// The nodes `entries` are on, each read once: what one service's answer needs, without
    /// reading every node the catalog has.
    pub(super) fn of_entries(
        api: &ApiState,
        entries: &ServiceEntries,
    ) -> Result<Nodes, StateError> {
        let names: BTreeSet<&str> = entries
            .iter()
            .map(|(i, _)| i.node.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        let mut found = Vec::new();
        for name in names {
            found.extend(api.node.state.external_node_fields(name)?);
        }
        Ok(Nodes::with(api, &found))
    }

    /// The node instance `i` is on. An external node removed since the instance was read is
    /// shown by name only.
    pub(super) fn of(&self, i: &Instance) -> Node {
        if i.node.is_empty() {
            return self.own.clone();
        }
        self.external.get(&i.node).cloned().unwrap_or_else(|| Node {
            node: i.node.clone(),
            datacenter: DATACENTER.to_owned(),
            ..Node::default()
        })
    }
}

/// Consul's own `consul` service: one instance on the registry's node, at its Raft port
/// (Consul's is the server RPC port, 8300). Clients look for it to find the servers.
fn servers(api: &ApiState) -> Instance {
    let port = api
        .node
        .me
        .raft_addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(8300);
    Instance {
        id: "consul".into(),
        name: "consul".into(),
        address: node(api).address,
        port,
        tags: Vec::new(),
        meta: BTreeMap::new(),
        weights: Default::default(),
        mesh_port: None,
        enable_tag_override: false,
        extras: Default::default(),
        node: String::new(),
    }
}

pub(super) fn healthy(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status == CheckStatus::Passing)
}

pub async fn catalog_services(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    // Consul filters the instances (as catalog rows), then gathers the survivors' tags.
    let filter = filter::from_request(&req, filter::service_node())?;
    let blocking = Blocking::from_params(&req.params)?;
    let state = &api.node.state;
    let consul = servers(&api);
    let (index, out) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let (index, instances, _) = state.catalog()?;
        let external = state.external_catalog()?;
        let nodes = Nodes::with(&api, external.iter().map(|n| &n.node));
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let external = external.into_iter().flat_map(|n| n.instances);
        for i in std::iter::once(consul.clone())
            .chain(instances)
            .chain(external)
        {
            if filter::passes(filter.as_ref(), &CatalogService::new(&i, &nodes.of(&i))) {
                out.entry(i.name).or_default().extend(i.tags);
            }
        }
        Ok((index, out))
    })
    .await?;
    Ok(read::indexed_json(&api.node, index, out))
}

/// Which instances a service read is about.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Of {
    /// The service's own instances (`/v1/{health,catalog}/service/<s>`).
    Service,
    /// What a mesh client dials to reach it (`/v1/{health,catalog}/connect/<s>`): proxies
    /// whose `Proxy.DestinationServiceName` is the service, and its Connect-native instances.
    Connect,
}

/// Does instance `i` carry mesh traffic for `service`?
fn serves(i: &Instance, service: &str) -> bool {
    let destination = i
        .extras
        .proxy
        .as_ref()
        .and_then(|p| p.get("DestinationServiceName"))
        .and_then(|d| d.as_str());
    (i.extras.kind == "connect-proxy" && destination == Some(service))
        || (i.extras.connect_native && i.name == service)
}

/// Instances (with their checks) that pass `?tag=` and `?passing`. A `?peer=` names a
/// cluster peering, and there are none: nothing is imported from one, so nothing matches.
///
/// With ACLs on, reading one service needs `service:read` on it (not on every service, as
/// the catalog-wide reads do).
async fn select(
    api: &ApiState,
    caller: &Caller,
    name: &str,
    req: &Incoming,
    of: Of,
) -> Result<(u64, ServiceEntries), ApiError> {
    caller.allows(Resource::Service, name, Access::Read)?;
    let blocking = Blocking::from_params(&req.params)?;
    let tags: Vec<String> = req.params.all("tag").map(str::to_owned).collect();
    let passing = req.params.flag("passing");
    let peered = req.params.get("peer").is_some_and(|p| !p.is_empty());
    let state = &api.node.state;
    let watch = match of {
        Of::Service => read::Watch::Service(name),
        Of::Connect => read::Watch::All,
    };
    read::block_on(&api.node, watch, blocking, || {
        let (index, mut all) = instances_of(state, name, of)?;
        if of == Of::Service && name == "consul" && all.is_empty() {
            all.push((servers(api), Vec::new()));
        }
        if peered {
            return Ok((index, Vec::new()));
        }
        let kept = all
            .into_iter()
            .filter(|(i, _)| tags.iter().all(|t| i.tags.contains(t)))
            .filter(|(_, c)| !passing || healthy(c))
            .collect();
        Ok((index, kept))
    })
    .await
}

pub async fn health_service(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    health_of(&api, &caller, &name, &req, Of::Service).await
}

/// `GET /v1/health/connect/<service>`.
pub async fn health_connect(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    health_of(&api, &caller, &name, &req, Of::Connect).await
}

/// Every instance `of` service `name` with its checks, and the index they are at.
pub(super) fn instances_of(
    state: &crate::store::StateReader,
    name: &str,
    of: Of,
) -> Result<(u64, ServiceEntries), StateError> {
    match of {
        Of::Service => state.service(name),
        Of::Connect => {
            let (index, instances, checks) = state.catalog()?;
            let mut entries: ServiceEntries = instances
                .into_iter()
                .filter(|i| serves(i, name))
                .map(|i| {
                    let own = checks
                        .iter()
                        .filter(|c| c.service_id == i.id)
                        .cloned()
                        .collect();
                    (i, own)
                })
                .collect();
            for n in state.external_catalog()? {
                entries.extend(n.entries().into_iter().filter(|(i, _)| serves(i, name)));
            }
            Ok((index, entries))
        }
    }
}

/// One instance as `/v1/health/service` shows it: node, service, the node's serfHealth and
/// the instance's checks.
pub(super) fn service_entry(node: &Node, i: &Instance, checks: &[Check]) -> ServiceEntry {
    // An external node has no agent, so no serfHealth (as in Consul).
    let mut cs = Vec::new();
    if i.node.is_empty() {
        cs.push(HealthCheck::serf_health(NODE));
    }
    cs.extend(
        checks
            .iter()
            .map(|c| HealthCheck::new(c, Some(i), &node.node)),
    );
    ServiceEntry {
        checks: cs,
        node: node.clone(),
        service: AgentService::new(i, DATACENTER),
    }
}

async fn health_of(
    api: &ApiState,
    caller: &Caller,
    name: &str,
    req: &Incoming,
    of: Of,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(req, filter::check_service_node())?;
    let (index, entries) = select(api, caller, name, req, of).await?;
    let nodes = Nodes::of_entries(api, &entries)?;
    let out: Vec<ServiceEntry> = entries
        .iter()
        .map(|(i, checks)| service_entry(&nodes.of(i), i, checks))
        .collect();
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}

pub async fn catalog_service(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    catalog_of(&api, &caller, &name, &req, Of::Service).await
}

/// `GET /v1/catalog/connect/<service>`.
pub async fn catalog_connect(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    catalog_of(&api, &caller, &name, &req, Of::Connect).await
}

async fn catalog_of(
    api: &ApiState,
    caller: &Caller,
    name: &str,
    req: &Incoming,
    of: Of,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(req, filter::service_node())?;
    let (index, entries) = select(api, caller, name, req, of).await?;
    let nodes = Nodes::of_entries(api, &entries)?;
    let out: Vec<CatalogService> = entries
        .iter()
        .map(|(i, _)| CatalogService::new(i, &nodes.of(i)))
        .collect();
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/health/checks/<service>`: the service's checks, blocking on its index.
pub async fn health_checks(
    State(api): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(&req, filter::health_check())?;
    let (index, entries) = select(&api, &caller, &name, &req, Of::Service).await?;
    let out: Vec<HealthCheck> = entries
        .iter()
        .flat_map(|(i, checks)| {
            let node = if i.node.is_empty() { NODE } else { &i.node };
            checks
                .iter()
                .filter(|c| !c.service_id.is_empty())
                .map(move |c| HealthCheck::new(c, Some(i), node))
        })
        .collect();
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/health/state/<state>`: checks in a state (`any` for all), serfHealth included.
pub async fn health_state(
    State(api): State<Arc<ApiState>>,
    Path(state): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let want = match state.as_str() {
        "any" => None,
        s => Some(CheckStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {s:?} is not any, passing, warning or critical"
            ))
        })?),
    };
    let filter = filter::from_request(&req, filter::health_check())?;
    let blocking = Blocking::from_params(&req.params)?;
    let st = &api.node.state;
    let (index, out) = read::block_on(&api.node, read::Watch::All, blocking, || {
        Ok(node_checks(st, |c| want.is_none_or(|w| c.status == w))?)
    })
    .await?;
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}

/// Every check that `keep` selects, on every node (the registry's own first, serfHealth
/// leading it), and the catalog index.
fn node_checks(
    st: &crate::store::StateReader,
    keep: impl Fn(&HealthCheck) -> bool,
) -> Result<(u64, Vec<HealthCheck>), StateError> {
    // Two reads, not one consistent one: the gate is not re-entrant, and each read is.
    let (index, instances, checks) = st.catalog()?;
    let own = std::iter::once(HealthCheck::serf_health(NODE)).chain(
        checks
            .iter()
            .map(|c| HealthCheck::new(c, instances.iter().find(|i| i.id == c.service_id), NODE)),
    );
    let mut out: Vec<HealthCheck> = own.filter(|c| keep(c)).collect();
    for n in st.external_catalog()? {
        let owner = |c: &Check| n.instances.iter().find(|i| i.id == c.service_id);
        out.extend(
            n.checks
                .iter()
                .map(|c| HealthCheck::new(c, owner(c), &n.node.name))
                .filter(|c| keep(c)),
        );
    }
    Ok((index, out))
}

/// `GET /v1/health/node/<node>`: every check on the node, or `[]`.
pub async fn health_node(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(&req, filter::health_check())?;
    let blocking = Blocking::from_params(&req.params)?;
    let st = &api.node.state;
    let (index, out) = read::block_on(&api.node, read::Watch::All, blocking, || {
        Ok(node_checks(st, |c| c.node == name)?)
    })
    .await?;
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/catalog/nodes`: the registry's own node and the external ones, by name.
pub async fn catalog_nodes(
    State(api): State<Arc<ApiState>>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(&req, filter::node())?;
    let blocking = Blocking::from_params(&req.params)?;
    let (index, mut out) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let index = api.node.state.catalog_index()?;
        let nodes = Nodes::read(&api)?;
        Ok((
            index,
            std::iter::once(nodes.own)
                .chain(nodes.external.into_values())
                .collect::<Vec<_>>(),
        ))
    })
    .await?;
    out.sort_by(|a, b| a.node.cmp(&b.node));
    let out = filter::keep(filter.as_ref(), out);
    Ok(read::indexed_json(&api.node, index, out))
}

/// `GET /v1/catalog/node/<node>`: the node and its services by ID (`?filter=` on each
/// service). A node the catalog does not have is `null`, still indexed, as in Consul.
pub async fn catalog_node(
    State(api): State<Arc<ApiState>>,
    Path(name): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    let filter = filter::from_request(&req, filter::node_service())?;
    let blocking = Blocking::from_params(&req.params)?;
    let st = &api.node.state;
    let (index, found) = read::block_on(&api.node, read::Watch::All, blocking, || {
        let (index, instances, _) = st.catalog()?;
        if name == NODE {
            return Ok((index, Some((node(&api), instances))));
        }
        let found = st
            .external_node(&name)?
            .map(|n| (Node::external(&n.node, DATACENTER), n.instances));
        Ok((index, found))
    })
    .await?;
    let Some((node, instances)) = found else {
        return Ok(read::indexed_json(
            &api.node,
            index,
            serde_json::Value::Null,
        ));
    };
    let services: BTreeMap<String, AgentService> = instances
        .iter()
        .map(|i| AgentService::new(i, DATACENTER))
        .filter(|s| filter::passes(filter.as_ref(), s))
        .map(|s| (s.id.clone(), s))
        .collect();
    let body = serde_json::json!({"Node": node, "Services": services});
    Ok(read::indexed_json(&api.node, index, body))
}

/// `GET /v1/catalog/datacenters`: this cluster is the only datacenter it knows.
pub async fn catalog_datacenters() -> axum::Json<[&'static str; 1]> {
    axum::Json([DATACENTER])
}
