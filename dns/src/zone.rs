//! The immutable zone a query is answered from: every service's usable endpoints and every
//! instance by id, built from the catalog. Updates are copy-on-write per service (the maps
//! hold `Arc`s, so a change to one service copies pointers, not records) and are published
//! with one atomic swap, so a query never sees half a change.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};
use lucid_core::catalog::{CheckStatus, Instance};

/// Settings the zone is built with.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The zone origin, absolute and lower-case (`lucid.internal.`).
    pub domain: Name,
    /// TTL of every record (Consul's default is 0: clients always see the current catalog).
    pub ttl: u32,
    /// Leave out `warning` instances too, not only `critical` ones.
    pub only_passing: bool,
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
        })
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
    pub status: CheckStatus,
}

impl Endpoint {
    fn new(domain: &Name, inst: &Instance, status: CheckStatus) -> Endpoint {
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
            meta: inst.meta.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            status,
        }
    }

    pub fn has_tag(&self, tag: &[u8]) -> bool {
        self.tags.iter().any(|t| t.as_bytes() == tag)
    }
}

/// One service: the endpoints DNS may hand out, and the ids of all its instances (so an
/// update can drop the old ones from the instance index).
#[derive(Debug, Default)]
pub struct ServiceSet {
    pub endpoints: Vec<Arc<Endpoint>>,
    ids: Vec<String>,
}

/// A service's instances with their rolled-up health, as the registry hands them over.
pub type ServiceInput = Vec<(Instance, CheckStatus)>;

/// Everything a query is answered from.
#[derive(Debug)]
pub struct Zone {
    cfg: Arc<ZoneConfig>,
    labels: Arc<Vec<Vec<u8>>>,
    index: u64,
    services: HashMap<String, Arc<ServiceSet>>,
    instances: HashMap<String, Arc<Endpoint>>,
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

    /// A new zone at `index` with these services replaced (an empty input removes one).
    pub fn with_services(
        &self,
        index: u64,
        changes: impl IntoIterator<Item = (String, ServiceInput)>,
    ) -> Zone {
        let mut services = self.services.clone();
        let mut instances = self.instances.clone();
        for (name, input) in changes {
            let key = name.to_ascii_lowercase();
            if let Some(old) = services.remove(&key) {
                for id in &old.ids {
                    instances.remove(id);
                }
            }
            if input.is_empty() {
                continue;
            }
            let set = self.build_service(&input, &mut instances);
            services.insert(key, Arc::new(set));
        }
        self.at(index, services, instances)
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
            if input.is_empty() {
                continue;
            }
            let set = self.build_service(&input, &mut instances);
            services.insert(name.to_ascii_lowercase(), Arc::new(set));
        }
        self.at(index, services, instances)
    }

    fn at(
        &self,
        index: u64,
        services: HashMap<String, Arc<ServiceSet>>,
        instances: HashMap<String, Arc<Endpoint>>,
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
        }
    }

    fn build_service(
        &self,
        input: &ServiceInput,
        instances: &mut HashMap<String, Arc<Endpoint>>,
    ) -> ServiceSet {
        let mut set = ServiceSet::default();
        for (inst, status) in input {
            let ep = Arc::new(Endpoint::new(&self.cfg.domain, inst, *status));
            let id = inst.id.to_ascii_lowercase();
            instances.insert(id.clone(), ep.clone());
            set.ids.push(id);
            let usable = match status {
                CheckStatus::Passing => true,
                CheckStatus::Warning => !self.cfg.only_passing,
                CheckStatus::Critical => false,
            };
            if usable {
                set.endpoints.push(ep);
            }
        }
        set
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
