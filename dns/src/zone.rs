//! The immutable zone a query is answered from: every service's usable endpoints and every
//! instance by id, built from the catalog. Updates are copy-on-write per service (the maps
//! hold `Arc`s, so a change to one service copies pointers, not records) and are published
//! with one atomic swap, so a query never sees half a change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};
use lucid_core::catalog::{CheckStatus, Instance};
use lucid_core::query::{PreparedQuery, QueryTable, RenderError};

/// Settings the zone is built with.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The zone origin, absolute and lower-case (`lucid.internal.`).
    pub domain: Name,
    /// TTL of every record (Consul's default is 0: clients always see the current catalog).
    pub ttl: u32,
    /// Leave out `warning` instances too, not only `critical` ones.
    pub only_passing: bool,
    /// Meta keys published as TXT; `None`: all of them.
    pub txt_meta: Option<Vec<String>>,
}

/// Why a zone setting is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    #[error("invalid DNS domain {0:?}: {1}")]
    Domain(String, String),
}

impl ZoneConfig {
    /// A config for `domain` (with or without the trailing dot).
    pub fn new(domain: &str, ttl: u32, only_passing: bool) -> Result<ZoneConfig, ZoneError> {
        let bad = |why: &str| ZoneError::Domain(domain.to_owned(), why.to_owned());
        let trimmed = domain.trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(bad("the zone cannot be the root"));
        }
        let mut name = Name::from_ascii(trimmed).map_err(|e| bad(&e.to_string()))?;
        name.set_fqdn(true);
        Ok(ZoneConfig {
            domain: name.to_lowercase(),
            ttl,
            only_passing,
            txt_meta: None,
        })
    }

    /// Publish only these meta keys as TXT (an empty list: none).
    pub fn with_txt_meta(mut self, keys: Option<Vec<String>>) -> ZoneConfig {
        self.txt_meta = keys;
        self
    }
}

/// One instance as DNS sees it.
#[derive(Debug)]
pub struct Endpoint {
    /// Service the instance belongs to.
    pub service: String,
    /// `<id>.instance.<domain>`, or `None` when the id is not a valid DNS name.
    pub target: Option<Name>,
    /// The address when it is an IP.
    pub ip: Option<IpAddr>,
    /// The address when it is a host name (SRV points there instead).
    pub host: Option<Name>,
    pub port: u16,
    /// SRV weight for the instance's current health.
    pub weight: u16,
    /// Lower-case tags (DNS names are case-insensitive).
    pub tags: Vec<String>,
    /// Meta as `k=v` strings for TXT.
    pub meta: Vec<String>,
    /// All of the meta, for prepared queries' `ServiceMeta`.
    pub service_meta: BTreeMap<String, String>,
    pub status: CheckStatus,
}

impl Endpoint {
    fn new(cfg: &ZoneConfig, inst: &Instance, status: CheckStatus) -> Endpoint {
        let domain = &cfg.domain;
        let target = Name::from_ascii(&inst.id)
            .ok()
            .filter(|n| !n.is_fqdn() && n.num_labels() > 0)
            .and_then(|n| n.append_label("instance").ok())
            .and_then(|n| n.append_domain(domain).ok())
            .map(|n| n.to_lowercase());
        let ip = inst.address.parse::<IpAddr>().ok();
        let host = match ip {
            Some(_) => None,
            None => Name::from_ascii(&inst.address).ok().map(|mut n| {
                n.set_fqdn(true);
                n
            }),
        };
        let weight = match status {
            CheckStatus::Passing => inst.weights.passing,
            _ => inst.weights.warning,
        };
        Endpoint {
            service: inst.name.clone(),
            target,
            ip,
            host,
            port: inst.port,
            weight: u16::try_from(weight).unwrap_or(u16::MAX),
            tags: inst.tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
            meta: inst
                .meta
                .iter()
                .filter(|(k, _)| cfg.txt_meta.as_ref().is_none_or(|keys| keys.contains(k)))
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            service_meta: inst.meta.clone(),
            status,
        }
    }

    pub fn has_tag(&self, tag: &[u8]) -> bool {
        self.tags.iter().any(|t| t.as_bytes() == tag)
    }
}

/// Instances by lower-case id.
type Members = HashMap<Arc<str>, Arc<Endpoint>>;

/// One service: all its instances by lower-case id, and the endpoints DNS may hand out.
#[derive(Debug, Default)]
pub struct ServiceSet {
    members: Members,
    pub endpoints: Vec<Arc<Endpoint>>,
}

impl ServiceSet {
    /// Every instance, whatever its health (a prepared query applies its own rule).
    pub fn all(&self) -> impl Iterator<Item = &Endpoint> {
        self.members.values().map(|e| &**e)
    }

    fn new(members: Members, only_passing: bool) -> ServiceSet {
        let endpoints = members
            .values()
            .filter(|ep| match ep.status {
                CheckStatus::Passing => true,
                CheckStatus::Warning => !only_passing,
                CheckStatus::Critical => false,
            })
            .cloned()
            .collect();
        ServiceSet { members, endpoints }
    }
}

/// A service's instances with their rolled-up health, as the registry hands them over.
pub type ServiceInput = Vec<(Instance, CheckStatus)>;

/// One instance changed: it now is `now` (possibly in another service), or it is gone.
#[derive(Debug, Clone)]
pub struct InstanceChange {
    /// The service the change was recorded against (where it may have to be removed from).
    pub service: String,
    pub id: String,
    pub now: Option<(Instance, CheckStatus)>,
}

/// Everything a query is answered from.
#[derive(Debug)]
pub struct Zone {
    cfg: Arc<ZoneConfig>,
    labels: Arc<Vec<Vec<u8>>>,
    index: u64,
    services: HashMap<String, Arc<ServiceSet>>,
    instances: HashMap<Arc<str>, Arc<Endpoint>>,
    /// Prepared queries, for `<query>.query.<domain>`.
    queries: Arc<QueryTable>,
    soa: Record,
    consul_soa: Record,
}

impl Zone {
    /// An empty zone.
    pub fn new(cfg: ZoneConfig) -> Zone {
        let cfg = Arc::new(cfg);
        let labels = cfg.domain.iter().map(<[u8]>::to_vec).collect();
        Zone {
            labels: Arc::new(labels),
            soa: soa(&cfg.domain, cfg.ttl, 0),
            consul_soa: soa(&consul_origin(), cfg.ttl, 0),
            cfg,
            index: 0,
            services: HashMap::new(),
            instances: HashMap::new(),
            queries: Arc::default(),
        }
    }

    pub fn config(&self) -> &ZoneConfig {
        &self.cfg
    }

    /// The origin's labels, for matching query names.
    pub fn origin_labels(&self) -> &[Vec<u8>] {
        &self.labels
    }

    /// The catalog index this zone reflects (also the SOA serial, truncated).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn service(&self, lower_name: &str) -> Option<&ServiceSet> {
        self.services.get(lower_name).map(|s| &**s)
    }

    pub fn instance(&self, lower_id: &str) -> Option<&Endpoint> {
        self.instances.get(lower_id).map(|e| &**e)
    }

    /// The prepared query `asked` names (by ID, name or template prefix), rendered for it.
    pub fn query(&self, asked: &str) -> Option<Result<PreparedQuery, RenderError>> {
        self.queries.resolve(asked)
    }

    /// This zone with `queries` as its prepared queries.
    pub fn with_queries(&self, queries: QueryTable) -> Zone {
        let mut z = self.at(self.index, self.services.clone(), self.instances.clone());
        z.queries = Arc::new(queries);
        z
    }

    /// The SOA for negative answers in our zone, or in `consul.` when `consul` is set.
    pub fn soa(&self, consul: bool) -> &Record {
        if consul {
            &self.consul_soa
        } else {
            &self.soa
        }
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// A new zone at `index` with these instance changes applied. Only the services they
    /// touch are rebuilt, and those only by copying pointers.
    pub fn with_changes(
        &self,
        index: u64,
        changes: impl IntoIterator<Item = InstanceChange>,
    ) -> Zone {
        let mut instances = self.instances.clone();
        let mut touched: HashMap<String, Members> = HashMap::new();
        for ch in changes {
            let id: Arc<str> = Arc::from(ch.id.to_ascii_lowercase());
            let from = ch.service.to_ascii_lowercase();
            self.members_mut(&mut touched, from).remove(&id);
            instances.remove(&id);
            if let Some((inst, status)) = ch.now {
                let ep = Arc::new(Endpoint::new(&self.cfg, &inst, status));
                let to = inst.name.to_ascii_lowercase();
                self.members_mut(&mut touched, to)
                    .insert(id.clone(), ep.clone());
                instances.insert(id, ep);
            }
        }
        let mut services = self.services.clone();
        for (name, m) in touched {
            if m.is_empty() {
                services.remove(&name);
            } else {
                services.insert(name, Arc::new(ServiceSet::new(m, self.cfg.only_passing)));
            }
        }
        self.at(index, services, instances)
    }

    /// The members of service `name` being edited: a copy of the current ones on first use.
    fn members_mut<'t>(
        &self,
        touched: &'t mut HashMap<String, Members>,
        name: String,
    ) -> &'t mut Members {
        touched.entry(name).or_insert_with_key(|name| {
            self.services
                .get(name)
                .map(|s| s.members.clone())
                .unwrap_or_default()
        })
    }

    /// A new zone holding exactly `all` (after a restore, or at start).
    pub fn rebuilt(
        &self,
        index: u64,
        all: impl IntoIterator<Item = (String, ServiceInput)>,
    ) -> Zone {
        let mut services = HashMap::new();
        let mut instances = HashMap::new();
        for (name, input) in all {
            let mut members = HashMap::new();
            for (inst, status) in input {
                let ep = Arc::new(Endpoint::new(&self.cfg, &inst, status));
                let id: Arc<str> = Arc::from(inst.id.to_ascii_lowercase());
                members.insert(id.clone(), ep.clone());
                instances.insert(id, ep);
            }
            if !members.is_empty() {
                services.insert(
                    name.to_ascii_lowercase(),
                    Arc::new(ServiceSet::new(members, self.cfg.only_passing)),
                );
            }
        }
        self.at(index, services, instances)
    }

    fn at(
        &self,
        index: u64,
        services: HashMap<String, Arc<ServiceSet>>,
        instances: HashMap<Arc<str>, Arc<Endpoint>>,
    ) -> Zone {
        let serial = index as u32;
        Zone {
            soa: soa(&self.cfg.domain, self.cfg.ttl, serial),
            consul_soa: soa(&consul_origin(), self.cfg.ttl, serial),
            cfg: self.cfg.clone(),
            labels: self.labels.clone(),
            index,
            services,
            instances,
            queries: self.queries.clone(),
        }
    }
}

/// `consul.`
pub(crate) fn consul_origin() -> Name {
    Name::from_labels(["consul"]).unwrap_or_else(|_| Name::root())
}

fn soa(origin: &Name, ttl: u32, serial: u32) -> Record {
    let label = |l: &str| {
        Name::from_labels([l])
            .and_then(|n| n.append_domain(origin))
            .unwrap_or_else(|_| origin.clone())
    };
    let rdata = SOA::new(
        label("ns"),
        label("hostmaster"),
        serial,
        3600,
        600,
        86400,
        ttl,
    );
    Record::from_rdata(origin.clone(), ttl, RData::SOA(rdata))
}

/// The zone currently served, shared by the handler and whoever publishes updates.
#[derive(Debug, Clone)]
pub struct ZoneHandle(Arc<ArcSwap<Zone>>);

impl ZoneHandle {
    pub fn new(zone: Zone) -> ZoneHandle {
        ZoneHandle(Arc::new(ArcSwap::from_pointee(zone)))
    }

    pub fn load(&self) -> Arc<Zone> {
        self.0.load_full()
    }

    /// Cheap read guard for the hot path.
    pub fn guard(&self) -> arc_swap::Guard<Arc<Zone>> {
        self.0.load()
    }

    pub fn store(&self, zone: Zone) {
        self.0.store(Arc::new(zone));
    }
}
