//! `?filter=` on the endpoints Consul accepts it on: the schema of each listed element (the
//! selectors Consul's docs give, under its exact field names) and one helper that compiles the
//! expression once per request, before any blocking wait, and keeps the matching elements.
//! A bad expression is 400 with go-bexpr's message.

use lucid_core::filter::{fields, Fields, Filter, Kind};
use serde::Serialize;

use super::error::ApiError;
use super::extract::Incoming;

fn map_of(k: Kind) -> Kind {
    Kind::Map(Box::new(k))
}

fn weights() -> Kind {
    Kind::Struct(fields([("Passing", Kind::Int), ("Warning", Kind::Int)]))
}

fn tagged_service_addresses() -> Kind {
    map_of(Kind::Struct(fields([
        ("Address", Kind::Str),
        ("Port", Kind::Int),
    ])))
}

fn proxy() -> Kind {
    let upstream = fields([
        ("DestinationType", Kind::Str),
        ("DestinationNamespace", Kind::Str),
        ("DestinationName", Kind::Str),
        ("Datacenter", Kind::Str),
        ("LocalBindAddress", Kind::Str),
        ("LocalBindPort", Kind::Int),
        ("MeshGateway", Kind::Struct(fields([("Mode", Kind::Str)]))),
    ]);
    Kind::Struct(fields([
        ("DestinationServiceName", Kind::Str),
        ("DestinationServiceID", Kind::Str),
        ("LocalServiceAddress", Kind::Str),
        ("LocalServicePort", Kind::Int),
        ("Mode", Kind::Str),
        (
            "TransparentProxy",
            Kind::Struct(fields([("OutboundListenerPort", Kind::Int)])),
        ),
        ("MeshGateway", Kind::Struct(fields([("Mode", Kind::Str)]))),
        ("Upstreams", Kind::StructList(upstream)),
    ]))
}

/// `structs.HealthCheck`: `/v1/agent/checks`, `/v1/health/{checks,state,node}`.
pub(crate) fn health_check() -> Fields {
    fields([
        ("Node", Kind::Str),
        ("CheckID", Kind::Str),
        ("Name", Kind::Str),
        ("Status", Kind::Str),
        ("Notes", Kind::Str),
        ("Output", Kind::Str),
        ("ServiceID", Kind::Str),
        ("ServiceName", Kind::Str),
        ("ServiceTags", Kind::StrList),
        ("Type", Kind::Str),
        ("Interval", Kind::Str),
        ("Timeout", Kind::Str),
        ("ExposedPort", Kind::Int),
        ("PeerName", Kind::Str),
    ])
}

/// `structs.Node`: `/v1/catalog/nodes`, `Node.*` of a health entry.
pub(crate) fn node() -> Fields {
    fields([
        ("ID", Kind::Str),
        ("Node", Kind::Str),
        ("Address", Kind::Str),
        ("Datacenter", Kind::Str),
        ("TaggedAddresses", map_of(Kind::Str)),
        ("Meta", map_of(Kind::Str)),
        ("Partition", Kind::Str),
        ("PeerName", Kind::Str),
    ])
}

/// `structs.NodeService` / `api.AgentService`: `/v1/agent/services`, `Service.*` of a health
/// entry, the services of `/v1/catalog/node/<n>`.
pub(crate) fn node_service() -> Fields {
    fields([
        ("Kind", Kind::Str),
        ("ID", Kind::Str),
        ("Service", Kind::Str),
        ("Tags", Kind::StrList),
        ("Address", Kind::Str),
        ("TaggedAddresses", tagged_service_addresses()),
        ("Meta", map_of(Kind::Str)),
        ("Port", Kind::Int),
        ("Weights", weights()),
        ("EnableTagOverride", Kind::Bool),
        ("Connect", Kind::Struct(fields([("Native", Kind::Bool)]))),
        ("Proxy", proxy()),
        ("SocketPath", Kind::Str),
        ("PeerName", Kind::Str),
    ])
}

/// `structs.ServiceNode`: `/v1/catalog/service/<s>` rows, and the rows
/// `/v1/catalog/services` aggregates.
pub(crate) fn service_node() -> Fields {
    fields([
        ("ID", Kind::Str),
        ("Node", Kind::Str),
        ("Address", Kind::Str),
        ("Datacenter", Kind::Str),
        ("TaggedAddresses", map_of(Kind::Str)),
        ("NodeMeta", map_of(Kind::Str)),
        ("ServiceKind", Kind::Str),
        ("ServiceID", Kind::Str),
        ("ServiceName", Kind::Str),
        ("ServiceTags", Kind::StrList),
        ("ServiceAddress", Kind::Str),
        ("ServiceTaggedAddresses", tagged_service_addresses()),
        ("ServiceWeights", weights()),
        ("ServiceMeta", map_of(Kind::Str)),
        ("ServicePort", Kind::Int),
        ("ServiceEnableTagOverride", Kind::Bool),
        (
            "ServiceConnect",
            Kind::Struct(fields([("Native", Kind::Bool)])),
        ),
        ("ServiceProxy", proxy()),
        ("ServiceSocketPath", Kind::Str),
        ("PeerName", Kind::Str),
    ])
}

/// `structs.CheckServiceNode`: `/v1/health/service/<s>`.
pub(crate) fn check_service_node() -> Fields {
    fields([
        ("Node", Kind::Struct(node())),
        ("Service", Kind::Struct(node_service())),
        ("Checks", Kind::StructList(health_check())),
    ])
}

/// `?filter=` compiled against `schema`, or none; 400 with go-bexpr's message if it cannot be.
pub(crate) fn from_request(req: &Incoming, schema: Fields) -> Result<Option<Filter>, ApiError> {
    Filter::from_param(req.params.get("filter"), &schema)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Keep the elements the filter matches (all, without one).
pub(crate) fn keep<T: Serialize>(filter: Option<&Filter>, items: Vec<T>) -> Vec<T> {
    let Some(f) = filter else {
        return items;
    };
    items
        .into_iter()
        .filter(|i| serde_json::to_value(i).is_ok_and(|v| f.matches(&v)))
        .collect()
}

/// Does `item` pass (true without a filter)?
pub(crate) fn passes<T: Serialize>(filter: Option<&Filter>, item: &T) -> bool {
    filter.is_none_or(|f| serde_json::to_value(item).is_ok_and(|v| f.matches(&v)))
}
