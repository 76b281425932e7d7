//! The replicated application state in the sled `state` tree, and its encoding.
//!
//! Keys are prefixed by kind: `k:<key>` a KV entry, `t:<key>` a KV tombstone (the index it was
//! deleted at, so a prefix's index never goes backwards), `m:<name>` markers (`applied`,
//! `membership`, `kv_index`). The state machine changes
//! the tree only through [`StateBatch`], one atomic sled batch per `apply` call; readers take
//! the read side of `gate` for multi-key reads so they never see half of a batch.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

pub(crate) const KV_PREFIX: &[u8] = b"k:";
pub(crate) const TOMB_PREFIX: &[u8] = b"t:";
pub(crate) const APPLIED: &[u8] = b"m:applied";
pub(crate) const MEMBERSHIP: &[u8] = b"m:membership";
pub(crate) const KV_INDEX: &[u8] = b"m:kv_index";

const BLOB_MAGIC: &[u8] = b"LUCIDSN1";
const ENTRY_HEADER: usize = 32;

/// Raw key/value records of the state tree.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a state read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

/// One KV entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
    pub flags: u64,
    pub value: Vec<u8>,
    /// The session holding the key's lock: not part of the encoded record (it lives in the
    /// `L:<key>` record, `sessions.rs`), filled in by reads.
    pub session: Option<String>,
}

impl KvEntry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER + self.value.len());
        out.extend_from_slice(&self.create_index.to_be_bytes());
        out.extend_from_slice(&self.modify_index.to_be_bytes());
        out.extend_from_slice(&self.lock_index.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<KvEntry, StateError> {
        if raw.len() < ENTRY_HEADER {
            return Err(StateError::Corrupt(format!(
                "kv entry of {} bytes is shorter than its header",
                raw.len()
            )));
        }
        Ok(KvEntry {
            create_index: be_u64(&raw[0..8])?,
            modify_index: be_u64(&raw[8..16])?,
            lock_index: be_u64(&raw[16..24])?,
            flags: be_u64(&raw[24..32])?,
            value: raw[ENTRY_HEADER..].to_vec(),
            session: None,
        })
    }
}

pub(crate) fn be_u64(raw: &[u8]) -> Result<u64, StateError> {
    let arr: [u8; 8] = raw
        .try_into()
        .map_err(|_| StateError::Corrupt(format!("expected 8 bytes, got {}", raw.len())))?;
    Ok(u64::from_be_bytes(arr))
}

fn prefixed(prefix: &[u8], key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn kv_key(key: &str) -> Vec<u8> {
    prefixed(KV_PREFIX, key)
}

pub(crate) fn tomb_key(key: &str) -> Vec<u8> {
    prefixed(TOMB_PREFIX, key)
}

fn strip_key(raw: &[u8], prefix: &[u8]) -> Result<String, StateError> {
    String::from_utf8(raw[prefix.len()..].to_vec())
        .map_err(|_| StateError::Corrupt("non-UTF-8 key".into()))
}

/// Is this a key that belongs in a snapshot or backup blob?
fn is_data_key(k: &[u8]) -> bool {
    super::kinds::kind_of(k).is_some()
}

/// Read access to the state, shared by the HTTP API; cheap to clone.
#[derive(Clone)]
pub struct StateReader {
    tree: sled::Tree,
    gate: Arc<RwLock<()>>,
    applied: Arc<watch::Sender<u64>>,
    /// One channel per service someone is blocking on: a change to service A wakes only A's
    /// watchers. Entries without receivers are dropped when next notified.
    services: Arc<std::sync::Mutex<std::collections::HashMap<String, watch::Sender<u64>>>>,
    /// The same per KV prefix (a key read is watched as the prefix it is): a write wakes the
    /// watchers of the prefixes of its key only.
    kv: Arc<std::sync::Mutex<BTreeMap<Vec<u8>, watch::Sender<u64>>>>,
    /// Services changed since the feed's consumer (the DNS zone) last looked.
    changes: Arc<ChangeFeed>,
}

/// What changed in the catalog since the last [`StateReader::next_catalog_change`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatalogChange {
    /// Everything may have changed (start, restore, snapshot install).
    pub all: bool,
    /// (service, instance id): the instance changed, was removed from that service, or moved
    /// out of it.
    pub instances: std::collections::BTreeSet<(String, String)>,
    /// The prepared queries changed.
    pub queries: bool,
}

#[derive(Default)]
struct ChangeFeed {
    pending: std::sync::Mutex<CatalogChange>,
    wake: tokio::sync::Notify,
}

impl StateReader {
    pub(crate) fn new(tree: sled::Tree) -> Result<Self, StateError> {
        let applied = match tree.get(APPLIED)? {
            Some(raw) => serde_json::from_slice::<Option<crate::types::LogId>>(&raw)
                .map_err(|e| StateError::Corrupt(e.to_string()))?
                .map(|l| l.index)
                .unwrap_or(0),
            None => 0,
        };
        let (tx, _) = watch::channel(applied);
        Ok(StateReader {
            tree,
            gate: Arc::new(RwLock::new(())),
            applied: Arc::new(tx),
            services: Arc::default(),
            kv: Arc::default(),
            changes: Arc::new(ChangeFeed {
                pending: std::sync::Mutex::new(CatalogChange {
                    all: true,
                    ..CatalogChange::default()
                }),
                wake: tokio::sync::Notify::new(),
            }),
        })
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The last log index applied to this replica.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Wakes whenever the applied index moves (blocking queries wait on this).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Wakes when `service` changes (blocking health/catalog queries on one service).
    pub fn subscribe_service(&self, service: &str) -> watch::Receiver<u64> {
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(service.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes when a key under `prefix` (or `prefix` itself) is written or deleted.
    pub fn subscribe_kv(&self, prefix: &str) -> watch::Receiver<u64> {
        let mut map = self.kv.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(prefix.as_bytes().to_vec())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wake the watchers of every prefix of these keys (after their batch is committed);
    /// `all` (a restore) wakes every KV watcher.
    pub(crate) fn publish_kv(
        &self,
        keys: &std::collections::BTreeSet<Vec<u8>>,
        all: bool,
        index: u64,
    ) {
        if keys.is_empty() && !all {
            return;
        }
        let mut map = self.kv.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, tx| tx.receiver_count() > 0);
        let hit = |prefix: &Vec<u8>| {
            all || keys
                .range(prefix.clone()..)
                .next()
                .is_some_and(|k| k.starts_with(prefix))
        };
        for (prefix, tx) in map.iter() {
            if hit(prefix) {
                tx.send_replace(index);
            }
        }
    }

    /// Wake the watchers of these services (after their batch is committed).
    pub(crate) fn publish_services<'s>(
        &self,
        names: impl IntoIterator<Item = &'s String>,
        index: u64,
    ) {
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        for name in names {
            if let Some(tx) = map.get(name) {
                if tx.receiver_count() == 0 {
                    map.remove(name);
                } else {
                    tx.send_replace(index);
                }
            }
        }
    }

    /// Hand changed instances to the change feed (after their batch is committed).
    pub(crate) fn publish_instances(&self, changed: std::collections::BTreeSet<(String, String)>) {
        if changed.is_empty() {
            return;
        }
        let mut pending = self
            .changes
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !pending.all {
            if pending.instances.is_empty() {
                pending.instances = changed;
            } else {
                pending.instances.extend(changed);
            }
        }
        drop(pending);
        self.changes.wake.notify_one();
    }

    /// Wake every service watcher (a restore or snapshot install replaced everything).
    pub(crate) fn publish_all_services(&self, index: u64) {
        let mut map = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_replace(index);
        }
        drop(map);
        self.mark_catalog_changed();
    }

    /// Report the whole catalog as changed to the change feed's consumer.
    pub(crate) fn mark_catalog_changed(&self) {
        let mut pending = self
            .changes
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.all = true;
        pending.instances.clear();
        drop(pending);
        self.changes.wake.notify_one();
    }

    /// Report the prepared queries as changed to the change feed's consumer.
    pub(crate) fn publish_queries(&self) {
        let mut pending = self
            .changes
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.queries = true;
        drop(pending);
        self.changes.wake.notify_one();
    }

    /// Wait for the next catalog change and take everything changed since the last call
    /// (changes that arrive meanwhile coalesce). The first call reports `all`. Meant for one
    /// consumer: the DNS zone builder.
    pub async fn next_catalog_change(&self) -> CatalogChange {
        loop {
            {
                let mut pending = self
                    .changes
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if pending.all || pending.queries || !pending.instances.is_empty() {
                    return std::mem::take(&mut *pending);
                }
            }
            self.changes.wake.notified().await;
        }
    }

    pub(crate) fn publish_applied(&self, index: u64) {
        self.applied.send_if_modified(|cur| {
            if index > *cur {
                *cur = index;
                true
            } else {
                false
            }
        });
    }

    /// Run `f` while no batch is being applied.
    pub(crate) fn read_consistent<T>(
        &self,
        f: impl FnOnce() -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        self.read(f)
    }

    fn read<T>(&self, f: impl FnOnce() -> Result<T, StateError>) -> Result<T, StateError> {
        let _g = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        f()
    }

    pub(crate) fn write_gate(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn kv_table_index(&self) -> Result<u64, StateError> {
        match self.tree.get(KV_INDEX)? {
            Some(raw) => be_u64(&raw),
            None => Ok(0),
        }
    }

    /// One key, plus the index to report: the entry's ModifyIndex, else the KV table index.
    pub fn kv_get(&self, key: &str) -> Result<(u64, Option<KvEntry>), StateError> {
        self.read(|| match self.tree.get(kv_key(key))? {
            Some(raw) => {
                let mut e = KvEntry::decode(&raw)?;
                e.session = self
                    .tree
                    .get(super::sessions::lock_key(key))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                Ok((e.modify_index, Some(e)))
            }
            None => Ok((self.kv_table_index()?, None)),
        })
    }

    /// Every entry under `prefix`, and the prefix's index (max ModifyIndex and tombstone index;
    /// the table index when both are empty).
    pub fn kv_list(&self, prefix: &str) -> Result<(u64, Vec<(String, KvEntry)>), StateError> {
        self.read(|| {
            let mut out = Vec::new();
            let mut index = 0;
            let mut locks = BTreeMap::new();
            for item in self.tree.scan_prefix(super::sessions::lock_key(prefix)) {
                let (k, v) = item?;
                let key = strip_key(&k, super::sessions::LOCK_PREFIX)?;
                locks.insert(key, String::from_utf8_lossy(&v).into_owned());
            }
            for item in self.tree.scan_prefix(kv_key(prefix)) {
                let (k, v) = item?;
                let mut e = KvEntry::decode(&v)?;
                index = index.max(e.modify_index);
                let key = strip_key(&k, KV_PREFIX)?;
                e.session = locks.remove(&key);
                out.push((key, e));
            }
            index = index.max(self.tomb_index(prefix)?);
            if index == 0 {
                index = self.kv_table_index()?;
            }
            Ok((index, out))
        })
    }

    fn tomb_index(&self, prefix: &str) -> Result<u64, StateError> {
        let mut index = 0;
        for item in self.tree.scan_prefix(tomb_key(prefix)) {
            let (_, v) = item?;
            index = index.max(be_u64(&v)?);
        }
        Ok(index)
    }

    /// Keys under `prefix`; with a separator, keys past it are folded into their common
    /// prefix (Consul's `?keys&separator=/`).
    pub fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
    ) -> Result<(u64, Vec<String>), StateError> {
        let (index, entries) = self.kv_list(prefix)?;
        let mut keys: Vec<String> = Vec::with_capacity(entries.len());
        for (k, _) in entries {
            let folded = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match k[prefix.len()..].find(sep) {
                    Some(pos) => k[..prefix.len() + pos + sep.len()].to_owned(),
                    None => k,
                },
                None => k,
            };
            if keys.last() != Some(&folded) {
                keys.push(folded);
            }
        }
        Ok((index, keys))
    }

    /// The whole application state as a blob, read at one point in time.
    pub fn export(&self) -> Result<Vec<u8>, StateError> {
        self.read(|| export_tree(&self.tree))
    }
}

/// Serialise every data key of `tree`. Callers make sure nothing applies meanwhile.
pub(crate) fn export_tree(tree: &sled::Tree) -> Result<Vec<u8>, StateError> {
    let mut out = BLOB_MAGIC.to_vec();
    for item in tree.iter() {
        let (k, v) = item?;
        if !is_data_key(&k) {
            continue;
        }
        push_framed(&mut out, &k)?;
        push_framed(&mut out, &v)?;
    }
    Ok(out)
}

fn push_framed(out: &mut Vec<u8>, data: &[u8]) -> Result<(), StateError> {
    let len = u32::try_from(data.len())
        .map_err(|_| StateError::Corrupt("record larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Parse and validate a blob made by [`export_tree`]: every record must be a data key with a
/// well-formed value, so a bad backup is rejected before anything changes.
pub fn decode_blob(blob: &[u8]) -> Result<Records, StateError> {
    let bad = |why: &str| StateError::Corrupt(format!("snapshot blob: {why}"));
    let mut rest = blob
        .strip_prefix(BLOB_MAGIC)
        .ok_or_else(|| bad("bad magic"))?;
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, StateError> {
        if rest.len() < 4 {
            return Err(bad("truncated length"));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            return Err(bad("truncated record"));
        }
        let data = rest[4..4 + len].to_vec();
        *rest = &rest[4 + len..];
        Ok(data)
    };
    let mut pairs = Vec::new();
    while !rest.is_empty() {
        let k = take(&mut rest)?;
        let v = take(&mut rest)?;
        let kind = super::kinds::kind_of(&k).ok_or_else(|| bad("unknown record kind"))?;
        (kind.check)(&k, &v)
            .map_err(|e| StateError::Corrupt(format!("{} record: {e}", kind.name)))?;
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// A [`StateBatch`]'s pending changes at one moment.
pub(crate) struct Checkpoint {
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    touched: std::collections::BTreeSet<String>,
    touched_instances: std::collections::BTreeSet<(String, String)>,
    touched_kv: std::collections::BTreeSet<Vec<u8>>,
    touched_queries: bool,
}

/// Pending changes to the state tree with read-your-writes, committed as one atomic batch.
pub(crate) struct StateBatch<'a> {
    tree: &'a sled::Tree,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Services whose index this batch moves, for waking only their watchers.
    pub(crate) touched: std::collections::BTreeSet<String>,
    /// (service, instance id) pairs this batch changed, for the DNS zone.
    pub(crate) touched_instances: std::collections::BTreeSet<(String, String)>,
    /// KV keys this batch wrote or deleted, for waking only the watchers of their prefixes.
    pub(crate) touched_kv: std::collections::BTreeSet<Vec<u8>>,
    /// A prepared query was written or deleted (DNS answers `.query.` names from them).
    pub(crate) touched_queries: bool,
}

impl<'a> StateBatch<'a> {
    pub(crate) fn new(tree: &'a sled::Tree) -> Self {
        StateBatch {
            tree,
            overlay: BTreeMap::new(),
            touched: std::collections::BTreeSet::new(),
            touched_instances: std::collections::BTreeSet::new(),
            touched_kv: std::collections::BTreeSet::new(),
            touched_queries: false,
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.overlay.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    pub(crate) fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.note_kv(&key);
        self.overlay.insert(key, Some(value));
    }

    pub(crate) fn remove(&mut self, key: Vec<u8>) {
        self.note_kv(&key);
        self.overlay.insert(key, None);
    }

    fn note_kv(&mut self, key: &[u8]) {
        if let Some(k) = key
            .strip_prefix(KV_PREFIX)
            .or_else(|| key.strip_prefix(super::sessions::LOCK_PREFIX))
        {
            self.touched_kv.insert(k.to_vec());
        }
    }

    /// Keys under `prefix` as they will be after this batch.
    pub(crate) fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StateError> {
        let mut keys = std::collections::BTreeSet::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, _) = item?;
            keys.insert(k.to_vec());
        }
        for (k, v) in self.overlay.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(_) => keys.insert(k.clone()),
                None => keys.remove(k),
            };
        }
        Ok(keys.into_iter().collect())
    }

    /// The pending changes as they are now, to go back to with [`StateBatch::rollback`] (a
    /// transaction whose later operation fails leaves nothing of the earlier ones).
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            overlay: self.overlay.clone(),
            touched: self.touched.clone(),
            touched_instances: self.touched_instances.clone(),
            touched_kv: self.touched_kv.clone(),
            touched_queries: self.touched_queries,
        }
    }

    pub(crate) fn rollback(&mut self, cp: Checkpoint) {
        self.overlay = cp.overlay;
        self.touched = cp.touched;
        self.touched_instances = cp.touched_instances;
        self.touched_kv = cp.touched_kv;
        self.touched_queries = cp.touched_queries;
    }

    /// Remove every data key (before a restore or a snapshot install).
    pub(crate) fn clear_data(&mut self) -> Result<(), StateError> {
        // Every record of every kind, whatever its prefix: a kind the table knows is cleared.
        for item in self.tree.iter() {
            let (k, _) = item?;
            if is_data_key(&k) {
                self.remove(k.to_vec());
            }
        }
        let pending: Vec<Vec<u8>> = self
            .overlay
            .iter()
            .filter(|(k, v)| v.is_some() && is_data_key(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in pending {
            self.remove(k);
        }
        Ok(())
    }

    /// Apply atomically, with readers held off for the moment it takes.
    pub(crate) fn commit(self, reader: &StateReader) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for (k, v) in self.overlay {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        let _g = reader.write_gate();
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}
