//! The service catalog in the state tree: the registry's own node's instances (`i:<id>`) and
//! checks (`c:<id>`), external nodes (in [`super::nodes`]), each
//! service's last-change index (`v:<name>`, kept after the last instance goes so a blocking
//! query's index never moves backwards), the catalog index (`m:catalog_index`) and the index
//! of the last TTL refresh that changed nothing (`m:check_refresh_index`).

use lucid_core::catalog::{Check, CheckStatus, Instance, Registration};

use super::state::{be_u64, StateBatch, StateError, StateReader};

/// A service's instances, each with its checks.
pub type ServiceEntries = Vec<(Instance, Vec<Check>)>;

pub(crate) const INSTANCE_PREFIX: &[u8] = b"i:";
pub(crate) const CHECK_PREFIX: &[u8] = b"c:";
pub(crate) const SERVICE_INDEX_PREFIX: &[u8] = b"v:";
pub(crate) const CATALOG_INDEX: &[u8] = b"m:catalog_index";
/// Moved by a check update that repeats the stored status and output (a TTL pass): the health
/// checker's cue to restart that TTL, while no blocking query of the service wakes up.
pub(crate) const CHECK_REFRESH_INDEX: &[u8] = b"m:check_refresh_index";
/// `n:<service name>\0<instance id>`: the instances of a service, without scanning them all.
pub(crate) const NAME_INDEX_PREFIX: &[u8] = b"n:";
/// `x:<instance id>\0<check id>`: the checks of an instance.
pub(crate) const OWNER_INDEX_PREFIX: &[u8] = b"x:";

/// `prefix` then `parts` joined by NUL (which no ID or name holds): an index key.
pub(super) fn join(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for (n, p) in parts.iter().enumerate() {
        if n > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// `prefix` then each of `parts` followed by NUL: every index key under them.
pub(super) fn under(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut k = join(prefix, parts);
    k.push(0);
    k
}

/// The second half of a pair key.
fn pair_tail(k: &[u8]) -> Result<String, StateError> {
    let pos = k
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| StateError::Corrupt("index key without separator".into()))?;
    String::from_utf8(k[pos + 1..].to_vec())
        .map_err(|_| StateError::Corrupt("non-UTF-8 index key".into()))
}

pub(super) fn key(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(raw).map_err(|e| StateError::Corrupt(format!("catalog record: {e}")))
}

pub(super) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

/// Validate a catalog record from a snapshot blob.
pub(crate) fn check_record(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    if k.starts_with(NAME_INDEX_PREFIX) || k.starts_with(OWNER_INDEX_PREFIX) {
        pair_tail(k).map(|_| ())
    } else if k.starts_with(INSTANCE_PREFIX) {
        decode::<Instance>(v).map(|_| ())
    } else if k.starts_with(CHECK_PREFIX) {
        decode::<Check>(v).map(|_| ())
    } else if super::nodes::is_node_key(k) {
        super::nodes::check_record(k, v)
    } else {
        be_u64(v).map(|_| ())
    }
}

pub(crate) fn is_catalog_key(k: &[u8]) -> bool {
    k.starts_with(INSTANCE_PREFIX)
        || k.starts_with(CHECK_PREFIX)
        || k.starts_with(SERVICE_INDEX_PREFIX)
        || k.starts_with(NAME_INDEX_PREFIX)
        || k.starts_with(OWNER_INDEX_PREFIX)
        || super::nodes::is_node_key(k)
        || k == CATALOG_INDEX
        || k == CHECK_REFRESH_INDEX
}

/// Move the catalog index and service `name`'s index, and wake its watchers (for an external
/// node's change, whose caller tells the DNS zone itself).
pub(super) fn touch_service(batch: &mut StateBatch<'_>, name: &str, index: u64) {
    batch.insert(CATALOG_INDEX.to_vec(), index.to_be_bytes().to_vec());
    batch.insert(
        key(SERVICE_INDEX_PREFIX, name),
        index.to_be_bytes().to_vec(),
    );
    batch.touched.insert(name.to_owned());
}

/// Move the catalog index and, for a change to instance `id` of `service`, the service's
/// index; remember both for the watchers and the DNS zone.
fn touch(batch: &mut StateBatch<'_>, service: Option<&str>, id: &str, index: u64) {
    batch.insert(CATALOG_INDEX.to_vec(), index.to_be_bytes().to_vec());
    if let Some(name) = service {
        batch.insert(
            key(SERVICE_INDEX_PREFIX, name),
            index.to_be_bytes().to_vec(),
        );
        batch.touched.insert(name.to_owned());
        batch
            .touched_instances
            .insert((name.to_owned(), id.to_owned()));
    }
}

pub(crate) fn checks_of(
    batch: &StateBatch<'_>,
    service_id: &str,
) -> Result<Vec<Check>, StateError> {
    let mut out = Vec::new();
    for k in batch.keys_with_prefix(&under(OWNER_INDEX_PREFIX, &[service_id]))? {
        if let Some(raw) = batch.get(&key(CHECK_PREFIX, &pair_tail(&k)?))? {
            out.push(decode(&raw)?);
        }
    }
    Ok(out)
}

pub(crate) fn instance(batch: &StateBatch<'_>, id: &str) -> Result<Option<Instance>, StateError> {
    batch
        .get(&key(INSTANCE_PREFIX, id))?
        .map(|raw| decode(&raw))
        .transpose()
}

pub(crate) fn check(batch: &StateBatch<'_>, id: &str) -> Result<Option<Check>, StateError> {
    batch
        .get(&key(CHECK_PREFIX, id))?
        .map(|raw| decode(&raw))
        .transpose()
}

/// Store a check and its owner index (moving it if it belonged to another instance).
fn put_check(batch: &mut StateBatch<'_>, c: &Check) -> Result<(), StateError> {
    if let Some(old) = check(batch, &c.id)? {
        batch.remove(join(OWNER_INDEX_PREFIX, &[&old.service_id, &old.id]));
    }
    batch.insert(key(CHECK_PREFIX, &c.id), encode(c)?);
    batch.insert(
        join(OWNER_INDEX_PREFIX, &[&c.service_id, &c.id]),
        Vec::new(),
    );
    Ok(())
}

fn remove_check(batch: &mut StateBatch<'_>, c: &Check) {
    batch.remove(key(CHECK_PREFIX, &c.id));
    batch.remove(join(OWNER_INDEX_PREFIX, &[&c.service_id, &c.id]));
}

/// Register (or replace) an instance and its checks.
pub(crate) fn register(
    batch: &mut StateBatch<'_>,
    reg: Registration,
    replace_checks: bool,
    keep_owner: bool,
    index: u64,
) -> Result<bool, StateError> {
    let id = reg.instance.id.clone();
    // A check id names one instance's check: a registration must not take over another
    // instance's (that instance would be left with no check, and count as passing).
    for c in &reg.checks {
        if check(batch, &c.id)?.is_some_and(|old| old.service_id != id) {
            return Ok(false);
        }
    }
    let old = instance(batch, &id)?;
    if keep_owner && old.as_ref().is_some_and(|o| o.name != reg.instance.name) {
        return Ok(false);
    }
    if old.is_none() && dns_name_taken(batch, &id)? {
        return Ok(false);
    }
    let joins = old.as_ref().is_none_or(|o| o.name != reg.instance.name);
    if joins && service_name_taken(batch, &reg.instance.name)? {
        return Ok(false);
    }
    if let Some(old) = old {
        if old.name != reg.instance.name {
            // The id moves to another service: the old service changed too.
            batch.remove(join(NAME_INDEX_PREFIX, &[&old.name, &id]));
            touch(batch, Some(&old.name), &id, index);
        }
    }
    if replace_checks {
        for c in checks_of(batch, &id)? {
            remove_check(batch, &c);
        }
    }
    for c in &reg.checks {
        let mut c = c.clone();
        c.updated_index = index;
        put_check(batch, &c)?;
    }
    batch.insert(key(INSTANCE_PREFIX, &id), encode(&reg.instance)?);
    batch.insert(
        join(NAME_INDEX_PREFIX, &[&reg.instance.name, &id]),
        Vec::new(),
    );
    touch(batch, Some(&reg.instance.name), &id, index);
    Ok(true)
}

/// Would a new instance `id` answer DNS under a name that is not its own? DNS names have no
/// case, so an ID another instance has in another case is taken; and `<id>.<node>.node` names
/// external nodes' instances.
fn dns_name_taken(batch: &StateBatch<'_>, id: &str) -> Result<bool, StateError> {
    if lucid_core::catalog::reserved_instance_id(id) {
        return Ok(true);
    }
    for k in batch.keys_with_prefix(INSTANCE_PREFIX)? {
        if k[INSTANCE_PREFIX.len()..].eq_ignore_ascii_case(id.as_bytes()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Is `name` a live service's name in another case? DNS answers a service by its name
/// without case, so an instance joining `WEB` would be in `web`'s answers (and Consul's
/// catalog holds service names without case). Looks at each service name ever used (`v:`),
/// and at those only: an instance joining a service costs the number of services.
pub(super) fn service_name_taken(batch: &StateBatch<'_>, name: &str) -> Result<bool, StateError> {
    for k in batch.keys_with_prefix(SERVICE_INDEX_PREFIX)? {
        let other = &k[SERVICE_INDEX_PREFIX.len()..];
        if other == name.as_bytes() || !other.eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        let other = String::from_utf8_lossy(other);
        let live = !batch
            .keys_with_prefix(&under(NAME_INDEX_PREFIX, &[&other]))?
            .is_empty()
            || super::nodes::has_instances(batch, &other)?;
        if live {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Remove an instance and its checks; `false` when unknown.
pub(crate) fn deregister(
    batch: &mut StateBatch<'_>,
    service_id: &str,
    index: u64,
) -> Result<bool, StateError> {
    let Some(old) = instance(batch, service_id)? else {
        return Ok(false);
    };
    for c in checks_of(batch, service_id)? {
        remove_check(batch, &c);
    }
    batch.remove(key(INSTANCE_PREFIX, service_id));
    batch.remove(join(NAME_INDEX_PREFIX, &[&old.name, service_id]));
    touch(batch, Some(&old.name), service_id, index);
    Ok(true)
}

/// Add or replace one check; `false` when it names an unknown service.
pub(crate) fn register_check(
    batch: &mut StateBatch<'_>,
    mut check: Check,
    index: u64,
) -> Result<bool, StateError> {
    check.updated_index = index;
    let service = if check.service_id.is_empty() {
        None
    } else {
        match instance(batch, &check.service_id)? {
            Some(i) => Some(i.name),
            None => return Ok(false),
        }
    };
    put_check(batch, &check)?;
    touch(batch, service.as_deref(), &check.service_id, index);
    Ok(true)
}

/// Remove one check; `false` when unknown.
pub(crate) fn deregister_check(
    batch: &mut StateBatch<'_>,
    check_id: &str,
    index: u64,
) -> Result<bool, StateError> {
    let Some(c) = check(batch, check_id)? else {
        return Ok(false);
    };
    remove_check(batch, &c);
    let service = instance(batch, &c.service_id)?.map(|i| i.name);
    touch(batch, service.as_deref(), &c.service_id, index);
    Ok(true)
}

/// Set a check's status and output; `false` when unknown.
pub(crate) fn update_check(
    batch: &mut StateBatch<'_>,
    check_id: &str,
    status: CheckStatus,
    output: String,
    index: u64,
) -> Result<bool, StateError> {
    let Some(mut c) = check(batch, check_id)? else {
        return Ok(false);
    };
    let unchanged = c.status == status && c.output == output;
    c.status = status;
    c.output = output;
    c.updated_index = index;
    batch.insert(key(CHECK_PREFIX, &c.id), encode(&c)?);
    if unchanged {
        // Nothing a reader sees changed: waking every watcher of the service (each sidecar
        // calling it) once per TTL pass per instance would be the catalog's busiest traffic.
        batch.insert(CHECK_REFRESH_INDEX.to_vec(), index.to_be_bytes().to_vec());
        return Ok(true);
    }
    let service = instance(batch, &c.service_id)?.map(|i| i.name);
    touch(batch, service.as_deref(), &c.service_id, index);
    Ok(true)
}

// === impl StateReader: catalog reads ===

impl StateReader {
    fn scan<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StateError> {
        let mut out = Vec::new();
        for item in self.tree().scan_prefix(prefix) {
            let (_, v) = item?;
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    fn index_at(&self, k: &[u8]) -> Result<u64, StateError> {
        match self.tree().get(k)? {
            Some(raw) => be_u64(&raw),
            None => Ok(0),
        }
    }

    /// The index of the last catalog change.
    pub fn catalog_index(&self) -> Result<u64, StateError> {
        self.index_at(CATALOG_INDEX)
    }

    /// Every check, and the index of the last change to any (a TTL pass included): what the
    /// health checker reads, without decoding the instances.
    pub fn checks(&self) -> Result<(u64, Vec<Check>), StateError> {
        self.read_consistent(|| Ok((self.checks_index()?, self.scan(CHECK_PREFIX)?)))
    }

    /// Moves with every check update, including the ones that change nothing a reader sees.
    pub fn checks_index(&self) -> Result<u64, StateError> {
        Ok(self
            .index_at(CATALOG_INDEX)?
            .max(self.index_at(CHECK_REFRESH_INDEX)?))
    }

    /// Every instance and every check, and the catalog index.
    pub fn catalog(&self) -> Result<(u64, Vec<Instance>, Vec<Check>), StateError> {
        self.read_consistent(|| {
            Ok((
                self.index_at(CATALOG_INDEX)?,
                self.scan(INSTANCE_PREFIX)?,
                self.scan(CHECK_PREFIX)?,
            ))
        })
    }

    /// One check by id, if it exists (a point read, not a catalog scan).
    pub fn check(&self, id: &str) -> Result<Option<Check>, StateError> {
        self.tree()
            .get(key(CHECK_PREFIX, id))?
            .map(|raw| decode(&raw))
            .transpose()
    }

    /// One instance with its checks, if it exists.
    pub fn instance_entry(&self, id: &str) -> Result<Option<(Instance, Vec<Check>)>, StateError> {
        self.read_consistent(|| {
            let Some(raw) = self.tree().get(key(INSTANCE_PREFIX, id))? else {
                return Ok(None);
            };
            let inst: Instance = decode(&raw)?;
            let mut checks = Vec::new();
            for item in self.tree().scan_prefix(under(OWNER_INDEX_PREFIX, &[id])) {
                let (k, _) = item?;
                if let Some(raw) = self.tree().get(key(CHECK_PREFIX, &pair_tail(&k)?))? {
                    checks.push(decode(&raw)?);
                }
            }
            Ok(Some((inst, checks)))
        })
    }

    /// One service's instances with their checks (external nodes' included), and the
    /// service's index (the catalog index when the service never existed). Reads only that
    /// service's records.
    pub fn service(&self, name: &str) -> Result<(u64, ServiceEntries), StateError> {
        self.read_consistent(|| {
            let mut out = Vec::new();
            for item in self.tree().scan_prefix(under(NAME_INDEX_PREFIX, &[name])) {
                let (k, _) = item?;
                let id = pair_tail(&k)?;
                let Some(raw) = self.tree().get(key(INSTANCE_PREFIX, &id))? else {
                    continue;
                };
                let inst: Instance = decode(&raw)?;
                let mut checks = Vec::new();
                for item in self.tree().scan_prefix(under(OWNER_INDEX_PREFIX, &[&id])) {
                    let (k, _) = item?;
                    if let Some(raw) = self.tree().get(key(CHECK_PREFIX, &pair_tail(&k)?))? {
                        checks.push(decode(&raw)?);
                    }
                }
                out.push((inst, checks));
            }
            out.extend(self.external_service(name)?);
            let mut index = self.index_at(&key(SERVICE_INDEX_PREFIX, name))?;
            if index == 0 {
                index = self.index_at(CATALOG_INDEX)?;
            }
            Ok((index, out))
        })
    }
}
