//! The registry's DNS responder, queried by real clients (hickory's, over UDP and TCP, and
//! Debian's `dig`) against live registries: every name form, health filtering, negative
//! answers, EDNS and truncation, propagation to every node, forwarding, malformed packets.

use std::time::Duration;

use http::Method;
use lucid_client::RegistryClient;
use lucid_tests::dns::proto::op::{Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use lucid_tests::dns::proto::rr::{Name, RData, RecordType};
use lucid_tests::dns::proto::serialize::binary::BinEncodable;
use lucid_tests::dns::{self, addrs, authority_soa, dig, srvs, Transport};
use lucid_tests::registry::{cluster_lock, Cluster, RegistryProc};
use lucid_tests::wait;
use serde_json::json;

use crate::kv::{single_node, single_node_with};

const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];

async fn register(c: &RegistryClient, body: serde_json::Value) -> anyhow::Result<()> {
    c.call(Method::PUT, "/v1/agent/service/register", body.to_string())
        .await?
        .error_for_status()?;
    Ok(())
}

/// web-1 (v1, 10.1.0.1), web-2 (v2, 10.1.0.2, TTL check), web-3 (v1, fd00::3), all passing;
/// returns once the node's DNS (zone `zone`) answers with them.
async fn register_web(node: &RegistryProc, zone: &str) -> anyhow::Result<()> {
    let c = &node.client();
    register(c, json!({"Name": "web", "ID": "web-1", "Address": "10.1.0.1", "Port": 8080,
        "Tags": ["v1"], "Meta": {"version": "1.0", "plane": "ops"}, "Weights": {"Passing": 5, "Warning": 1}}))
    .await?;
    register(
        c,
        json!({"Name": "web", "ID": "web-2", "Address": "10.1.0.2", "Port": 8081,
        "Tags": ["v2"], "Check": {"CheckID": "web-2-ttl", "TTL": "60s", "Status": "passing"}}),
    )
    .await?;
    register(
        c,
        json!({"Name": "web", "ID": "web-3", "Address": "fd00::3", "Port": 8082,
        "Tags": ["v1"]}),
    )
    .await?;
    answers(
        &node.dns,
        &format!("web.{zone}."),
        RecordType::AAAA,
        &["fd00::3"],
    )
    .await
}

/// Poll until `name` answers exactly `want` (the zone follows applied changes within
/// milliseconds, asynchronously, so a query right after an acknowledged write may still see
/// the previous zone).
async fn answers(server: &str, name: &str, rtype: RecordType, want: &[&str]) -> anyhow::Result<()> {
    wait::until(
        &format!("{name} {rtype} = {want:?}"),
        Duration::from_secs(5),
        || async {
            let got = addrs(&ask(server, Transport::Udp, name, rtype).await?);
            if got == want {
                Ok(Some(()))
            } else {
                anyhow::bail!("last answer {got:?}")
            }
        },
    )
    .await
}

async fn ask(server: &str, t: Transport, name: &str, rtype: RecordType) -> anyhow::Result<Message> {
    dns::query(server, t, name, rtype, Some(1232)).await
}

#[tokio::test]
async fn every_query_form_over_udp_and_tcp() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    register_web(&node, "lucid.internal").await?;
    let s = node.dns.as_str();

    for t in BOTH {
        for name in [
            "web.lucid.internal.",
            "WEB.Lucid.Internal.",
            "web.service.consul.",
        ] {
            let m = ask(s, t, name, RecordType::A).await?;
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{name} {t:?}"
            );
            assert!(m.metadata.authoritative, "{name}: AA");
            assert_eq!(addrs(&m), ["10.1.0.1", "10.1.0.2"], "{name} {t:?}");
            assert!(m.answers.iter().all(|r| r.ttl == 0), "default TTL is 0");
        }
        let m = ask(s, t, "web.lucid.internal.", RecordType::AAAA).await?;
        assert_eq!(addrs(&m), ["fd00::3"]);

        for name in [
            "v1.web.lucid.internal.",
            "v1.web.service.consul.",
            "_web._v1.lucid.internal.",
        ] {
            let m = ask(s, t, name, RecordType::A).await?;
            assert_eq!(addrs(&m), ["10.1.0.1"], "{name} {t:?}");
        }

        for name in [
            "_web._tcp.lucid.internal.",
            "web.lucid.internal.",
            "_web._tcp.service.consul.",
        ] {
            let m = ask(s, t, name, RecordType::SRV).await?;
            assert_eq!(
                srvs(&m),
                [
                    ("web-1.instance.lucid.internal.".to_string(), 8080, 5),
                    ("web-2.instance.lucid.internal.".to_string(), 8081, 1),
                    ("web-3.instance.lucid.internal.".to_string(), 8082, 1),
                ],
                "{name} {t:?}"
            );
            let mut glue: Vec<(String, String)> = m
                .additionals
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some((r.name.to_ascii(), a.0.to_string())),
                    RData::AAAA(a) => Some((r.name.to_ascii(), a.0.to_string())),
                    _ => None,
                })
                .collect();
            glue.sort();
            assert_eq!(
                glue,
                [
                    ("web-1.instance.lucid.internal.".into(), "10.1.0.1".into()),
                    ("web-2.instance.lucid.internal.".into(), "10.1.0.2".into()),
                    ("web-3.instance.lucid.internal.".into(), "fd00::3".into()),
                ]
            );
        }

        // The SRV target resolves on its own, and carries the instance's meta as TXT.
        let m = ask(s, t, "web-1.instance.lucid.internal.", RecordType::A).await?;
        assert_eq!(addrs(&m), ["10.1.0.1"]);
        let m = ask(s, t, "web-1.instance.lucid.internal.", RecordType::TXT).await?;
        let mut txt: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        txt.sort();
        assert_eq!(txt, ["plane=ops", "version=1.0"]);
    }
    Ok(())
}

#[tokio::test]
async fn negative_answers_and_refusals() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    register_web(&node, "lucid.internal").await?;
    let s = node.dns.as_str();
    for t in BOTH {
        for name in [
            "nope.lucid.internal.",
            "v9.web.lucid.internal.",
            "x.instance.lucid.internal.",
            "nope.service.consul.",
            "a.b.c.lucid.internal.",
        ] {
            let m = ask(s, t, name, RecordType::A).await?;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(m.answers.is_empty());
            let soa = authority_soa(&m).expect("SOA in authority");
            let zone = if name.ends_with("consul.") {
                "consul."
            } else {
                "lucid.internal."
            };
            assert_eq!(soa.name.to_ascii(), zone, "{name}");
        }
        // Known name, other type: NODATA with the SOA.
        let m = ask(s, t, "web.lucid.internal.", RecordType::MX).await?;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert!(authority_soa(&m).is_some());
        // Outside the zone without a recursor: REFUSED.
        let m = ask(s, t, "example.com.", RecordType::A).await?;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    Ok(())
}

#[tokio::test]
async fn critical_instances_drop_out_of_the_answer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    register_web(&node, "lucid.internal").await?;
    let s = node.dns.clone();

    c.call(Method::PUT, "/v1/agent/check/warn/web-2-ttl", "")
        .await?
        .error_for_status()?;
    // Warning stays in (only critical is dropped by default) with its warning weight.
    answers(
        &s,
        "web.lucid.internal.",
        RecordType::A,
        &["10.1.0.1", "10.1.0.2"],
    )
    .await?;

    c.call(Method::PUT, "/v1/agent/check/fail/web-2-ttl", "")
        .await?
        .error_for_status()?;
    answers(&s, "web.lucid.internal.", RecordType::A, &["10.1.0.1"]).await?;
    let m = ask(
        &s,
        Transport::Tcp,
        "_web._tcp.lucid.internal.",
        RecordType::SRV,
    )
    .await?;
    assert_eq!(srvs(&m).len(), 2);
    let m = ask(&s, Transport::Udp, "v2.web.lucid.internal.", RecordType::A).await?;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // The instance's own name still resolves (it is registered, only unhealthy).
    let m = ask(
        &s,
        Transport::Udp,
        "web-2.instance.lucid.internal.",
        RecordType::A,
    )
    .await?;
    assert_eq!(addrs(&m), ["10.1.0.2"]);

    c.call(Method::PUT, "/v1/agent/check/pass/web-2-ttl", "")
        .await?
        .error_for_status()?;
    answers(
        &s,
        "web.lucid.internal.",
        RecordType::A,
        &["10.1.0.1", "10.1.0.2"],
    )
    .await?;

    c.call(Method::PUT, "/v1/agent/service/deregister/web-1", "")
        .await?
        .error_for_status()?;
    answers(&s, "web.lucid.internal.", RecordType::A, &["10.1.0.2"]).await?;
    let m = ask(
        &s,
        Transport::Udp,
        "web-1.instance.lucid.internal.",
        RecordType::A,
    )
    .await?;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    Ok(())
}

#[tokio::test]
async fn only_passing_flag_and_ttl_flag() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node_with(
        &dir.path().join("n1"),
        &[
            "--dns-only-passing",
            "--dns-ttl",
            "30",
            "--dns-domain",
            "mesh.test",
        ],
    )
    .await?;
    let c = node.client();
    register_web(&node, "mesh.test").await?;
    c.call(Method::PUT, "/v1/agent/check/warn/web-2-ttl", "")
        .await?
        .error_for_status()?;
    answers(&node.dns, "web.mesh.test.", RecordType::A, &["10.1.0.1"]).await?;
    let m = ask(&node.dns, Transport::Udp, "web.mesh.test.", RecordType::A).await?;
    assert!(m.answers.iter().all(|r| r.ttl == 30));
    let m = ask(
        &node.dns,
        Transport::Udp,
        "web.lucid.internal.",
        RecordType::A,
    )
    .await?;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "not our zone any more"
    );
    let m = ask(
        &node.dns,
        Transport::Udp,
        "web.service.consul.",
        RecordType::A,
    )
    .await?;
    assert_eq!(addrs(&m), ["10.1.0.1"]);
    Ok(())
}

#[tokio::test]
async fn two_hundred_instances_truncate_on_udp_and_come_whole_over_tcp() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    for i in 0..200 {
        register(
            &c,
            json!({"Name": "big", "ID": format!("big-{i}"),
            "Address": format!("10.2.{}.{}", i / 250, i % 250 + 1), "Port": 9000}),
        )
        .await?;
    }
    let s = node.dns.as_str();
    wait::until("200 instances in DNS", Duration::from_secs(5), || async {
        let m = dns::query(
            s,
            Transport::Tcp,
            "big.lucid.internal.",
            RecordType::A,
            None,
        )
        .await?;
        Ok((m.answers.len() == 200).then_some(()))
    })
    .await?;
    for rtype in [RecordType::A, RecordType::SRV] {
        // EDNS with a big buffer is clamped to 1232; without EDNS the limit is 512.
        for edns in [Some(4096), None] {
            let m = dns::query(s, Transport::Udp, "big.lucid.internal.", rtype, edns).await?;
            assert!(m.metadata.truncation, "{rtype} {edns:?}: TC must be set");
            assert!(m.answers.len() < 200, "{rtype}: {}", m.answers.len());
            match edns {
                Some(_) => {
                    let e = m.edns.as_ref().expect("OPT mirrored");
                    assert_eq!(e.max_payload(), 1232);
                }
                None => assert!(m.edns.is_none(), "no OPT without one in the request"),
            }
        }
        let m = dns::query(s, Transport::Tcp, "big.lucid.internal.", rtype, Some(1232)).await?;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 200, "{rtype} over TCP");
    }
    let m = dns::query(
        s,
        Transport::Tcp,
        "big.lucid.internal.",
        RecordType::A,
        None,
    )
    .await?;
    assert_eq!(addrs(&m).len(), 200);
    // Shuffled per query: two answers are not in the same order.
    let order = |m: &Message| {
        m.answers
            .iter()
            .map(|r| r.data.to_string())
            .collect::<Vec<_>>()
    };
    let first = order(
        &dns::query(
            s,
            Transport::Tcp,
            "big.lucid.internal.",
            RecordType::A,
            None,
        )
        .await?,
    );
    let mut differs = false;
    for _ in 0..3 {
        let next = dns::query(
            s,
            Transport::Tcp,
            "big.lucid.internal.",
            RecordType::A,
            None,
        )
        .await?;
        differs |= order(&next) != first;
    }
    assert!(differs, "answers are shuffled per query");
    Ok(())
}

#[tokio::test]
async fn dig_agrees() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    register_web(&node, "lucid.internal").await?;
    let s = node.dns.as_str();
    let sorted = |out: String| {
        let mut v: Vec<String> = out
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    };
    for tcp in ["+notcp", "+tcp"] {
        let a = dig(s, &[tcp, "+short", "web.lucid.internal", "A"])?;
        assert_eq!(sorted(a), ["10.1.0.1", "10.1.0.2"], "{tcp}");
        let a = dig(s, &[tcp, "+short", "v2.web.service.consul", "A"])?;
        assert_eq!(sorted(a), ["10.1.0.2"]);
        let srv = dig(s, &[tcp, "+short", "_web._tcp.lucid.internal", "SRV"])?;
        assert_eq!(
            sorted(srv),
            [
                "1 1 8081 web-2.instance.lucid.internal.",
                "1 1 8082 web-3.instance.lucid.internal.",
                "1 5 8080 web-1.instance.lucid.internal.",
            ]
        );
        let txt = dig(s, &[tcp, "+short", "web-1.instance.lucid.internal", "TXT"])?;
        assert_eq!(sorted(txt), ["\"plane=ops\"", "\"version=1.0\""]);
        let full = dig(s, &[tcp, "nope.lucid.internal", "A"])?;
        assert!(full.contains("status: NXDOMAIN"), "{full}");
        assert!(full.contains("AUTHORITY: 1"), "{full}");
        assert!(full.contains("SOA"), "{full}");
        let full = dig(s, &[tcp, "example.org", "A"])?;
        assert!(full.contains("status: REFUSED"), "{full}");
    }
    // Every query above is counted by type and response code.
    let metrics = node
        .client()
        .call(Method::GET, "/metrics", "")
        .await?
        .error_for_status()?;
    let text = String::from_utf8_lossy(&metrics.body);
    for series in [
        r#"lucid_dns_queries_total{type="A",rcode="NOERROR"}"#,
        r#"lucid_dns_queries_total{type="SRV",rcode="NOERROR"}"#,
        r#"lucid_dns_queries_total{type="A",rcode="NXDOMAIN"}"#,
        r#"lucid_dns_queries_total{type="A",rcode="REFUSED"}"#,
        "lucid_dns_answer_seconds_count",
        "lucid_dns_zone_instances 3",
    ] {
        assert!(
            text.contains(series),
            "{series} missing from /metrics:\n{text}"
        );
    }
    // EDNS: the OPT is mirrored and the payload clamped to 1232.
    let full = dig(s, &["+bufsize=4096", "web.lucid.internal", "A"])?;
    assert!(full.contains("udp: 1232"), "{full}");
    assert!(full.contains("flags: qr aa rd"), "{full}");
    // An unknown EDNS version gets BADVERS.
    let full = dig(
        s,
        &["+edns=1", "+noednsnegotiation", "web.lucid.internal", "A"],
    )?;
    assert!(full.contains("status: BADVERS"), "{full}");
    Ok(())
}

fn packet(id: u16, questions: &[(&str, RecordType)], op: OpCode) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, op);
    for (name, t) in questions {
        m.queries
            .push(Query::query(Name::from_ascii(name).unwrap(), *t));
    }
    m.to_bytes().unwrap()
}

fn header(raw: &[u8]) -> Metadata {
    Message::from_vec(raw).expect("a decodable answer").metadata
}

#[tokio::test]
async fn malformed_packets_get_formerr_or_silence_and_the_server_keeps_answering(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    register_web(&node, "lucid.internal").await?;
    let s = node.dns.as_str();
    let wait = Duration::from_millis(300);

    // Shorter than a header: dropped.
    assert!(dns::raw_udp(s, &[0x12, 0x34, 0x01], wait).await?.is_none());
    // A header promising a question that is not there: FORMERR.
    let mut bad = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[0x03, b'w', b'e']);
    let raw = dns::raw_udp(s, &bad, Duration::from_secs(2))
        .await?
        .expect("an answer");
    let h = header(&raw);
    assert_eq!((h.id, h.response_code), (0xabcd, ResponseCode::FormErr));
    // A question compressed against the header (hickory echoes questions verbatim, so the
    // pointer would land in our header): FORMERR without the question, and decodable.
    let mut ptr = vec![0x01, 0x01, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    ptr.extend_from_slice(&[0x03, b'w', b'e', b'b', 0xc0, 0x02, 0x00, 0x01, 0x00, 0x01]);
    let raw = dns::raw_udp(s, &ptr, Duration::from_secs(2))
        .await?
        .expect("an answer");
    let m = Message::from_vec(&raw).expect("a decodable answer");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert!(m.queries.is_empty());
    // Two questions: FORMERR.
    let two = packet(
        7,
        &[
            ("web.lucid.internal.", RecordType::A),
            ("web.lucid.internal.", RecordType::AAAA),
        ],
        OpCode::Query,
    );
    let raw = dns::raw_udp(s, &two, Duration::from_secs(2))
        .await?
        .expect("an answer");
    assert_eq!(header(&raw).response_code, ResponseCode::FormErr);
    // No question: FORMERR.
    let none = packet(8, &[], OpCode::Query);
    let raw = dns::raw_tcp(s, &none).await?;
    assert_eq!(header(&raw).response_code, ResponseCode::FormErr);
    // An UPDATE: NOTIMP.
    let upd = packet(9, &[("lucid.internal.", RecordType::SOA)], OpCode::Update);
    let raw = dns::raw_udp(s, &upd, Duration::from_secs(2))
        .await?
        .expect("an answer");
    assert_eq!(header(&raw).response_code, ResponseCode::NotImp);
    // A response sent to us: ignored (no reflection).
    let mut resp = Message::new(10, MessageType::Response, OpCode::Query);
    resp.queries.push(Query::query(
        Name::from_ascii("web.lucid.internal.")?,
        RecordType::A,
    ));
    assert!(dns::raw_udp(s, &resp.to_bytes()?, wait).await?.is_none());
    // Random garbage of many sizes: never a crash.
    let mut seed = 0x9e37_79b9_u32;
    for len in 0..200usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect();
        let _ = dns::raw_udp(s, &bytes, Duration::from_millis(20)).await?;
    }
    let m = ask(s, Transport::Udp, "web.lucid.internal.", RecordType::A).await?;
    assert_eq!(addrs(&m), ["10.1.0.1", "10.1.0.2"], "still answering");
    Ok(())
}

#[tokio::test]
async fn a_registration_reaches_dns_on_every_node() -> anyhow::Result<()> {
    let _g = cluster_lock().await;
    let cluster = Cluster::start(3, &[]).await?;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await?;
    let follower = (leader + 1) % 3;
    // Register through a follower (forwarded to the leader); every node must answer.
    register(
        &cluster.node(follower).client(),
        json!({"Name": "pay", "ID": "pay-1",
        "Address": "10.3.0.1", "Port": 443}),
    )
    .await?;
    for (i, n) in cluster.running() {
        wait::until(
            &format!("pay on node {i}"),
            Duration::from_secs(5),
            || async {
                let m = ask(&n.dns, Transport::Udp, "pay.lucid.internal.", RecordType::A).await?;
                Ok((addrs(&m) == ["10.3.0.1"]).then_some(()))
            },
        )
        .await?;
    }
    // Answers come from the local replica: a follower keeps answering with its leader gone.
    let mut cluster = cluster;
    cluster.kill9(leader);
    let m = ask(
        &cluster.node(follower).dns,
        Transport::Tcp,
        "pay.service.consul.",
        RecordType::A,
    )
    .await?;
    assert_eq!(addrs(&m), ["10.3.0.1"]);
    Ok(())
}

#[tokio::test]
async fn names_outside_the_zone_go_to_the_recursor() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The upstream: another registry serving `other.test`.
    let upstream =
        single_node_with(&dir.path().join("up"), &["--dns-domain", "other.test"]).await?;
    for i in 0..120 {
        register(
            &upstream.client(),
            json!({"Name": "far", "ID": format!("far-{i}"),
            "Address": format!("10.9.0.{}", i + 1), "Port": 1}),
        )
        .await?;
    }
    wait::until(
        "120 far instances upstream",
        Duration::from_secs(5),
        || async {
            let m = dns::query(
                &upstream.dns,
                Transport::Tcp,
                "far.other.test.",
                RecordType::A,
                None,
            )
            .await?;
            Ok((m.answers.len() == 120).then_some(()))
        },
    )
    .await?;
    let node = single_node_with(
        &dir.path().join("n1"),
        &["--dns-recursor", upstream.dns.as_str()],
    )
    .await?;
    register_web(&node, "lucid.internal").await?;
    for t in BOTH {
        let m = ask(&node.dns, t, "far-7.instance.other.test.", RecordType::A).await?;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addrs(&m), ["10.9.0.8"]);
        assert!(m.metadata.recursion_available);
        assert!(!m.metadata.authoritative, "a relayed answer is not ours");
        let m = ask(&node.dns, t, "nope.other.test.", RecordType::A).await?;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Our own zone is still answered locally.
        let m = ask(&node.dns, t, "web.lucid.internal.", RecordType::A).await?;
        assert_eq!(addrs(&m).len(), 2);
    }
    // A large upstream answer: truncated to the client over UDP, whole over TCP (we retry
    // the upstream over TCP when it truncates).
    let m = ask(&node.dns, Transport::Udp, "far.other.test.", RecordType::A).await?;
    assert!(m.metadata.truncation);
    let m = ask(&node.dns, Transport::Tcp, "far.other.test.", RecordType::A).await?;
    assert_eq!(addrs(&m).len(), 120);
    // The upstream gone: SERVFAIL, not a hang.
    drop(upstream);
    let m = ask(&node.dns, Transport::Udp, "far.other.test.", RecordType::A).await?;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    Ok(())
}

#[tokio::test]
async fn a_restored_backup_replaces_the_whole_zone() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = single_node(dir.path()).await?;
    let c = node.client();
    register_web(&node, "lucid.internal").await?;
    let backup = c
        .call(Method::GET, "/v1/snapshot", "")
        .await?
        .error_for_status()?;
    for id in ["web-1", "web-2", "web-3"] {
        c.call(
            Method::PUT,
            &format!("/v1/agent/service/deregister/{id}"),
            "",
        )
        .await?
        .error_for_status()?;
    }
    register(
        &c,
        json!({"Name": "later", "ID": "later-1", "Address": "10.5.0.1", "Port": 1}),
    )
    .await?;
    answers(
        &node.dns,
        "later.lucid.internal.",
        RecordType::A,
        &["10.5.0.1"],
    )
    .await?;
    answers(&node.dns, "web.lucid.internal.", RecordType::A, &[]).await?;

    c.call(Method::PUT, "/v1/snapshot", backup.body.clone())
        .await?
        .error_for_status()?;
    answers(
        &node.dns,
        "web.lucid.internal.",
        RecordType::A,
        &["10.1.0.1", "10.1.0.2"],
    )
    .await?;
    answers(&node.dns, "later.lucid.internal.", RecordType::A, &[]).await?;
    let m = ask(
        &node.dns,
        Transport::Udp,
        "later-1.instance.lucid.internal.",
        RecordType::A,
    )
    .await?;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    Ok(())
}
