//! The answer to one question, computed from a zone without any I/O: records for the answer
//! and additional sections, the SOA for negative answers, and the response code. Kept pure so
//! unit tests and the fuzz target exercise exactly what the server sends.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::names::{classify, Lookup, Origin};
use crate::zone::{Endpoint, Zone};

/// What to send back for a question in one of our zones.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA for the authority section of NXDOMAIN and NODATA answers.
    pub soa: Option<Record>,
    pub additionals: Vec<Record>,
}

/// Answer `qtype` for `name`; `None` when the name is outside every zone we serve. `owner` is
/// the name as asked (case preserved) and owns the answer records; endpoints are shuffled
/// with `rng`.
pub fn resolve(
    zone: &Zone,
    name: &LowerName,
    owner: &Name,
    qtype: RecordType,
    rng: &mut impl Rng,
) -> Option<Answer> {
    let ttl = zone.config().ttl;
    let answer = match classify(name, zone.origin_labels()) {
        Lookup::Outside => return None,
        Lookup::Unknown(origin) => nxdomain(zone, origin),
        Lookup::Apex(origin) => {
            let soa = zone.soa(origin == Origin::Consul).clone();
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                Answer {
                    answers: vec![soa],
                    ..Answer::default()
                }
            } else {
                nodata(zone, origin)
            }
        }
        Lookup::Instance { origin, id } => match zone.instance(&id) {
            None => nxdomain(zone, origin),
            Some(ep) => {
                let mut a = Answer::default();
                match qtype {
                    RecordType::A | RecordType::AAAA | RecordType::ANY => {
                        push_addr(&mut a.answers, owner, ep.ip, qtype, ttl)
                    }
                    RecordType::TXT => a.answers.extend(txt(owner, ep, ttl)),
                    RecordType::SRV => push_srv(&mut a, owner, ep, ttl),
                    _ => {}
                }
                if a.answers.is_empty() {
                    nodata(zone, origin)
                } else {
                    a
                }
            }
        },
        Lookup::Service {
            origin,
            service,
            tag,
        } => {
            let set = std::str::from_utf8(service)
                .ok()
                .and_then(|s| zone.service(s));
            let eps: Vec<&Endpoint> = set
                .map(|s| {
                    s.endpoints
                        .iter()
                        .map(|e| &**e)
                        .filter(|e| tag.is_none_or(|t| e.has_tag(t)))
                        .collect()
                })
                .unwrap_or_default();
            endpoints(zone, origin, owner, qtype, eps, ttl, rng)
        }
        Lookup::Query { origin, name } => match zone.query(&name) {
            // DNS has no mesh endpoints and no peers; the node has no meta to match.
            Some(Ok(q))
                if !q.service.connect
                    && q.service.peer.is_empty()
                    && q.service.node_meta.is_empty() =>
            {
                let s = &q.service;
                let eps: Vec<&Endpoint> = zone
                    .service(&s.service.to_ascii_lowercase())
                    .map(|set| {
                        // Its own OnlyPassing decides, not the server's --dns-only-passing.
                        set.all()
                            .filter(|e| s.status_ok(e.status) && s.admits(&e.tags, &e.service_meta))
                            .collect()
                    })
                    .unwrap_or_default();
                let ttl = q.dns_ttl_secs().unwrap_or(ttl);
                endpoints(zone, origin, owner, qtype, eps, ttl, rng)
            }
            _ => nxdomain(zone, origin),
        },
    };
    Some(answer)
}

/// The records for a set of endpoints, shuffled: NXDOMAIN when there is none (Consul's
/// behaviour: no usable instance is not an empty answer), NODATA when none has the type.
fn endpoints(
    zone: &Zone,
    origin: Origin,
    owner: &Name,
    qtype: RecordType,
    mut eps: Vec<&Endpoint>,
    ttl: u32,
    rng: &mut impl Rng,
) -> Answer {
    if eps.is_empty() {
        return nxdomain(zone, origin);
    }
    eps.shuffle(rng);
    let mut a = Answer::default();
    for ep in eps {
        match qtype {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                push_addr(&mut a.answers, owner, ep.ip, qtype, ttl)
            }
            RecordType::SRV => push_srv(&mut a, owner, ep, ttl),
            _ => {}
        }
    }
    if a.answers.is_empty() {
        nodata(zone, origin)
    } else {
        a
    }
}

fn nxdomain(zone: &Zone, origin: Origin) -> Answer {
    Answer {
        rcode: ResponseCode::NXDomain,
        soa: Some(zone.soa(origin == Origin::Consul).clone()),
        ..Answer::default()
    }
}

fn nodata(zone: &Zone, origin: Origin) -> Answer {
    Answer {
        soa: Some(zone.soa(origin == Origin::Consul).clone()),
        ..Answer::default()
    }
}

fn push_addr(out: &mut Vec<Record>, owner: &Name, ip: Option<IpAddr>, qtype: RecordType, ttl: u32) {
    let rdata = match (ip, qtype) {
        (Some(IpAddr::V4(v4)), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        (Some(IpAddr::V6(v6)), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
        _ => return,
    };
    out.push(Record::from_rdata(owner.clone(), ttl, rdata));
}

/// SRV to the instance's own name (its address in the additional section), or to its host
/// name when it registered one instead of an IP.
fn push_srv(a: &mut Answer, owner: &Name, ep: &Endpoint, ttl: u32) {
    let target = match (&ep.target, &ep.host, ep.ip) {
        (Some(t), _, Some(_)) => t,
        (_, Some(h), _) => h,
        _ => return,
    };
    let srv = SRV::new(1, ep.weight, ep.port, target.clone());
    a.answers
        .push(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
    if ep.host.is_none() {
        push_addr(&mut a.additionals, target, ep.ip, RecordType::ANY, ttl);
    }
}

/// One TXT record per meta entry, each split into the 255-byte strings DNS allows.
fn txt<'a>(owner: &'a Name, ep: &'a Endpoint, ttl: u32) -> impl Iterator<Item = Record> + 'a {
    ep.meta.iter().map(move |kv| {
        let rdata = RData::TXT(TXT::new(chunks(kv, 255)));
        Record::from_rdata(owner.clone(), ttl, rdata)
    })
}

fn chunks(s: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head.to_owned());
        rest = tail;
    }
    out.push(rest.to_owned());
    out
}

#[cfg(test)]
mod tests;
