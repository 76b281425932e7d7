//! Issue "Trust II" 9: who DNS answers and how much. A source outside `--dns-acl` is
//! refused; the recursor relays only for `--dns-recursor-allow`; meta reaches TXT only for
//! the keys `--dns-txt-meta` names (none by default with ACLs on); the UDP rate limit bounds
//! the answers one source gets per second and slips TC answers, while another source and
//! TCP from the same one are still answered. Queries are raw packets from chosen loopback
//! source addresses.

use std::time::{Duration, Instant};

use http::Method;
use lucid_tests::dns::proto::op::{Message, Query, ResponseCode};
use lucid_tests::dns::proto::rr::{Name, RData, RecordType};
use lucid_tests::dns::proto::serialize::binary::BinEncodable;
use lucid_tests::registry::RegistryProc;
use serde_json::json;
use tokio::net::UdpSocket;

use crate::kv::single_node_with;

fn packet(id: u16, name: &str, rtype: RecordType) -> anyhow::Result<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.parse::<Name>()?, rtype));
    Ok(m.to_bytes()?)
}

async fn socket_from(src: [u8; 4], server: &str) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind((std::net::IpAddr::from(src), 0)).await?;
    s.connect(server).await?;
    Ok(s)
}

/// One query from `src`; the answer, if one came within a second.
async fn ask_from(
    src: [u8; 4],
    server: &str,
    name: &str,
    rtype: RecordType,
) -> anyhow::Result<Option<Message>> {
    let s = socket_from(src, server).await?;
    s.send(&packet(7, name, rtype)?).await?;
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(1), s.recv(&mut buf)).await {
        Err(_) => Ok(None),
        Ok(n) => Ok(Some(Message::from_vec(&buf[..n?])?)),
    }
}

async fn node_with(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<RegistryProc> {
    let node = single_node_with(&dir.join("n1"), extra).await?;
    node.client()
        .call(
            Method::PUT,
            "/v1/agent/service/register",
            json!({"Name": "web", "ID": "web-1", "Address": "10.1.0.1", "Port": 80,
                "Meta": {"version": "1.0", "owner": "secret-team"}})
            .to_string(),
        )
        .await?
        .error_for_status()?;
    lucid_tests::wait::until("web in DNS", Duration::from_secs(10), || async {
        let m = ask_from(
            [127, 0, 0, 1],
            &node.dns,
            "web.lucid.internal.",
            RecordType::A,
        )
        .await?;
        Ok(m.filter(|m| !m.answers.is_empty()).map(|_| ()))
    })
    .await?;
    Ok(node)
}

#[tokio::test]
async fn sources_outside_the_dns_acl_are_refused_and_meta_is_allow_listed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node_with(
        dir.path(),
        &[
            "--dns-acl",
            "127.0.0.1/32",
            "--dns-txt-meta",
            "version",
            "--dns-recursor",
            "127.0.0.1:9",
            "--dns-recursor-allow",
            "127.0.0.1/32",
        ],
    )
    .await?;
    let m = ask_from(
        [127, 0, 0, 3],
        &node.dns,
        "web.lucid.internal.",
        RecordType::A,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("no answer to a refused source"))?;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty(), "a refused source learns nothing");
    let m = ask_from(
        [127, 0, 0, 1],
        &node.dns,
        "web-1.instance.lucid.internal.",
        RecordType::TXT,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("no TXT answer"))?;
    let txt: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(txt, ["version=1.0"], "only allowed meta keys are published");
    Ok(())
}

#[tokio::test]
async fn the_recursor_relays_only_for_allowed_sources() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = single_node_with(&dir.path().join("up"), &["--dns-domain", "other.test"]).await?;
    let node = node_with(
        &dir.path().join("me"),
        &[
            "--dns-recursor",
            &up.dns,
            "--dns-recursor-allow",
            "127.0.0.1/32",
        ],
    )
    .await?;
    let allowed = ask_from([127, 0, 0, 1], &node.dns, "nope.other.test.", RecordType::A)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    assert_eq!(
        allowed.metadata.response_code,
        ResponseCode::NXDomain,
        "relayed for 127.0.0.1"
    );
    let other = ask_from([127, 0, 0, 5], &node.dns, "nope.other.test.", RecordType::A)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer"))?;
    assert_eq!(
        other.metadata.response_code,
        ResponseCode::Refused,
        "not an open resolver"
    );
    assert!(!other.metadata.recursion_available);
    // Our own zone still answers that source.
    let own = ask_from(
        [127, 0, 0, 5],
        &node.dns,
        "web.lucid.internal.",
        RecordType::A,
    )
    .await?;
    assert_eq!(own.map(|m| m.answers.len()), Some(1));
    Ok(())
}

#[tokio::test]
async fn the_rate_limit_bounds_one_source_and_slips_truncated_answers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // 20 answers/s to one source; 127.0.0.1 is not exempt here (only .9 is).
    let node = node_with(
        dir.path(),
        &[
            "--dns-rrl-rate",
            "20",
            "--dns-rrl-slip",
            "2",
            "--dns-rrl-exempt",
            "127.0.0.9/32",
        ],
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the set-up queries' budget refills
    let s = socket_from([127, 0, 0, 1], &node.dns).await?;
    let q = packet(1, "web.lucid.internal.", RecordType::A)?;
    let start = Instant::now();
    for _ in 0..200 {
        s.send(&q).await?;
    }
    let (mut full, mut tc) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf)).await {
        let m = Message::from_vec(&buf[..n?])?;
        if m.metadata.truncation && m.answers.is_empty() {
            tc += 1;
        } else {
            full += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("200 queries in a burst: {full} answered, {tc} slipped (TC), over {secs:.2} s");
    assert!(
        full >= 10,
        "a well-behaved share is still answered ({full})"
    );
    assert!(
        f64::from(full) <= 20.0 * secs + 25.0,
        "{full} full answers in {secs:.2} s at 20/s"
    );
    assert!(
        (60..=120).contains(&tc),
        "every other limited answer slips: {tc}"
    );
    // Another source is unaffected, and TCP from the limited one is never limited.
    let m = ask_from(
        [127, 0, 0, 2],
        &node.dns,
        "web.lucid.internal.",
        RecordType::A,
    )
    .await?;
    assert_eq!(m.map(|m| m.answers.len()), Some(1));
    let m = lucid_tests::dns::query(
        &node.dns,
        lucid_tests::dns::Transport::Tcp,
        "web.lucid.internal.",
        RecordType::A,
        None,
    )
    .await?;
    assert_eq!(m.answers.len(), 1);
    let (_, metrics) = (0, node.client().call(Method::GET, "/metrics", "").await?);
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("lucid_dns_rrl_total"),
        "limited answers are counted"
    );
    Ok(())
}
