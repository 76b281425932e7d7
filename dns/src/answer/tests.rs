use std::collections::BTreeMap;

use hickory_proto::rr::RData;
use lucid_core::catalog::{CheckStatus, Instance, Weights};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::zone::{InstanceChange, ServiceInput, ZoneConfig};

fn inst(id: &str, name: &str, addr: &str, port: u16, tags: &[&str]) -> Instance {
    Instance {
        id: id.into(),
        name: name.into(),
        address: addr.into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: BTreeMap::from([("version".to_string(), "1.2".to_string())]),
        weights: Weights {
            passing: 10,
            warning: 1,
        },
        mesh_port: None,
        enable_tag_override: false,
        extras: Default::default(),
        node: String::new(),
    }
}

fn zone(only_passing: bool) -> Zone {
    let cfg = ZoneConfig::new("Lucid.Internal", 0, only_passing).unwrap();
    let web: ServiceInput = vec![
        (
            inst("web-1", "web", "10.0.0.1", 8080, &["v1"]),
            CheckStatus::Passing,
        ),
        (
            inst("web-2", "web", "10.0.0.2", 8080, &["V2"]),
            CheckStatus::Warning,
        ),
        (
            inst("web-3", "web", "10.0.0.3", 8080, &["v1"]),
            CheckStatus::Critical,
        ),
        (
            inst("web-6", "web", "fd00::6", 8080, &["v1"]),
            CheckStatus::Passing,
        ),
    ];
    let db: ServiceInput = vec![(
        inst("db-1", "db", "db.example.net", 5432, &[]),
        CheckStatus::Passing,
    )];
    Zone::new(cfg).rebuilt(7, [("web".to_string(), web), ("db".to_string(), db)])
}

fn ask(z: &Zone, name: &str, t: RecordType) -> Option<Answer> {
    let n = Name::from_ascii(name).unwrap();
    resolve(z, &LowerName::new(&n), &n, t, &mut StdRng::seed_from_u64(1))
}

fn ips(a: &Answer) -> Vec<String> {
    let mut v: Vec<String> = a
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_and_aaaa_skip_critical() {
    let z = zone(false);
    let a = ask(&z, "web.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(ips(&a), ["10.0.0.1", "10.0.0.2"]);
    assert!(a.soa.is_none());
    let a = ask(&z, "WEB.lucid.internal.", RecordType::AAAA).unwrap();
    assert_eq!(ips(&a), ["fd00::6"]);
    let a = ask(&z, "web.service.consul.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1", "10.0.0.2"]);
}

#[test]
fn only_passing_drops_warning() {
    let z = zone(true);
    let a = ask(&z, "web.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1"]);
}

#[test]
fn tags_filter_case_insensitively() {
    let z = zone(false);
    let a = ask(&z, "v2.web.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.2"]);
    let a = ask(&z, "v1.web.service.consul.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1"]);
    let a = ask(&z, "v9.web.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(a.rcode, ResponseCode::NXDomain);
    assert!(a.soa.is_some());
}

#[test]
fn srv_points_at_instance_names_with_glue() {
    let z = zone(false);
    for name in [
        "_web._tcp.lucid.internal.",
        "web.lucid.internal.",
        "_web._tcp.service.consul.",
    ] {
        let a = ask(&z, name, RecordType::SRV).unwrap();
        let mut targets: Vec<(String, u16, u16)> = a
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SRV(s) => (s.target.to_ascii(), s.port, s.weight),
                other => panic!("{other:?}"),
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            [
                ("web-1.instance.lucid.internal.".to_string(), 8080, 10),
                ("web-2.instance.lucid.internal.".to_string(), 8080, 1),
                ("web-6.instance.lucid.internal.".to_string(), 8080, 10),
            ],
            "{name}"
        );
        assert_eq!(a.additionals.len(), 3);
    }
    // A host-name address: SRV targets the host itself, no glue.
    let a = ask(&z, "_db._tcp.lucid.internal.", RecordType::SRV).unwrap();
    match &a.answers[0].data {
        RData::SRV(s) => assert_eq!(s.target.to_ascii(), "db.example.net."),
        other => panic!("{other:?}"),
    }
    assert!(a.additionals.is_empty());
    // ... and it has no A records: NODATA.
    let a = ask(&z, "db.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.answers.is_empty() && a.soa.is_some());
}

#[test]
fn instance_names_resolve_with_meta_txt() {
    let z = zone(false);
    let a = ask(&z, "web-3.instance.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(
        ips(&a),
        ["10.0.0.3"],
        "a critical instance's own name still resolves"
    );
    let a = ask(&z, "web-1.instance.lucid.internal.", RecordType::TXT).unwrap();
    match &a.answers[0].data {
        RData::TXT(t) => assert_eq!(t.to_string(), "version=1.2"),
        other => panic!("{other:?}"),
    }
    let a = ask(&z, "nope.instance.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(a.rcode, ResponseCode::NXDomain);
}

#[test]
fn negative_answers_carry_the_right_soa() {
    let z = zone(false);
    let a = ask(&z, "nope.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(a.rcode, ResponseCode::NXDomain);
    assert_eq!(a.soa.unwrap().name.to_ascii(), "lucid.internal.");
    let a = ask(&z, "nope.service.consul.", RecordType::A).unwrap();
    assert_eq!(a.soa.unwrap().name.to_ascii(), "consul.");
    let a = ask(&z, "web.lucid.internal.", RecordType::MX).unwrap();
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    match &a.soa.unwrap().data {
        RData::SOA(s) => assert_eq!(s.serial, 7),
        other => panic!("{other:?}"),
    }
    let a = ask(&z, "lucid.internal.", RecordType::SOA).unwrap();
    assert_eq!(a.answers.len(), 1);
    assert!(ask(&z, "example.com.", RecordType::A).is_none());
}

fn change(service: &str, id: &str, now: Option<(Instance, CheckStatus)>) -> InstanceChange {
    InstanceChange {
        service: service.into(),
        id: id.into(),
        now,
    }
}

#[test]
fn changes_touch_only_their_instances() {
    let z = zone(false);
    let z2 = z.with_changes(
        9,
        [
            // web-1 goes critical, web-9 is added, db-1 is removed.
            change(
                "web",
                "web-1",
                Some((
                    inst("web-1", "web", "10.0.0.1", 8080, &["v1"]),
                    CheckStatus::Critical,
                )),
            ),
            change(
                "web",
                "web-9",
                Some((
                    inst("web-9", "web", "10.0.0.9", 80, &[]),
                    CheckStatus::Passing,
                )),
            ),
            change("db", "db-1", None),
        ],
    );
    let a = ask(&z2, "web.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.2", "10.0.0.9"]);
    let a = ask(&z2, "web-1.instance.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1"], "critical, but its own name resolves");
    let gone = ask(&z2, "_db._tcp.lucid.internal.", RecordType::SRV).unwrap();
    assert_eq!(gone.rcode, ResponseCode::NXDomain);
    assert_eq!(z2.service_count(), 1);
    assert_eq!(z2.instance_count(), 5);
    // The old zone is untouched (queries in flight keep a consistent view).
    assert_eq!(
        ips(&ask(&z, "web.lucid.internal.", RecordType::A).unwrap()).len(),
        2
    );
    assert_eq!(z.instance_count(), 5);
}

#[test]
fn an_instance_moving_to_another_service_leaves_the_first() {
    let z = zone(false);
    let moved = (
        inst("web-2", "api", "10.0.0.2", 81, &[]),
        CheckStatus::Passing,
    );
    // The registry reports the move against both services, in either order.
    let z2 = z.with_changes(
        10,
        [
            change("api", "web-2", Some(moved.clone())),
            change("web", "web-2", Some(moved)),
        ],
    );
    assert_eq!(
        ips(&ask(&z2, "web.lucid.internal.", RecordType::A).unwrap()),
        ["10.0.0.1"]
    );
    assert_eq!(
        ips(&ask(&z2, "api.lucid.internal.", RecordType::A).unwrap()),
        ["10.0.0.2"]
    );
    let a = ask(&z2, "web-2.instance.lucid.internal.", RecordType::SRV).unwrap();
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn shuffles_per_query() {
    let cfg = ZoneConfig::new("lucid.internal", 0, false).unwrap();
    let many: ServiceInput = (0..20)
        .map(|i| {
            let ip = format!("10.0.1.{i}");
            (
                inst(&format!("m-{i}"), "m", &ip, 80, &[]),
                CheckStatus::Passing,
            )
        })
        .collect();
    let z = Zone::new(cfg).rebuilt(1, [("m".to_string(), many)]);
    let n = Name::from_ascii("m.lucid.internal.").unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let order = |rng: &mut StdRng| -> Vec<String> {
        resolve(&z, &LowerName::new(&n), &n, RecordType::A, rng)
            .unwrap()
            .answers
            .iter()
            .map(|r| r.data.to_string())
            .collect()
    };
    let first = order(&mut rng);
    assert!((0..5).any(|_| order(&mut rng) != first));
}

#[test]
fn long_meta_is_split_into_dns_strings() {
    let parts = chunks(&"é".repeat(200), 255);
    assert!(parts.iter().all(|p| p.len() <= 255));
    assert_eq!(parts.concat(), "é".repeat(200));
}

#[test]
fn prepared_queries_answer_by_name_id_and_template() {
    use lucid_core::query::{parse, QueryTable};
    let mk = |id: &str, body: serde_json::Value| {
        let mut q = parse(&body).unwrap();
        q.id = id.into();
        q
    };
    let z = zone(false).with_queries(QueryTable::new(vec![
        mk(
            "0b3c-id",
            serde_json::json!({"Name": "web-v1", "Service": {"Service": "web", "Tags": ["v1", "!v2"],
                "OnlyPassing": true}, "DNS": {"TTL": "30s"}}),
        ),
        mk(
            "tpl",
            serde_json::json!({"Name": "svc-", "Template": {"Type": "name_prefix_match"},
                "Service": {"Service": "${name.suffix}"}}),
        ),
        mk(
            "meta",
            serde_json::json!({"Name": "web-meta", "Service": {"Service": "web",
                "ServiceMeta": {"version": "9"}}}),
        ),
    ]));
    let a = ask(&z, "web-v1.query.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1"], "tagged, passing only");
    assert!(a.answers.iter().all(|r| r.ttl == 30), "the query's TTL");
    let a = ask(&z, "web-v1.query.lucid.internal.", RecordType::AAAA).unwrap();
    assert_eq!(ips(&a), ["fd00::6"]);
    let a = ask(&z, "0b3c-id.query.consul.", RecordType::A).unwrap();
    assert_eq!(ips(&a), ["10.0.0.1"], "by ID, in Consul's zone");
    let a = ask(&z, "svc-web.query.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(
        ips(&a),
        ["10.0.0.1", "10.0.0.2"],
        "a template renders the service"
    );
    assert!(a.answers.iter().all(|r| r.ttl == 0), "the zone's TTL");
    let a = ask(&z, "svc-db.query.lucid.internal.", RecordType::SRV).unwrap();
    assert_eq!(a.answers.len(), 1);
    for (name, why) in [
        (
            "web-meta.query.lucid.internal.",
            "no instance has version 9",
        ),
        ("svc-nothing.query.lucid.internal.", "no such service"),
        ("nope.query.lucid.internal.", "no such query"),
    ] {
        let a = ask(&z, name, RecordType::A).unwrap();
        assert_eq!(a.rcode, ResponseCode::NXDomain, "{why}");
        assert!(a.soa.is_some());
    }
    // The query's own OnlyPassing decides, not the server's setting.
    let strict = zone(true).with_queries(QueryTable::new(vec![mk(
        "lax",
        serde_json::json!({"Name": "web-any", "Service": {"Service": "web"}}),
    )]));
    let a = ask(&strict, "web-any.query.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(
        ips(&a),
        ["10.0.0.1", "10.0.0.2"],
        "warning kept, critical never"
    );
    // Without queries the same name is simply unknown.
    let a = ask(&zone(false), "web-v1.query.lucid.internal.", RecordType::A).unwrap();
    assert_eq!(a.rcode, ResponseCode::NXDomain);
}
