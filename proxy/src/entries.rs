//! The config entries the sidecar follows (`service-defaults` per service and the global
//! `proxy-defaults`), as one snapshot replaced whole when the registry reports a change: what
//! each destination's traffic gets is read from it per request, without a lock.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use lucid_core::config_entry::{ConfigEntry, RateLimit, Resolved};

/// One snapshot of the entries.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: HashMap<String, ConfigEntry>,
    pub global: Option<ConfigEntry>,
}

impl Snapshot {
    /// The entries as the registry listed them.
    pub fn new(services: Vec<ConfigEntry>, global: Option<ConfigEntry>) -> Snapshot {
        Snapshot {
            services: services.into_iter().map(|e| (e.name.clone(), e)).collect(),
            global,
        }
    }

    /// What applies to traffic to (or, for our own service, into) `service`.
    pub fn settings(&self, service: &str) -> Resolved {
        Resolved::of(self.services.get(service), self.global.as_ref())
    }

    /// The inbound rate limit of `service`: its own entry's, else the global one.
    pub fn rate_limit(&self, service: &str) -> Option<&RateLimit> {
        self.services
            .get(service)
            .and_then(|e| e.rate_limit.as_ref())
            .or(self.global.as_ref().and_then(|g| g.rate_limit.as_ref()))
    }
}

/// The current snapshot.
#[derive(Debug, Default)]
pub struct Entries {
    current: ArcSwap<Snapshot>,
}

impl Entries {
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }

    /// What applies to traffic to `service` now.
    pub fn settings(&self, service: &str) -> Resolved {
        self.current.load().settings(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, rps: Option<u32>) -> ConfigEntry {
        let mut e: ConfigEntry = serde_json::from_value(serde_json::json!({
            "Kind": "service-defaults", "Name": name
        }))
        .unwrap();
        e.rate_limit = rps.map(|r| RateLimit {
            requests_per_second: r,
            burst: r,
        });
        e
    }

    #[test]
    fn a_service_entry_wins_over_the_global_one() {
        let mut global = entry("global", Some(5));
        global.kind = lucid_core::config_entry::ConfigKind::ProxyDefaults;
        let s = Snapshot::new(
            vec![entry("api", Some(7)), entry("web", None)],
            Some(global),
        );
        assert_eq!(s.rate_limit("api").map(|r| r.requests_per_second), Some(7));
        assert_eq!(s.rate_limit("web").map(|r| r.requests_per_second), Some(5));
        assert_eq!(s.rate_limit("db").map(|r| r.requests_per_second), Some(5));
        let h = Entries::default();
        assert_eq!(h.settings("api"), Resolved::default());
        h.store(s);
        assert_eq!(h.settings("api").rate_limit.requests_per_second, 7);
    }
}
