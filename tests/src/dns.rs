//! DNS clients for tests: hickory's client (UDP or TCP) for well-formed queries, raw sockets
//! for hand-made packets, and Debian's `dig` as an independent implementation.

use std::net::SocketAddr;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle;
use hickory_proto::op::{DnsRequestOptions, Message, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use hickory_proto as proto;

/// Which transport a query goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Ask `server` for `name`/`rtype` with hickory's client. `edns`: the advertised UDP payload
/// (None: no OPT record, so the classic 512-byte limit applies).
pub async fn query(
    server: &str,
    transport: Transport,
    name: &str,
    rtype: RecordType,
    edns: Option<u16>,
) -> anyhow::Result<Message> {
    let addr: SocketAddr = server.parse().context("DNS server address")?;
    let provider = TokioRuntimeProvider::default();
    let client = match transport {
        Transport::Udp => {
            let stream = UdpClientStream::builder(addr, provider)
                .with_timeout(Some(Duration::from_secs(5)))
                .build();
            let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
            tokio::spawn(bg);
            client
        }
        Transport::Tcp => {
            let (stream, sender) =
                TcpClientStream::new(addr, None, Some(Duration::from_secs(5)), provider);
            let (client, bg) = Client::<TokioRuntimeProvider>::new(stream.await?, sender);
            tokio::spawn(bg);
            client
        }
    };
    let mut options = DnsRequestOptions::default();
    options.use_edns = edns.is_some();
    options.edns_payload_len = edns.unwrap_or(512);
    let q = Query::query(Name::from_str(name)?, rtype);
    let mut responses = client.lookup(q, options);
    use futures_util::StreamExt;
    match responses.next().await {
        Some(r) => Ok(r
            .with_context(|| format!("{name} {rtype} over {transport:?}"))?
            .into_message()),
        None => bail!("no response for {name} {rtype}"),
    }
}

/// Send raw bytes over UDP and return the raw answer, or `None` if none came within `wait`.
pub async fn raw_udp(
    server: &str,
    packet: &[u8],
    wait: Duration,
) -> anyhow::Result<Option<Vec<u8>>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(server).await?;
    sock.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(n) => {
            buf.truncate(n?);
            Ok(Some(buf))
        }
        Err(_) => Ok(None),
    }
}

/// Send one framed message over a fresh TCP connection and read the framed answer.
pub async fn raw_tcp(server: &str, packet: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(server).await?;
    let len = u16::try_from(packet.len())?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(packet).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Addresses in the answer section, sorted.
pub fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// SRV answers as (target, port, weight), sorted.
pub fn srvs(m: &Message) -> Vec<(String, u16, u16)> {
    let mut v: Vec<(String, u16, u16)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.target.to_ascii(), s.port, s.weight)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The SOA in the authority section, if any.
pub fn authority_soa(m: &Message) -> Option<&Record> {
    m.authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
}

/// Run Debian's `dig` against `server` (`ip:port`) with extra arguments; its stdout.
pub fn dig(server: &str, args: &[&str]) -> anyhow::Result<String> {
    let (ip, port) = server.rsplit_once(':').context("server is ip:port")?;
    let out = Command::new("dig")
        .arg(format!("@{ip}"))
        .args(["-p", port, "+time=3", "+tries=1"])
        .args(args)
        .output()
        .context("running dig (Debian package dnsutils)")?;
    if !out.status.success() {
        bail!(
            "dig {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
