//! Keeps the DNS zone equal to the local replica's catalog (external nodes' instances as
//! `<id>.<node>.node`) and prepared queries: waits for
//! the state machine to report changed instances (or queries), re-reads only those, and swaps
//! the new zone in. No timer: a change is in DNS as soon as it is applied on this node.

use std::collections::BTreeMap;
use std::time::Duration;

use lucid_core::catalog::{Check, CheckStatus};
use lucid_core::query::QueryTable;
use lucid_dns::{InstanceChange, ServiceInput, Zone, ZoneHandle};
use tokio_util::sync::CancellationToken;

use crate::store::nodes::parse_feed_id;
use crate::store::state::StateError;
use crate::store::StateReader;

/// How long to wait before retrying after a storage read failed.
const RETRY: Duration = Duration::from_millis(500);

/// The worst check status of an instance (no checks: passing).
fn rollup(checks: &[Check]) -> CheckStatus {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Passing)
}

fn whole_catalog(state: &StateReader, zone: &Zone) -> Result<Zone, StateError> {
    let (index, instances, checks) = state.catalog()?;
    let mut by_owner: BTreeMap<&str, Vec<&Check>> = BTreeMap::new();
    for c in &checks {
        by_owner.entry(c.service_id.as_str()).or_default().push(c);
    }
    let mut services: BTreeMap<String, ServiceInput> = BTreeMap::new();
    for inst in instances {
        let status = by_owner
            .get(inst.id.as_str())
            .and_then(|cs| cs.iter().map(|c| c.status).max())
            .unwrap_or(CheckStatus::Passing);
        services
            .entry(inst.name.clone())
            .or_default()
            .push((inst, status));
    }
    for n in state.external_catalog()? {
        for (inst, checks) in n.entries() {
            services
                .entry(inst.name.clone())
                .or_default()
                .push((n.node.zone_instance(&inst), rollup(&checks)));
        }
    }
    Ok(zone.rebuilt(index, services))
}

fn with_queries(state: &StateReader, zone: &Zone) -> Result<Zone, StateError> {
    let queries = state.queries()?.1.into_iter().map(|s| s.query).collect();
    Ok(zone.with_queries(QueryTable::new(queries)))
}

fn some_instances(
    state: &StateReader,
    zone: &Zone,
    changed: impl IntoIterator<Item = (String, String)>,
) -> Result<Zone, StateError> {
    let mut changes = Vec::new();
    for (service, id) in changed {
        if let Some((node, id)) = parse_feed_id(&id) {
            // An external node's instance: named in the zone as `<id>.<node>.node`.
            let zone_id = lucid_core::catalog::ExternalNode::zone_id(node, id);
            let now = match (
                state.external_node_fields(node)?,
                state.external_instance(node, id)?,
            ) {
                (Some(n), Some((inst, checks))) => Some((n.zone_instance(&inst), rollup(&checks))),
                _ => None,
            };
            changes.push(InstanceChange {
                service,
                id: zone_id,
                now,
            });
            continue;
        }
        let now = state
            .instance_entry(&id)?
            .map(|(inst, checks)| (inst, rollup(&checks)));
        changes.push(InstanceChange { service, id, now });
    }
    Ok(zone.with_changes(state.catalog_index()?, changes))
}

/// The zone for the catalog as it is now (so DNS never starts out empty).
pub(crate) fn initial(state: &StateReader, cfg: lucid_dns::ZoneConfig) -> ZoneHandle {
    let empty = Zone::new(cfg);
    match whole_catalog(state, &empty).and_then(|z| with_queries(state, &z)) {
        Ok(zone) => ZoneHandle::new(zone),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the catalog for DNS; starting empty");
            ZoneHandle::new(empty)
        }
    }
}

/// Follow the catalog into `handle` until `stop` turns true.
pub(crate) async fn follow(state: StateReader, handle: ZoneHandle, stop: CancellationToken) {
    loop {
        let change = tokio::select! {
            c = state.next_catalog_change() => c,
            _ = stop.cancelled() => return,
        };
        let current = handle.load();
        let next = if change.all {
            whole_catalog(&state, &current).and_then(|z| with_queries(&state, &z))
        } else {
            some_instances(&state, &current, change.instances).and_then(|z| {
                if change.queries {
                    with_queries(&state, &z)
                } else {
                    Ok(z)
                }
            })
        };
        match next {
            Ok(zone) => {
                metrics::gauge!("lucid_dns_zone_instances").set(zone.instance_count() as f64);
                metrics::gauge!("lucid_dns_zone_services").set(zone.service_count() as f64);
                handle.store(zone);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the catalog for DNS; retrying");
                // Rebuild everything next time: part of this change may be unread.
                state.mark_catalog_changed();
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}
