//! External nodes in the state tree: `N:<name>` holds one node registered through
//! `/v1/catalog/register` with its services and checks, so a node and everything on it is
//! written, read and deregistered as one record. They are part of the catalog kind: exported,
//! restored and indexed with it. Their instances are in service reads and in the DNS zone;
//! nothing probes their checks.

use std::collections::BTreeSet;

use lucid_core::catalog::{Check, ExternalNode, Instance};

use super::catalog::{decode, encode, key, touch_service};
use super::state::{StateBatch, StateError, StateReader};

pub(crate) const NODE_PREFIX: &[u8] = b"N:";

pub(crate) fn external_node(
    batch: &StateBatch<'_>,
    name: &str,
) -> Result<Option<ExternalNode>, StateError> {
    batch
        .get(&key(NODE_PREFIX, name))?
        .map(|raw| decode(&raw))
        .transpose()
}

/// (service name, instance id) pairs on one node: what a change changes.
type Touched = BTreeSet<(String, String)>;

/// Every instance on the node: what a change to the node itself (its address, a node-level
/// check, its removal) changes the answers of.
fn everything(n: &ExternalNode) -> Touched {
    n.services
        .values()
        .map(|i| (i.name.clone(), i.id.clone()))
        .collect()
}

/// How a changed instance of external node `node` is named in the change feed: a leading NUL
/// (never in an ID) then `<node>\0<id>`, so the DNS follower knows where to read it.
pub(crate) fn feed_id(node: &str, id: &str) -> String {
    format!("\0{node}\0{id}")
}

/// The (node, id) a [`feed_id`] names, if it names one.
pub(crate) fn parse_feed_id(feed: &str) -> Option<(&str, &str)> {
    feed.strip_prefix('\0')?.split_once('\0')
}

fn touch_all(batch: &mut StateBatch<'_>, node: &str, touched: Touched, index: u64) {
    batch.insert(
        super::catalog::CATALOG_INDEX.to_vec(),
        index.to_be_bytes().to_vec(),
    );
    for (name, id) in touched {
        touch_service(batch, &name, index);
        batch.touched_instances.insert((name, feed_id(node, &id)));
    }
}

/// Register `node` (new, or updated unless `skip_node_update`), then `service`, then
/// `checks`, as Consul's catalog does. All or nothing: `false`, with nothing written, when a
/// check names a service the node does not have.
pub(crate) fn register(
    batch: &mut StateBatch<'_>,
    node: ExternalNode,
    skip_node_update: bool,
    service: Option<Instance>,
    checks: Vec<Check>,
    index: u64,
) -> Result<bool, StateError> {
    let old = external_node(batch, &node.name)?;
    // What the node itself shows (address, tagged addresses, meta) is in every health answer
    // of its services: a change there changes them all. Anything else changes only the
    // services it touches, so the watchers of the node's other services sleep on.
    let mut touched = BTreeSet::new();
    let mut n = match old {
        Some(old) if skip_node_update => old,
        Some(old) => {
            let same = (&old.address, &old.id, &old.tagged_addresses, &old.meta)
                == (&node.address, &node.id, &node.tagged_addresses, &node.meta);
            if !same {
                touched.extend(everything(&old));
            }
            ExternalNode {
                services: old.services,
                checks: old.checks,
                ..node
            }
        }
        None => node,
    };
    if let Some(mut inst) = service {
        inst.node = n.name.clone();
        touched.insert((inst.name.clone(), inst.id.clone()));
        if let Some(before) = n.services.insert(inst.id.clone(), inst) {
            touched.insert((before.name, before.id));
        }
    }
    for mut c in checks {
        match n.services.get(&c.service_id) {
            Some(i) => {
                touched.insert((i.name.clone(), i.id.clone()));
            }
            None if c.service_id.is_empty() => touched.extend(everything(&n)),
            None => return Ok(false),
        }
        c.updated_index = index;
        n.checks.insert(c.id.clone(), c);
    }
    batch.insert(key(NODE_PREFIX, &n.name), encode(&n)?);
    touch_all(batch, &n.name, touched, index);
    Ok(true)
}

/// Remove a service (with its checks), a check, or (both `None`) the whole node; `false`
/// when the node or the target is unknown.
pub(crate) fn deregister(
    batch: &mut StateBatch<'_>,
    name: &str,
    service_id: Option<&str>,
    check_id: Option<&str>,
    index: u64,
) -> Result<bool, StateError> {
    let Some(mut n) = external_node(batch, name)? else {
        return Ok(false);
    };
    let touched = match (service_id, check_id) {
        (Some(id), _) => {
            let Some(gone) = n.services.remove(id) else {
                return Ok(false);
            };
            n.checks.retain(|_, c| c.service_id != id);
            BTreeSet::from([(gone.name, gone.id)])
        }
        (None, Some(id)) => {
            let Some(gone) = n.checks.remove(id) else {
                return Ok(false);
            };
            match n.services.get(&gone.service_id) {
                Some(i) => BTreeSet::from([(i.name.clone(), i.id.clone())]),
                None => everything(&n),
            }
        }
        (None, None) => {
            batch.remove(key(NODE_PREFIX, name));
            touch_all(batch, name, everything(&n), index);
            return Ok(true);
        }
    };
    batch.insert(key(NODE_PREFIX, name), encode(&n)?);
    touch_all(batch, name, touched, index);
    Ok(true)
}

// === impl StateReader: external nodes ===

impl StateReader {
    /// Every external node, by name.
    pub fn external_nodes(&self) -> Result<Vec<ExternalNode>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(NODE_PREFIX) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// One external node, if the catalog has it.
    pub fn external_node(&self, name: &str) -> Result<Option<ExternalNode>, StateError> {
        self.tree()
            .get(key(NODE_PREFIX, name))?
            .map(|raw| decode(&raw))
            .transpose()
    }
}
