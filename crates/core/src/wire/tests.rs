//! Pins the wire contract: the exact bytes Consul clients and our own binaries read. A field
//! renamed, dropped or reordered here fails these tests, not a py-consul call in production.

use std::collections::BTreeMap;
use std::time::Duration;

use super::acl::{PolicyLink, ServiceIdentity, TokenView};
use super::ca::{CertRecord, SignedLeaf};
use super::catalog::{
    AgentService, CatalogService, HealthCheck, Node, ServiceEntry, SidecarRegistration, TtlCheck,
};
use super::operator::{RaftConfiguration, RaftServer};
use crate::catalog::{parse_registration, Check, CheckKind, CheckStatus, Instance, Weights};

fn instance() -> Instance {
    Instance {
        id: "ledger-1".into(),
        name: "ledger".into(),
        address: "10.0.0.7".into(),
        port: 8080,
        tags: vec!["v1".into()],
        meta: BTreeMap::from([("plane".into(), "chain".into())]),
        weights: Weights::default(),
        mesh_port: Some(21000),
        enable_tag_override: false,
        extras: Default::default(),
        node: String::new(),
    }
}

fn check() -> Check {
    Check {
        id: "ledger-1-sidecar".into(),
        name: "sidecar".into(),
        notes: String::new(),
        service_id: "ledger-1".into(),
        kind: CheckKind::Ttl,
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(10),
        status: CheckStatus::Passing,
        output: "ok".into(),
        deregister_critical_after: None,
        success_before_passing: 0,
        failures_before_critical: 0,
        updated_index: 3,
    }
}

fn node() -> Node {
    Node {
        address: "127.0.0.1".into(),
        datacenter: "dc1".into(),
        id: "1".into(),
        meta: BTreeMap::new(),
        node: "lucid".into(),
        tagged_addresses: BTreeMap::new(),
    }
}

fn bytes<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn a_health_service_entry_keeps_consuls_bytes() {
    let i = instance();
    let entry = ServiceEntry {
        checks: vec![
            HealthCheck::serf_health("lucid"),
            HealthCheck::new(&check(), Some(&i), "lucid"),
        ],
        node: node(),
        service: AgentService::new(&i, "dc1"),
    };
    assert_eq!(
        bytes(&entry),
        concat!(
            r#"{"Checks":[{"CheckID":"serfHealth","Name":"Serf Health Status","Node":"lucid","Notes":"","#,
            r#""Output":"Agent alive and reachable","ServiceID":"","ServiceName":"","ServiceTags":[],"#,
            r#""Status":"passing","Type":""},"#,
            r#"{"CheckID":"ledger-1-sidecar","Interval":"15s","Name":"sidecar","Node":"lucid","Notes":"","#,
            r#""Output":"ok","ServiceID":"ledger-1","ServiceName":"ledger","ServiceTags":["v1"],"#,
            r#""Status":"passing","Timeout":"10s","Type":"ttl"}],"#,
            r#""Node":{"Address":"127.0.0.1","Datacenter":"dc1","ID":"1","Meta":{},"Node":"lucid","TaggedAddresses":{}},"#,
            r#""Service":{"Address":"10.0.0.7","Datacenter":"dc1","EnableTagOverride":false,"ID":"ledger-1","#,
            r#""MeshPort":21000,"Meta":{"plane":"chain"},"Port":8080,"Service":"ledger","#,
            r#""Tags":["v1"],"Weights":{"Passing":1,"Warning":1}}}"#
        )
    );
    let back: ServiceEntry = serde_json::from_str(&bytes(&entry)).unwrap();
    assert_eq!(back, entry);
    assert!(back.passing());
    assert_eq!(back.address(), "10.0.0.7");
}

#[test]
fn a_catalog_service_row_keeps_consuls_bytes() {
    let mut i = instance();
    i.mesh_port = None;
    assert_eq!(
        bytes(&CatalogService::new(&i, &node())),
        concat!(
            r#"{"Address":"127.0.0.1","Datacenter":"dc1","ID":"1","Node":"lucid","NodeMeta":{},"#,
            r#""TaggedAddresses":{},"ServiceAddress":"10.0.0.7","#,
            r#""ServiceEnableTagOverride":false,"ServiceID":"ledger-1","ServiceMeta":{"plane":"chain"},"#,
            r#""ServiceName":"ledger","ServicePort":8080,"ServiceTags":["v1"],"#,
            r#""ServiceWeights":{"Passing":1,"Warning":1}}"#
        )
    );
    // Consul's agent answers have neither field: a client comparing the whole service (py-consul's
    // test_agent_services) sees exactly Consul's keys.
    assert_eq!(
        bytes(&AgentService::new(&i, "dc1")),
        concat!(
            r#"{"Address":"10.0.0.7","Datacenter":"dc1","EnableTagOverride":false,"ID":"ledger-1","#,
            r#""Meta":{"plane":"chain"},"Port":8080,"Service":"ledger","Tags":["v1"],"#,
            r#""Weights":{"Passing":1,"Warning":1}}"#
        )
    );
}

#[test]
fn a_reader_does_not_take_a_check_without_status_for_passing() {
    let e: ServiceEntry = serde_json::from_str(
        r#"{"Node":{"Address":"10.1.1.1"},"Service":{"ID":"a","MeshPort":1},"Checks":[{"CheckID":"x"}]}"#,
    )
    .unwrap();
    assert!(!e.passing());
    assert_eq!(
        e.address(),
        "10.1.1.1",
        "an instance without an address is at its node's"
    );
}

#[test]
fn the_sidecars_registration_is_read_by_the_registrys_parser() {
    let reg = SidecarRegistration {
        address: "10.0.0.7".into(),
        check: TtlCheck {
            check_id: "ledger-1-sidecar".into(),
            status: CheckStatus::Passing,
            ttl: "15s".into(),
        },
        id: "ledger-1".into(),
        mesh_port: 21000,
        meta: BTreeMap::from([("plane".into(), "chain".into())]),
        name: "ledger".into(),
        port: 8080,
        tags: vec!["v1".into()],
    };
    assert_eq!(
        bytes(&reg),
        concat!(
            r#"{"Address":"10.0.0.7","Check":{"CheckID":"ledger-1-sidecar","Status":"passing","TTL":"15s"},"#,
            r#""ID":"ledger-1","MeshPort":21000,"Meta":{"plane":"chain"},"Name":"ledger","Port":8080,"Tags":["v1"]}"#
        )
    );
    let parsed = parse_registration(&serde_json::to_value(&reg).unwrap(), str::to_owned).unwrap();
    assert_eq!(parsed.instance.mesh_port, Some(21000));
    assert_eq!(parsed.instance.id, "ledger-1");
    assert_eq!(parsed.checks.len(), 1);
    assert_eq!(parsed.checks[0].kind, CheckKind::Ttl);
    assert_eq!(parsed.checks[0].interval, Duration::from_secs(15));
}

#[test]
fn ca_and_token_answers_keep_their_names() {
    let leaf = SignedLeaf {
        cert_pem: "C".into(),
        chain_pem: "R".into(),
        not_after: "2027-01-01T00:00:00Z".into(),
        serial: "0a".into(),
        ..SignedLeaf::default()
    };
    assert_eq!(
        bytes(&leaf),
        r#"{"cert_pem":"C","chain_pem":"R","not_after":"2027-01-01T00:00:00Z","serial":"0a"}"#
    );
    let rec = CertRecord {
        not_after: "2027-01-01T00:00:00Z".into(),
        not_after_unix: 1_798_761_600,
        plane: "default".into(),
        revoked: false,
        revoked_index: None,
        serial: "0a".into(),
        service: "web".into(),
    };
    assert_eq!(
        bytes(&rec),
        concat!(
            r#"{"not_after":"2027-01-01T00:00:00Z","not_after_unix":1798761600,"plane":"default","#,
            r#""revoked":false,"revoked_index":null,"serial":"0a","service":"web"}"#
        )
    );
    let management = TokenView {
        accessor_id: "a".into(),
        create_index: 4,
        description: "d".into(),
        policies: vec![PolicyLink {
            id: "00000000-0000-0000-0000-000000000001".into(),
            name: "global-management".into(),
        }],
        secret_id: Some("s".into()),
        ..TokenView::default()
    };
    assert_eq!(
        bytes(&management),
        concat!(
            r#"{"AccessorID":"a","SecretID":"s","Description":"d","#,
            r#""Policies":[{"ID":"00000000-0000-0000-0000-000000000001","Name":"global-management"}],"#,
            r#""Local":false,"CreateIndex":4,"ModifyIndex":0}"#
        )
    );
    assert_eq!(management.kind(), "global-management");
    let service = TokenView {
        service_identities: vec![ServiceIdentity {
            service_name: "web".into(),
            ..ServiceIdentity::default()
        }],
        ..TokenView::default()
    };
    assert_eq!(service.kind(), "service:web");
    assert!(!bytes(&service).contains("Policies"));
}

#[test]
fn the_raft_configuration_keeps_consuls_names() {
    let cfg = RaftConfiguration {
        index: 7,
        servers: vec![RaftServer {
            address: "127.0.0.1:8301".into(),
            http_address: "127.0.0.1:8500".into(),
            id: "1".into(),
            leader: true,
            node: "node-1".into(),
            protocol_version: "3".into(),
            voter: true,
        }],
    };
    assert_eq!(
        bytes(&cfg),
        concat!(
            r#"{"Index":7,"Servers":[{"Address":"127.0.0.1:8301","HTTPAddress":"127.0.0.1:8500","ID":"1","#,
            r#""Leader":true,"Node":"node-1","ProtocolVersion":"3","Voter":true}]}"#
        )
    );
}
