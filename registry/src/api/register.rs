//! The one path every registration endpoint (`/v1/agent/service/register`,
//! `/v1/catalog/register`, `POST /services/register`) takes after parsing: authorise the
//! caller on the parsed registration, hold service tokens' checks to their own instance, and
//! write with the owner kept.
//!
//! A check is run by the leader, from the leader's network position: an HTTP check with a
//! method, body and headers aimed at a registry port is a request forgery with the registry's
//! reach. So a service token may only register HTTP and TCP checks that probe its own
//! instance's address and port, with a plain GET, never a loopback, unspecified or link-local
//! address, and never a registry member's address.

use std::net::IpAddr;

use axum::http::{StatusCode, Uri};
use lucid_core::catalog::{CheckKind, Instance, Registration};
use lucid_core::ErrorCode;

use super::authz::{denied, Caller};
use super::error::ApiError;
use super::ApiState;
use crate::types::{Command, CommandResult};

/// Everything a registration must pass before it is written, whichever endpoint or
/// transaction carries it: `service:write` on its name and, for a `connect-proxy`, on the
/// service it fronts (else a token could put its own endpoints into another service's mesh
/// answers); script checks only where enabled; a service token's checks aimed at its own
/// instance; no other service's instance id, no other instance's check id.
pub(super) fn vet(
    api: &ApiState,
    caller: &Caller,
    registration: &Registration,
) -> Result<(), ApiError> {
    may_write(caller, &registration.instance)?;
    scripts_allowed(api, &registration.checks)?;
    if !caller.is_management() {
        checks_own_instance(api, registration)?;
    }
    // Refuse before writing what the state machine would refuse anyway (it re-checks at
    // apply time, so a concurrent registration cannot slip between the two).
    taken(api, registration, !caller.is_management())
}

/// `service:write` on the instance's service and, for a `connect-proxy`, on the service it
/// fronts.
pub(super) fn may_write(caller: &Caller, inst: &Instance) -> Result<(), ApiError> {
    caller.act_for(&inst.name)?;
    if inst.extras.kind == "connect-proxy" {
        let destination = inst
            .extras
            .proxy
            .as_ref()
            .and_then(|p| p.get("DestinationServiceName"))
            .and_then(|d| d.as_str())
            .unwrap_or_default();
        if destination.is_empty() {
            return Err(ApiError::bad_request(
                "a connect-proxy registration needs Proxy.DestinationServiceName",
            ));
        }
        caller.act_for(destination)?;
    }
    Ok(())
}

/// Authorise and write a parsed registration.
pub(super) async fn register(
    api: &ApiState,
    caller: &Caller,
    registration: Registration,
    replace_checks: bool,
) -> Result<CommandResult, ApiError> {
    vet(api, caller, &registration)?;
    let id = registration.instance.id.clone();
    let res = api
        .node
        .write(Command::CatalogRegister {
            registration,
            replace_checks,
            keep_owner: !caller.is_management(),
        })
        .await?;
    if !res.ok {
        return Err(conflict(format!(
                "instance {id:?} or one of its check ids belongs to another service or instance, its DNS name is another instance's (IDs differing only in case, or ending in \".node\", which names external nodes' instances), or its service name is a live service's in another case"
        )));
    }
    Ok(res)
}

/// A registration refused because what it names is another's (409).
pub(super) fn conflict(why: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, ErrorCode::AlreadyRegistered, why)
}

/// Another service's instance id (when `keep_owner`), or another instance's check id.
fn taken(api: &ApiState, reg: &Registration, keep_owner: bool) -> Result<(), ApiError> {
    let id = &reg.instance.id;
    if keep_owner {
        if let Some((old, _)) = api.node.state.instance_entry(id)? {
            if old.name != reg.instance.name {
                // Not naming it: the caller may not be allowed to read that service.
                return Err(conflict(format!(
                    "instance id {id:?} belongs to another service"
                )));
            }
        }
    }
    for c in &reg.checks {
        if let Some(other) = api.node.state.check(&c.id)?.filter(|x| x.service_id != *id) {
            return Err(conflict(format!(
                "check id {:?} belongs to instance {:?}",
                c.id, other.service_id
            )));
        }
    }
    Ok(())
}

fn refuse(why: String) -> ApiError {
    denied(format!("check target refused: {why}"))
}

/// The host and port a check probes.
fn target(kind: &CheckKind) -> Result<Option<(String, u16)>, ApiError> {
    match kind {
        CheckKind::Http {
            url,
            method,
            header,
            body,
            ..
        } => {
            if method != "GET" || !header.is_empty() || !body.is_empty() {
                return Err(refuse(
                    "a service token's HTTP checks are plain GETs, without headers or body".into(),
                ));
            }
            let uri: Uri = url
                .parse()
                .map_err(|_| refuse(format!("{url:?} is not a URL")))?;
            let host = uri
                .host()
                .ok_or_else(|| refuse(format!("{url:?} has no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            Ok(Some((host, port)))
        }
        CheckKind::Tcp { address } => {
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| refuse(format!("{address:?} is not host:port")))?;
            let port = port
                .parse()
                .map_err(|_| refuse(format!("{address:?} is not host:port")))?;
            Ok(Some((
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                port,
            )))
        }
        CheckKind::Ttl | CheckKind::Maintenance | CheckKind::External => Ok(None),
        CheckKind::Script { .. } => Err(refuse(
            "a service token may not register a script check".into(),
        )),
    }
}

/// Script checks only with `--enable-script-checks` (Consul's words when they are off).
pub(super) fn scripts_allowed(
    api: &ApiState,
    checks: &[lucid_core::catalog::Check],
) -> Result<(), ApiError> {
    if !api.script_checks
        && checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Script { .. }))
    {
        return Err(ApiError::bad_request(
            "Scripts are disabled on this agent; to enable, start lucid-registry with --enable-script-checks",
        ));
    }
    Ok(())
}

fn local_scope(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| local_scope(IpAddr::V4(v4)))
        }
    }
}

fn checks_own_instance(api: &ApiState, reg: &Registration) -> Result<(), ApiError> {
    let inst = &reg.instance;
    let members: Vec<String> = super::operator::peers(&api.node)
        .into_iter()
        .flat_map(|p| [p.member.raft_addr, p.member.http_addr])
        .chain([api.node.me.raft_addr.clone(), api.node.me.http_addr.clone()])
        .collect();
    for c in &reg.checks {
        let Some((host, port)) = target(&c.kind)? else {
            continue;
        };
        if host != inst.address || port != inst.port {
            return Err(refuse(format!(
                "check {:?} probes {host}:{port}, not the instance's own {}:{}",
                c.id, inst.address, inst.port
            )));
        }
        // A name resolves on the leader, wherever it points: only addresses can be checked.
        let ip: IpAddr = host.parse().map_err(|_| {
            refuse(format!(
                "check {:?} names host {host:?}; a service token's checks use the instance's IP address",
                c.id
            ))
        })?;
        if local_scope(ip) {
            return Err(refuse(format!(
                "check {:?} probes {ip}, which is the registry's own host, not the instance's",
                c.id
            )));
        }
        let addr = std::net::SocketAddr::new(ip, port).to_string();
        if members.contains(&addr) {
            return Err(refuse(format!(
                "check {:?} probes {addr}, a registry listener",
                c.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_scopes() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "::1",
            "::",
            "169.254.1.1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(local_scope(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.0.2.1", "2001:db8::1"] {
            assert!(!local_scope(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn http_targets_are_plain_gets() {
        let kind = |method: &str, body: &str| CheckKind::Http {
            url: "http://[2001:db8::1]:8080/health".into(),
            method: method.into(),
            header: Default::default(),
            body: body.into(),
            tls_skip_verify: false,
        };
        assert_eq!(
            target(&kind("GET", "")).unwrap(),
            Some(("2001:db8::1".to_owned(), 8080))
        );
        assert!(target(&kind("POST", "")).is_err());
        assert!(target(&kind("GET", "{}")).is_err());
    }
}
