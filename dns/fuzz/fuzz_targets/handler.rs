//! Arbitrary bytes through hickory's request parsing and our handler, exactly as the server
//! does it: whatever parses must produce a response that decodes and fits the UDP limit;
//! nothing may panic.

#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use lucid_core::catalog::{CheckStatus, Instance, Weights};
use lucid_dns::proto::op::Message;
use lucid_dns::proto::rr::Record;
use lucid_dns::proto::serialize::binary::BinEncoder;
use lucid_dns::server::net::runtime::TokioTime;
use lucid_dns::server::net::xfer::Protocol;
use lucid_dns::server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use lucid_dns::server::zone_handler::MessageResponse;
use lucid_dns::{DnsHandler, Zone, ZoneConfig, ZoneHandle};

fn inst(id: String, name: &str, addr: String, tags: &[&str]) -> Instance {
    Instance {
        id,
        name: name.into(),
        address: addr,
        port: 8080,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        meta: BTreeMap::from([("k".into(), "v".repeat(300))]),
        weights: Weights::default(),
        mesh_port: None,
        enable_tag_override: false,
        extras: Default::default(),
    }
}

static HANDLER: LazyLock<DnsHandler> = LazyLock::new(|| {
    let cfg = ZoneConfig::new("lucid.internal", 0, false).unwrap();
    let web = (0..5)
        .map(|i| (inst(format!("web-{i}"), "web", format!("10.0.0.{i}"), &["v1"]), CheckStatus::Passing))
        .collect();
    let big = (0..300)
        .map(|i| (inst(format!("big-{i}"), "big", format!("fd00::{i:x}"), &[]), CheckStatus::Passing))
        .collect();
    let odd = vec![
        (inst("odd id".into(), "odd", "host.example.".into(), &[]), CheckStatus::Warning),
        (inst("x.y".into(), "odd", "not an address".into(), &[]), CheckStatus::Critical),
    ];
    let zone = Zone::new(cfg).rebuilt(1, [("web".into(), web), ("big".into(), big), ("odd".into(), odd)]);
    DnsHandler::new(ZoneHandle::new(zone), None)
});

static RT: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().unwrap());

/// Encodes the response the way hickory's `ResponseHandle` does and keeps the bytes.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    out: Arc<Mutex<Option<(Vec<u8>, usize)>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, lucid_dns::server::net::NetError> {
        let limit = match (self.protocol, response.edns()) {
            (Protocol::Udp, Some(e)) => e.max_payload(),
            (Protocol::Udp, None) => 512,
            _ => u16::MAX,
        };
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(limit);
        let info = response.destructive_emit(&mut enc)?;
        *self.out.lock().unwrap() = Some((buf, usize::from(limit)));
        Ok(info)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, packet)) = data.split_first() else { return };
    let protocol = if first & 1 == 0 { Protocol::Udp } else { Protocol::Tcp };
    let src: SocketAddr = ([127, 0, 0, 1], 5353).into();
    // What fails to parse here, hickory's server answers with FORMERR (or drops) before our
    // handler runs; that path is hickory's own.
    let Ok(request) = Request::from_bytes(packet.to_vec(), src, protocol) else { return };
    let capture = Capture { protocol, out: Arc::default() };
    RT.block_on(HANDLER.handle_request::<_, TokioTime>(&request, capture.clone()));
    let Some((bytes, limit)) = capture.out.lock().unwrap().take() else { return };
    assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
    let answer = Message::from_vec(&bytes).expect("our response decodes");
    assert_eq!(answer.metadata.id, request.metadata.id);
    if let Some(e) = &request.edns {
        if e.version() == 0 && protocol == Protocol::Udp {
            assert!(answer.edns.is_some(), "OPT mirrored");
        }
    }
});
