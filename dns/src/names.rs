//! What a query name asks for: a service (optionally by tag), an SRV-style service name, an
//! instance, a prepared query (`<name>.query`), the zone apex, or nothing we know, in our
//! zone or in Consul's `service.consul` / `query.consul`.

use hickory_proto::rr::LowerName;

/// Which zone a name fell in (decides the SOA of a negative answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configured zone (`lucid.internal.`).
    Ours,
    /// Consul's `consul.`.
    Consul,
}

/// A classified query name. Labels are the lower-case wire labels.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The zone apex itself.
    Apex(Origin),
    /// `<service>`, `<tag>.<service>`, `_<service>._tcp` or `_<service>._<tag>`.
    Service {
        origin: Origin,
        service: &'a [u8],
        tag: Option<&'a [u8]>,
    },
    /// `<id>.instance`: the id's labels joined with dots.
    Instance { origin: Origin, id: String },
    /// `<name>.query`: a prepared query's ID or name (its labels joined with dots).
    Query { origin: Origin, name: String },
    /// In a zone we serve, but not a name we have.
    Unknown(Origin),
    /// Not ours: refuse or forward.
    Outside,
}

/// Classify `name` against our zone's labels (`["lucid", "internal"]`).
pub fn classify<'a>(name: &'a LowerName, zone: &[Vec<u8>]) -> Lookup<'a> {
    let labels: Vec<&'a [u8]> = name.iter().collect();
    if let Some(rel) = strip_suffix(&labels, zone) {
        return within(rel, Origin::Ours);
    }
    let consul: [&[u8]; 1] = [b"consul"];
    match strip_suffix(&labels, &consul) {
        Some([]) => Lookup::Apex(Origin::Consul),
        // Consul answers services only under `service.consul`, plus the RFC 2782 form
        // `_<service>._tcp.service.consul`.
        Some([rel @ .., last]) if *last == b"service" => match rel {
            [] => Lookup::Unknown(Origin::Consul),
            _ => service_form(rel, Origin::Consul),
        },
        Some([rel @ .., last]) if *last == b"query" && !rel.is_empty() => Lookup::Query {
            origin: Origin::Consul,
            name: joined(rel),
        },
        Some(_) => Lookup::Unknown(Origin::Consul),
        None => Lookup::Outside,
    }
}

fn strip_suffix<'l, 'a, L: AsRef<[u8]>>(
    labels: &'l [&'a [u8]],
    zone: &[L],
) -> Option<&'l [&'a [u8]]> {
    if labels.len() < zone.len() {
        return None;
    }
    let (rel, tail) = labels.split_at(labels.len() - zone.len());
    tail.iter()
        .zip(zone)
        .all(|(a, b)| *a == b.as_ref())
        .then_some(rel)
}

fn within<'a>(rel: &[&'a [u8]], origin: Origin) -> Lookup<'a> {
    match rel {
        [] => Lookup::Apex(origin),
        [id @ .., last] if *last == b"instance" && !id.is_empty() => Lookup::Instance {
            origin,
            id: joined(id),
        },
        [name @ .., last] if *last == b"query" && !name.is_empty() => Lookup::Query {
            origin,
            name: joined(name),
        },
        _ => service_form(rel, origin),
    }
}

/// Labels joined with dots, as the name was written.
fn joined(labels: &[&[u8]]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    parts.join(".")
}

fn service_form<'a>(rel: &[&'a [u8]], origin: Origin) -> Lookup<'a> {
    match rel {
        [svc] if !svc.starts_with(b"_") => Lookup::Service {
            origin,
            service: svc,
            tag: None,
        },
        [svc, proto] if svc.starts_with(b"_") && proto.starts_with(b"_") => {
            // RFC 2782: `_tcp` (or `_udp`) is the protocol, anything else is a tag (Consul).
            let tag = &proto[1..];
            Lookup::Service {
                origin,
                service: &svc[1..],
                tag: (tag != b"tcp" && tag != b"udp").then_some(tag),
            }
        }
        [tag, svc] if !svc.starts_with(b"_") && !tag.starts_with(b"_") => Lookup::Service {
            origin,
            service: svc,
            tag: Some(tag),
        },
        _ => Lookup::Unknown(origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;

    fn zone() -> Vec<Vec<u8>> {
        vec![b"lucid".to_vec(), b"internal".to_vec()]
    }

    fn name(s: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(s).unwrap())
    }

    fn svc<'a>(origin: Origin, service: &'a str, tag: Option<&'a str>) -> Lookup<'a> {
        Lookup::Service {
            origin,
            service: service.as_bytes(),
            tag: tag.map(str::as_bytes),
        }
    }

    #[test]
    fn forms_in_our_zone() {
        let z = zone();
        let n = name("Web.Lucid.Internal.");
        assert_eq!(classify(&n, &z), svc(Origin::Ours, "web", None));
        let n = name("v2.web.lucid.internal.");
        assert_eq!(classify(&n, &z), svc(Origin::Ours, "web", Some("v2")));
        let n = name("_web._tcp.lucid.internal.");
        assert_eq!(classify(&n, &z), svc(Origin::Ours, "web", None));
        let n = name("_web._v2.lucid.internal.");
        assert_eq!(classify(&n, &z), svc(Origin::Ours, "web", Some("v2")));
        let n = name("web-1.instance.lucid.internal.");
        assert_eq!(
            classify(&n, &z),
            Lookup::Instance {
                origin: Origin::Ours,
                id: "web-1".into()
            }
        );
        let n = name("lucid.internal.");
        assert_eq!(classify(&n, &z), Lookup::Apex(Origin::Ours));
        let n = name("a.b.c.lucid.internal.");
        assert_eq!(classify(&n, &z), Lookup::Unknown(Origin::Ours));
        let n = name("instance.lucid.internal.");
        assert_eq!(classify(&n, &z), svc(Origin::Ours, "instance", None));
        let n = name("redis.primary.query.lucid.internal.");
        assert_eq!(
            classify(&n, &z),
            Lookup::Query {
                origin: Origin::Ours,
                name: "redis.primary".into()
            }
        );
        let n = name("query.lucid.internal.");
        assert_eq!(classify(&n, &z), svc(Origin::Ours, "query", None));
    }

    #[test]
    fn consul_forms() {
        let z = zone();
        let n = name("web.service.consul.");
        assert_eq!(classify(&n, &z), svc(Origin::Consul, "web", None));
        let n = name("v2.web.service.consul.");
        assert_eq!(classify(&n, &z), svc(Origin::Consul, "web", Some("v2")));
        let n = name("_web._tcp.service.consul.");
        assert_eq!(classify(&n, &z), svc(Origin::Consul, "web", None));
        let n = name("geo-db-x.query.consul.");
        assert_eq!(
            classify(&n, &z),
            Lookup::Query {
                origin: Origin::Consul,
                name: "geo-db-x".into()
            }
        );
        let n = name("query.consul.");
        assert_eq!(classify(&n, &z), Lookup::Unknown(Origin::Consul));
        let n = name("node1.node.consul.");
        assert_eq!(classify(&n, &z), Lookup::Unknown(Origin::Consul));
        let n = name("consul.");
        assert_eq!(classify(&n, &z), Lookup::Apex(Origin::Consul));
    }

    #[test]
    fn outside() {
        let z = zone();
        for s in ["example.com.", "internal.", "lucid.", "."] {
            let n = name(s);
            assert_eq!(classify(&n, &z), Lookup::Outside, "{s}");
        }
    }
}
