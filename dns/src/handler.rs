//! The hickory `RequestHandler`: validates the request (opcode, one question, class, EDNS
//! version), answers it from the current zone or forwards it to the recursor, mirrors EDNS
//! with the payload clamped to 1232 bytes, and records metrics. The source [`Policy`] comes
//! first: the UDP rate limit, then who may ask, then who the recursor serves.

use std::time::Instant;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, BinEncoder};
use hickory_proto::ProtoError;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};

use crate::answer::{resolve, Answer};
use crate::forward::Forwarder;
use crate::policy::{Policy, Rate};
use crate::zone::ZoneHandle;

/// Largest UDP payload we advertise or use: the DNS flag day 2020 value, which avoids IP
/// fragmentation on every common path.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// Bytes an OPT record without options takes.
const OPT_LEN: u16 = 11;

/// Answers queries from a [`ZoneHandle`]; names outside the zone go to the recursor, if any.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    zone: ZoneHandle,
    forward: Option<Forwarder>,
    policy: std::sync::Arc<Policy>,
}

impl DnsHandler {
    pub fn new(zone: ZoneHandle, forward: Option<Forwarder>) -> DnsHandler {
        DnsHandler::with_policy(zone, forward, Policy::default())
    }

    /// With a source policy: who may ask, who the recursor serves, the UDP rate limit.
    pub fn with_policy(zone: ZoneHandle, forward: Option<Forwarder>, policy: Policy) -> DnsHandler {
        DnsHandler {
            zone,
            forward,
            policy: std::sync::Arc::new(policy),
        }
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let src = request.src().ip();
        let udp = request.protocol() == Protocol::Udp;
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = self.forward.is_some() && self.policy.may_recurse(src);
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e
        });
        // hickory echoes the question section byte for byte. A compression pointer in it
        // would then point into *our* header: answer such a request without its question.
        let no_question = Queries::read(&mut BinDecoder::new(&[]), 0).ok();
        let compressed = compressed_question(request);
        let mut builder = match (&no_question, compressed) {
            (Some(empty), true) => MessageResponseBuilder::new(empty, None),
            _ => MessageResponseBuilder::from_message_request(request),
        };
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let refuse = |code: ResponseCode| {
            let mut m = meta;
            m.response_code = code;
            m
        };
        // Rate first: a refusal is an answer too, and must not amplify either.
        if udp {
            match self.policy.rate(src) {
                Rate::Send => {}
                Rate::Slip => {
                    metrics::counter!("lucid_dns_rrl_total", "action" => "slip").increment(1);
                    let mut m = meta;
                    m.truncation = true;
                    return rh.send_response(builder.build_no_records(m)).await;
                }
                Rate::Drop => {
                    metrics::counter!("lucid_dns_rrl_total", "action" => "drop").increment(1);
                    let mut m = meta;
                    m.response_code = ResponseCode::Refused;
                    return Ok(ResponseInfo::from(Header {
                        metadata: m,
                        counts: HeaderCounts::default(),
                    }));
                }
            }
        }
        if !self.policy.may_ask(src) {
            metrics::counter!("lucid_dns_refused_sources_total").increment(1);
            let m = refuse(ResponseCode::Refused);
            return rh.send_response(builder.build_no_records(m)).await;
        }
        if compressed {
            let m = refuse(ResponseCode::FormErr);
            return rh.send_response(builder.build_no_records(m)).await;
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            let m = refuse(ResponseCode::BADVERS);
            return rh.send_response(builder.build_no_records(m)).await;
        }
        if request.metadata.op_code != OpCode::Query {
            let m = refuse(ResponseCode::NotImp);
            return rh.send_response(builder.build_no_records(m)).await;
        }
        let [query] = request.queries.queries() else {
            let m = refuse(ResponseCode::FormErr);
            return rh.send_response(builder.build_no_records(m)).await;
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            let m = refuse(ResponseCode::Refused);
            return rh.send_response(builder.build_no_records(m)).await;
        }
        let outcome = {
            let zone = self.zone.guard();
            resolve(
                &zone,
                query.name(),
                query.original().name(),
                query.query_type(),
                &mut rand::rng(),
            )
        };
        match outcome {
            Some(mut a) => {
                meta.authoritative = true;
                meta.response_code = a.rcode;
                if udp {
                    // hickory fills the buffer with answers and then has no room left for
                    // the OPT record; cut the answer ourselves, leaving room for it.
                    let limit = match &edns {
                        Some(e) => e.max_payload().saturating_sub(OPT_LEN),
                        None => 512,
                    };
                    meta.truncation = fit_udp(&mut a, request.queries.as_bytes(), limit);
                }
                let none: [&Record; 0] = [];
                let resp = builder.build(
                    meta,
                    a.answers.iter(),
                    none,
                    a.soa.iter(),
                    a.additionals.iter(),
                );
                rh.send_response(resp).await
            }
            None => match self
                .forward
                .as_ref()
                .filter(|_| self.policy.may_recurse(src))
            {
                None => {
                    let m = refuse(ResponseCode::Refused);
                    rh.send_response(builder.build_no_records(m)).await
                }
                Some(fwd) => match fwd.exchange(request).await {
                    Ok(up) => {
                        let mut m = meta;
                        m.response_code = up.metadata.response_code;
                        m.truncation = up.metadata.truncation;
                        let none: [&Record; 0] = [];
                        let resp = builder.build(
                            m,
                            up.answers.iter(),
                            up.authorities.iter(),
                            none,
                            up.additionals.iter(),
                        );
                        rh.send_response(resp).await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "recursor failed");
                        let m = refuse(ResponseCode::ServFail);
                        rh.send_response(builder.build_no_records(m)).await
                    }
                },
            },
        }
    }
}

/// Does the question section use name compression? Real clients never compress it (there is
/// nothing before it to point at but the header).
fn compressed_question(request: &Request) -> bool {
    let raw = request.queries.as_bytes();
    let mut i = 0;
    for _ in 0..request.queries.len() {
        loop {
            let Some(&len) = raw.get(i) else { return true };
            if len & 0xC0 != 0 {
                return true;
            }
            i += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        i += 4; // type and class
    }
    false
}

/// Cut `a` to what fits in `limit` bytes. Answer or authority records that do not fit make
/// the result truncated (TC); additional records that do not fit are only left out
/// (RFC 2181 §9). Encodes for real (with name compression) only when a cheap upper bound
/// says the answer might not fit. `question` is the question section as received: hickory
/// copies those bytes verbatim, so they register no compression targets, here or there.
fn fit_udp(a: &mut Answer, question: &[u8], limit: u16) -> bool {
    let records = a.answers.iter().chain(&a.soa).chain(&a.additionals);
    let bound = 12 + question.len() + records.map(wire_len_bound).sum::<usize>();
    if bound <= usize::from(limit) {
        return false;
    }
    let mut buf = Vec::with_capacity(usize::from(limit));
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_max_size(limit);
    if enc.emit_vec(&[0u8; 12]).is_err() || enc.emit_vec(question).is_err() {
        a.answers.clear();
        a.soa = None;
        a.additionals.clear();
        return true;
    }
    let fit = emitted(enc.emit_all(a.answers.iter()));
    if fit < a.answers.len() {
        a.answers.truncate(fit);
        a.additionals.clear();
        return true;
    }
    if emitted(enc.emit_all(a.soa.iter())) < usize::from(a.soa.is_some()) {
        a.soa = None;
        a.additionals.clear();
        return true;
    }
    let fit = emitted(enc.emit_all(a.additionals.iter()));
    a.additionals.truncate(fit);
    false
}

fn emitted(r: Result<usize, ProtoError>) -> usize {
    match r {
        Ok(n) => n,
        Err(ProtoError::NotAllRecordsWritten { count, .. }) => count,
        Err(_) => 0,
    }
}

/// An upper bound of a record's encoded size (names uncompressed).
fn wire_len_bound(r: &Record) -> usize {
    let rdata = match &r.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(s) => 6 + s.target.len() + 1,
        RData::TXT(t) => t.txt_data.iter().map(|s| s.len() + 1).sum(),
        RData::SOA(s) => s.mname.len() + s.rname.len() + 22,
        _ => usize::from(u16::MAX),
    };
    r.name.len() + 1 + 10 + rdata
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let qtype = match request.queries.queries() {
            [q] => type_label(q.query_type()),
            _ => "none",
        };
        let info = match self.respond(request, response_handle).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        metrics::counter!("lucid_dns_queries_total", "type" => qtype, "rcode" => rcode_label(info.response_code))
            .increment(1);
        metrics::histogram!("lucid_dns_answer_seconds").record(started.elapsed().as_secs_f64());
        info
    }
}

fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::TXT => "TXT",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::ANY => "ANY",
        RecordType::PTR => "PTR",
        RecordType::CNAME => "CNAME",
        RecordType::MX => "MX",
        _ => "other",
    }
}

fn rcode_label(c: ResponseCode) -> &'static str {
    match c {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "other",
    }
}
