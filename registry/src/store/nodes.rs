//! External nodes in the state tree: nodes written through `/v1/catalog/register` for
//! machines without an agent. Laid out as the registry's own node is, one record per thing, so
//! a write costs what it changes and a service read what the service has:
//!
//! - `N:<node>`: the node's fields ([`ExternalNode`]);
//! - `E:<node>\0<id>`: an instance; `W:<service>\0<node>\0<id>`: the instances of a service;
//! - `F:<node>\0<check id>`: a check; `G:<node>\0<service id>\0<check id>`: the checks of an
//!   instance (an empty service id: the node's own checks).
//!
//! Node names, IDs and service names never hold a NUL. All of it is the catalog kind:
//! exported, restored and indexed with it. The instances are in service reads and the DNS
//! zone; nothing probes the checks.

use std::collections::BTreeSet;

use lucid_core::catalog::{Check, ExternalNode, Instance};

use super::catalog::{decode, encode, join, key, touch_service, under, ServiceEntries};
use super::state::{StateBatch, StateError, StateReader};

pub(crate) const NODE_PREFIX: &[u8] = b"N:";
pub(crate) const INSTANCE_PREFIX: &[u8] = b"E:";
pub(crate) const NAME_INDEX_PREFIX: &[u8] = b"W:";
pub(crate) const CHECK_PREFIX: &[u8] = b"F:";
pub(crate) const OWNER_INDEX_PREFIX: &[u8] = b"G:";

/// The NUL-separated parts of a key after its prefix.
fn parts(k: &[u8]) -> Result<Vec<String>, StateError> {
    k.get(2..)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|p| {
            String::from_utf8(p.to_vec())
                .map_err(|_| StateError::Corrupt("non-UTF-8 external node key".into()))
        })
        .collect()
}

pub(crate) fn is_node_key(k: &[u8]) -> bool {
    [
        NODE_PREFIX,
        INSTANCE_PREFIX,
        NAME_INDEX_PREFIX,
        CHECK_PREFIX,
        OWNER_INDEX_PREFIX,
    ]
    .iter()
    .any(|p| k.starts_with(p))
}

/// Validate one external-node record from a snapshot blob.
pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    let want = |n: usize| -> Result<(), StateError> {
        if parts(k)?.len() == n {
            Ok(())
        } else {
            Err(StateError::Corrupt(
                "external node key of the wrong shape".into(),
            ))
        }
    };
    if k.starts_with(NODE_PREFIX) {
        decode::<ExternalNode>(v).map(|_| ())
    } else if k.starts_with(INSTANCE_PREFIX) {
        want(2)?;
        decode::<Instance>(v).map(|_| ())
    } else if k.starts_with(CHECK_PREFIX) {
        want(2)?;
        decode::<Check>(v).map(|_| ())
    } else {
        want(3)
    }
}

fn read<T: serde::de::DeserializeOwned>(
    batch: &StateBatch<'_>,
    k: &[u8],
) -> Result<Option<T>, StateError> {
    batch.get(k)?.map(|raw| decode(&raw)).transpose()
}

pub(crate) fn external_node(
    batch: &StateBatch<'_>,
    name: &str,
) -> Result<Option<ExternalNode>, StateError> {
    read(batch, &key(NODE_PREFIX, name))
}

fn instance(batch: &StateBatch<'_>, node: &str, id: &str) -> Result<Option<Instance>, StateError> {
    read(batch, &join(INSTANCE_PREFIX, &[node, id]))
}

fn check(batch: &StateBatch<'_>, node: &str, id: &str) -> Result<Option<Check>, StateError> {
    read(batch, &join(CHECK_PREFIX, &[node, id]))
}

/// Every record of `node` under `prefix` (its instances or its checks), pending writes
/// included.
fn all_on<T: serde::de::DeserializeOwned>(
    batch: &StateBatch<'_>,
    prefix: &[u8],
    node: &str,
) -> Result<Vec<T>, StateError> {
    let mut out = Vec::new();
    for k in batch.keys_with_prefix(&under(prefix, &[node]))? {
        if let Some(v) = read(batch, &k)? {
            out.push(v);
        }
    }
    Ok(out)
}

fn instances_on(batch: &StateBatch<'_>, node: &str) -> Result<Vec<Instance>, StateError> {
    all_on(batch, INSTANCE_PREFIX, node)
}

fn put_instance(batch: &mut StateBatch<'_>, inst: &Instance) -> Result<(), StateError> {
    batch.insert(
        join(INSTANCE_PREFIX, &[&inst.node, &inst.id]),
        encode(inst)?,
    );
    batch.insert(
        join(NAME_INDEX_PREFIX, &[&inst.name, &inst.node, &inst.id]),
        Vec::new(),
    );
    Ok(())
}

fn remove_instance(batch: &mut StateBatch<'_>, inst: &Instance) {
    batch.remove(join(INSTANCE_PREFIX, &[&inst.node, &inst.id]));
    batch.remove(join(NAME_INDEX_PREFIX, &[&inst.name, &inst.node, &inst.id]));
}

fn put_check(batch: &mut StateBatch<'_>, node: &str, c: &Check) -> Result<(), StateError> {
    if let Some(old) = check(batch, node, &c.id)? {
        batch.remove(join(OWNER_INDEX_PREFIX, &[node, &old.service_id, &old.id]));
    }
    batch.insert(join(CHECK_PREFIX, &[node, &c.id]), encode(c)?);
    batch.insert(
        join(OWNER_INDEX_PREFIX, &[node, &c.service_id, &c.id]),
        Vec::new(),
    );
    Ok(())
}

fn remove_check(batch: &mut StateBatch<'_>, node: &str, c: &Check) {
    batch.remove(join(CHECK_PREFIX, &[node, &c.id]));
    batch.remove(join(OWNER_INDEX_PREFIX, &[node, &c.service_id, &c.id]));
}

/// (service name, instance id) pairs on one node: what a change changes.
type Touched = BTreeSet<(String, String)>;

/// Every instance on the node: what a change to the node itself (its address, a node-level
/// check, its removal) changes the answers of.
fn everything(batch: &StateBatch<'_>, node: &str) -> Result<Touched, StateError> {
    Ok(instances_on(batch, node)?
        .into_iter()
        .map(|i| (i.name, i.id))
        .collect())
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

/// Is `node` another node's name in another case? Consul's node names are case-insensitive.
fn name_taken(batch: &StateBatch<'_>, node: &str) -> Result<bool, StateError> {
    for k in batch.keys_with_prefix(NODE_PREFIX)? {
        let other = parts(&k)?.concat();
        if other != node && other.eq_ignore_ascii_case(node) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Would instance `id` of `node` share its DNS name (`<id>.<node>.node`, without case) with
/// another external instance? Dots in both make `x.a` on `n` and `x` on `a.n` one name.
pub(crate) fn zone_name_taken(
    batch: &StateBatch<'_>,
    node: &str,
    id: &str,
) -> Result<bool, StateError> {
    let mine = ExternalNode::zone_id(node, id);
    for k in batch.keys_with_prefix(INSTANCE_PREFIX)? {
        if let [n, i] = parts(&k)?.as_slice() {
            if (n.as_str(), i.as_str()) != (node, id)
                && ExternalNode::zone_id(n, i).eq_ignore_ascii_case(&mine)
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Has service `name` an instance on any external node?
pub(super) fn has_instances(batch: &StateBatch<'_>, name: &str) -> Result<bool, StateError> {
    Ok(!batch
        .keys_with_prefix(&under(NAME_INDEX_PREFIX, &[name]))?
        .is_empty())
}

/// Register `node` (new, or updated unless `skip_node_update`), then `service`, then
/// `checks`, as Consul's catalog does. All or nothing: `false`, with nothing written, when a
/// check names a service the node does not have, when a new node has no address or a name
/// that differs from another's only in case, or when the service would share another
/// instance's DNS name or take a live service's name in another case.
pub(crate) fn register(
    batch: &mut StateBatch<'_>,
    node: ExternalNode,
    skip_node_update: bool,
    service: Option<Instance>,
    checks: Vec<Check>,
    index: u64,
) -> Result<bool, StateError> {
    let name = node.name.clone();
    let old = external_node(batch, &name)?;
    if old.is_none() && (node.address.is_empty() || name_taken(batch, &name)?) {
        return Ok(false);
    }
    if let Some(inst) = &service {
        // The scans run only for what is new: an instance, or a service it joins.
        let before = instance(batch, &name, &inst.id)?;
        if before.is_none() && zone_name_taken(batch, &name, &inst.id)? {
            return Ok(false);
        }
        let joins = before.is_none_or(|b| b.name != inst.name);
        if joins && super::catalog::service_name_taken(batch, &inst.name)? {
            return Ok(false);
        }
    }
    for c in checks.iter().filter(|c| !c.service_id.is_empty()) {
        let registering = service.as_ref().is_some_and(|s| s.id == c.service_id);
        if !registering && instance(batch, &name, &c.service_id)?.is_none() {
            return Ok(false);
        }
    }
    // What the node itself shows (address, tagged addresses, meta) is in every health answer
    // of its services: a change there changes them all. Anything else changes only the
    // instances it touches, so the watchers of the node's other services sleep on.
    let mut touched = Touched::new();
    match old {
        Some(_) if skip_node_update => {}
        Some(old) if old == node => {}
        Some(_) => {
            touched.extend(everything(batch, &name)?);
            batch.insert(key(NODE_PREFIX, &name), encode(&node)?);
        }
        None => batch.insert(key(NODE_PREFIX, &name), encode(&node)?),
    }
    if let Some(mut inst) = service {
        inst.node = name.clone();
        if let Some(before) = instance(batch, &name, &inst.id)? {
            remove_instance(batch, &before);
            touched.insert((before.name, before.id));
        }
        put_instance(batch, &inst)?;
        touched.insert((inst.name, inst.id));
    }
    for mut c in checks {
        // The instance the check leaves and the one it joins both change.
        let before = check(batch, &name, &c.id)?.map(|b| b.service_id);
        for owner in before.iter().chain(std::iter::once(&c.service_id)) {
            if owner.is_empty() {
                touched.extend(everything(batch, &name)?);
            } else if let Some(i) = instance(batch, &name, owner)? {
                touched.insert((i.name, i.id));
            }
        }
        c.updated_index = index;
        put_check(batch, &name, &c)?;
    }
    touch_all(batch, &name, touched, index);
    Ok(true)
}

/// What a deregistration removes from an external node.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Service(&'a str),
    Check(&'a str),
    Node,
}

/// Remove a service (with its checks), a check, or the whole node; `false` when the node or
/// the target is unknown, or when `service` is given (a caller allowed by `service:write`
/// alone) and the target does not belong to that service any more.
pub(crate) fn deregister(
    batch: &mut StateBatch<'_>,
    node: &str,
    target: Target<'_>,
    service: Option<&str>,
    index: u64,
) -> Result<bool, StateError> {
    if external_node(batch, node)?.is_none() {
        return Ok(false);
    }
    let belongs = |i: &Instance| service.is_none_or(|s| s == i.name);
    let touched = match target {
        Target::Service(id) => {
            let Some(gone) = instance(batch, node, id)?.filter(belongs) else {
                return Ok(false);
            };
            for k in batch.keys_with_prefix(&under(OWNER_INDEX_PREFIX, &[node, id]))? {
                let Some(c) = parts(&k)?.pop() else { continue };
                if let Some(c) = check(batch, node, &c)? {
                    remove_check(batch, node, &c);
                }
            }
            remove_instance(batch, &gone);
            Touched::from([(gone.name, gone.id)])
        }
        Target::Check(id) => {
            let Some(gone) = check(batch, node, id)? else {
                return Ok(false);
            };
            let owner = instance(batch, node, &gone.service_id)?;
            if service.is_some() && !owner.as_ref().is_some_and(belongs) {
                return Ok(false);
            }
            let touched = match owner {
                Some(i) => Touched::from([(i.name, i.id)]),
                None => everything(batch, node)?,
            };
            remove_check(batch, node, &gone);
            touched
        }
        Target::Node => {
            if service.is_some() {
                return Ok(false);
            }
            let touched = everything(batch, node)?;
            for c in all_on::<Check>(batch, CHECK_PREFIX, node)? {
                remove_check(batch, node, &c);
            }
            for i in instances_on(batch, node)? {
                remove_instance(batch, &i);
            }
            batch.remove(key(NODE_PREFIX, node));
            touched
        }
    };
    touch_all(batch, node, touched, index);
    Ok(true)
}

/// An external node with everything on it, as the catalog-wide reads see it.
#[derive(Debug, Clone)]
pub struct NodeEntries {
    pub node: ExternalNode,
    pub instances: Vec<Instance>,
    /// Service checks and the node's own (empty `service_id`).
    pub checks: Vec<Check>,
}

impl NodeEntries {
    /// The checks that decide instance `id`'s health: its own and the node's.
    pub fn checks_of(&self, id: &str) -> Vec<Check> {
        self.checks
            .iter()
            .filter(|c| c.service_id.is_empty() || c.service_id == id)
            .cloned()
            .collect()
    }

    /// Every instance with the checks that decide its health.
    pub fn entries(&self) -> ServiceEntries {
        self.instances
            .iter()
            .map(|i| (i.clone(), self.checks_of(&i.id)))
            .collect()
    }
}

// === impl StateReader: external nodes ===

impl StateReader {
    fn decode_under<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> Result<Vec<T>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(prefix) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    /// Every external node's own fields, by name.
    pub fn external_nodes(&self) -> Result<Vec<ExternalNode>, StateError> {
        self.decode_under(NODE_PREFIX)
    }

    /// One external node's own fields, if the catalog has it.
    pub fn external_node_fields(&self, name: &str) -> Result<Option<ExternalNode>, StateError> {
        self.tree()
            .get(key(NODE_PREFIX, name))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// One external node with everything on it, if the catalog has it.
    pub fn external_node(&self, name: &str) -> Result<Option<NodeEntries>, StateError> {
        self.read_consistent(|| {
            let Some(raw) = self.tree().get(key(NODE_PREFIX, name))? else {
                return Ok(None);
            };
            Ok(Some(NodeEntries {
                node: decode(&raw)?,
                instances: self.decode_under(&under(INSTANCE_PREFIX, &[name]))?,
                checks: self.decode_under(&under(CHECK_PREFIX, &[name]))?,
            }))
        })
    }

    /// Every external node with everything on it: what catalog-wide reads add.
    pub fn external_catalog(&self) -> Result<Vec<NodeEntries>, StateError> {
        self.read_consistent(|| {
            let mut out = Vec::new();
            for node in self.external_nodes()? {
                out.push(NodeEntries {
                    instances: self.decode_under(&under(INSTANCE_PREFIX, &[&node.name]))?,
                    checks: self.decode_under(&under(CHECK_PREFIX, &[&node.name]))?,
                    node,
                });
            }
            Ok(out)
        })
    }

    /// The checks that decide external instance `id`'s health: its own and its node's.
    fn external_checks_of(&self, node: &str, id: &str) -> Result<Vec<Check>, StateError> {
        let mut out = Vec::new();
        for owner in [id, ""] {
            for item in self
                .tree()
                .scan_prefix(under(OWNER_INDEX_PREFIX, &[node, owner]))
            {
                let (k, _) = item?;
                if let Some(c) = parts(&k)?.get(2) {
                    if let Some(raw) = self.tree().get(join(CHECK_PREFIX, &[node, c]))? {
                        out.push(decode(&raw)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// External instance `id` of `node` with the checks that decide its health.
    pub fn external_instance(
        &self,
        node: &str,
        id: &str,
    ) -> Result<Option<(Instance, Vec<Check>)>, StateError> {
        self.read_consistent(|| {
            let Some(raw) = self.tree().get(join(INSTANCE_PREFIX, &[node, id]))? else {
                return Ok(None);
            };
            Ok(Some((decode(&raw)?, self.external_checks_of(node, id)?)))
        })
    }

    /// External check `id` of `node`, if it exists.
    pub fn external_check(&self, node: &str, id: &str) -> Result<Option<Check>, StateError> {
        self.tree()
            .get(join(CHECK_PREFIX, &[node, id]))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// Service `name`'s external instances with their checks, through the name index (called
    /// inside [`StateReader::service`]'s consistent read).
    pub(crate) fn external_service(&self, name: &str) -> Result<ServiceEntries, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(under(NAME_INDEX_PREFIX, &[name])) {
            let (k, _) = item?;
            if let [_, node, id] = parts(&k)?.as_slice() {
                if let Some(raw) = self.tree().get(join(INSTANCE_PREFIX, &[node, id]))? {
                    out.push((decode(&raw)?, self.external_checks_of(node, id)?));
                }
            }
        }
        Ok(out)
    }
}
