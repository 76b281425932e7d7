//! SPIFFE identities of mesh workloads: `spiffe://lucid.internal/plane/<plane>/svc/<service>`.

use std::fmt;

/// The trust domain of every identity the mesh CA signs.
pub const TRUST_DOMAIN: &str = "lucid.internal";

/// A workload identity: the service and the plane it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub plane: String,
    pub service: String,
}

/// Is `s` a valid plane or service name: `^[a-z0-9-]+$`, 1..=63 chars (a DNS label)?
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl SpiffeId {
    /// An identity, or `None` when either name is not a valid label.
    pub fn new(plane: &str, service: &str) -> Option<SpiffeId> {
        (valid_label(plane) && valid_label(service)).then(|| SpiffeId {
            plane: plane.to_owned(),
            service: service.to_owned(),
        })
    }

    /// Parse `spiffe://lucid.internal/plane/<plane>/svc/<service>`.
    pub fn parse(uri: &str) -> Option<SpiffeId> {
        let rest = uri.strip_prefix("spiffe://")?.strip_prefix(TRUST_DOMAIN)?;
        let mut parts = rest.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(""), Some("plane"), Some(plane), Some("svc"), Some(service), None) => {
                SpiffeId::new(plane, service)
            }
            _ => None,
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{TRUST_DOMAIN}/plane/{}/svc/{}",
            self.plane, self.service
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let id = SpiffeId::new("ops", "chain").unwrap();
        let uri = id.to_string();
        assert_eq!(uri, "spiffe://lucid.internal/plane/ops/svc/chain");
        assert_eq!(SpiffeId::parse(&uri), Some(id));
        for bad in [
            "spiffe://other.domain/plane/ops/svc/chain",
            "spiffe://lucid.internal/plane/ops/svc/chain/extra",
            "spiffe://lucid.internal/plane//svc/chain",
            "spiffe://lucid.internal/plane/Ops/svc/chain",
            "https://lucid.internal/plane/ops/svc/chain",
        ] {
            assert_eq!(SpiffeId::parse(bad), None, "{bad}");
        }
        assert!(SpiffeId::new("ops", "a_b").is_none());
        assert!(SpiffeId::new(&"x".repeat(64), "a").is_none());
    }
}
