//! The one table of record kinds in the state tree. Export, blob validation, restore,
//! snapshot build and snapshot install all walk [`KINDS`]; a kind missing here is neither
//! exported, nor restored, nor cleared — so a new kind is added here, once, or nowhere.
//!
//! Keys not owned by any kind (`m:applied`, `m:membership`) are Raft's markers: never
//! exported, cleared or restored.

use super::state::{be_u64, KvEntry, StateError, KV_INDEX, KV_PREFIX, TOMB_PREFIX};
use super::{acl, ca, catalog, config, events, intentions, queries, sessions, settings};

/// A record rewritten for a restore at an index; `None` drops it.
type Restamp = fn(&[u8], Vec<u8>, u64) -> Result<Option<Vec<u8>>, StateError>;

/// One kind of record.
pub(crate) struct Kind {
    pub(crate) name: &'static str,
    /// Does this key belong to the kind?
    pub(crate) owns: fn(&[u8]) -> bool,
    /// Validate one record from a snapshot or backup, before anything changes.
    pub(crate) check: fn(&[u8], &[u8]) -> Result<(), StateError>,
    /// The record as restored by a `Restore` at `index` (its indexes belong to another log):
    /// `None` drops it.
    pub(crate) restamp: Restamp,
    /// Index keys a restore sets to its own index, so blocking queries on the kind wake.
    pub(crate) indexes: &'static [&'static [u8]],
}

fn keep(_: &[u8], v: Vec<u8>, _: u64) -> Result<Option<Vec<u8>>, StateError> {
    Ok(Some(v))
}

/// KV entries, their tombstones, the locks sessions hold on them, and the KV index.
fn is_kv_key(k: &[u8]) -> bool {
    k.starts_with(KV_PREFIX)
        || k.starts_with(TOMB_PREFIX)
        || k.starts_with(sessions::LOCK_PREFIX)
        || k == KV_INDEX
}

fn check_kv(k: &[u8], v: &[u8]) -> Result<(), StateError> {
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map(|_| ())
            .map_err(|_| StateError::Corrupt("non-UTF-8 key".into()))
    };
    if k.starts_with(KV_PREFIX) {
        utf8(&k[KV_PREFIX.len()..])?;
        KvEntry::decode(v).map(|_| ())
    } else if k.starts_with(sessions::LOCK_PREFIX) {
        utf8(&k[sessions::LOCK_PREFIX.len()..])?;
        utf8(v)
    } else {
        be_u64(v).map(|_| ())
    }
}

fn restamp_kv(k: &[u8], v: Vec<u8>, index: u64) -> Result<Option<Vec<u8>>, StateError> {
    if k.starts_with(sessions::LOCK_PREFIX) {
        // The sessions come back too.
        return Ok(Some(v));
    }
    if k.starts_with(KV_PREFIX) {
        let mut e = KvEntry::decode(&v)?;
        e.create_index = index;
        e.modify_index = index;
        return Ok(Some(e.encode()));
    }
    // Tombstones and the index describe the other log's history.
    Ok(None)
}

fn restamp_catalog(k: &[u8], v: Vec<u8>, index: u64) -> Result<Option<Vec<u8>>, StateError> {
    if k.starts_with(catalog::SERVICE_INDEX_PREFIX) {
        return Ok(Some(index.to_be_bytes().to_vec()));
    }
    Ok(Some(v))
}

/// Every kind of record.
pub(crate) const KINDS: &[Kind] = &[
    Kind {
        name: "kv",
        owns: is_kv_key,
        check: check_kv,
        restamp: restamp_kv,
        indexes: &[KV_INDEX],
    },
    Kind {
        name: "catalog",
        owns: catalog::is_catalog_key,
        check: catalog::check_record,
        restamp: restamp_catalog,
        indexes: &[catalog::CATALOG_INDEX, catalog::CHECK_REFRESH_INDEX],
    },
    Kind {
        name: "ca",
        owns: ca::is_ca_key,
        check: ca::check_record,
        restamp: ca::restamp,
        indexes: &[ca::REVOKED_INDEX],
    },
    Kind {
        name: "config entries",
        owns: config::is_config_key,
        check: config::check_record,
        restamp: keep,
        indexes: &[config::CONFIG_INDEX],
    },
    Kind {
        name: "intentions",
        owns: intentions::is_intention_key,
        check: intentions::check_record,
        restamp: keep,
        indexes: &[intentions::INDEX],
    },
    Kind {
        name: "acl",
        owns: acl::is_acl_key,
        check: acl::check_record,
        restamp: keep,
        indexes: &[],
    },
    Kind {
        name: "sessions",
        owns: sessions::is_session_key,
        check: sessions::check_record,
        restamp: sessions::restamp,
        indexes: &[sessions::SESSION_INDEX],
    },
    Kind {
        name: "settings",
        owns: settings::is_settings_key,
        check: settings::check_record,
        restamp: keep,
        indexes: &[],
    },
    Kind {
        name: "events",
        owns: events::is_event_key,
        check: events::check_record,
        // The event index is a sequence, not a log index: kept as it is.
        restamp: keep,
        indexes: &[],
    },
    Kind {
        name: "prepared queries",
        owns: queries::is_query_key,
        check: queries::check_record,
        restamp: queries::restamp,
        indexes: &[queries::QUERY_INDEX],
    },
];

/// The kind that owns `k`, if any.
pub(crate) fn kind_of(k: &[u8]) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| (kind.owns)(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_do_not_overlap_and_markers_are_no_kind() {
        let samples: &[&[u8]] = &[
            b"k:a",
            b"t:a",
            KV_INDEX,
            b"i:x",
            b"c:x",
            b"N:x",
            b"v:web",
            catalog::CATALOG_INDEX,
            catalog::CHECK_REFRESH_INDEX,
            ca::ROOT,
            b"a:c:00",
            b"a:r:00",
            ca::REVOKED_INDEX,
            b"e:x",
            config::CONFIG_INDEX,
            b"q:x",
            intentions::PLANES,
            intentions::INDEX,
            b"g:t:x",
            b"g:h:x",
            acl::BOOTSTRAPPED,
            b"s:x",
            b"L:x",
            b"D:x",
            sessions::SESSION_INDEX,
            b"z:x",
            b"o:x",
            b"u:x",
            events::EVENT_INDEX,
            b"y:x",
            queries::QUERY_INDEX,
        ];
        for s in samples {
            let owners = KINDS.iter().filter(|k| (k.owns)(s)).count();
            assert_eq!(owners, 1, "{:?}", String::from_utf8_lossy(s));
        }
        for m in [
            super::super::state::APPLIED,
            super::super::state::MEMBERSHIP,
        ] {
            assert!(kind_of(m).is_none());
        }
        for kind in KINDS {
            for i in kind.indexes {
                assert!((kind.owns)(i), "{}: its index key is its own", kind.name);
            }
        }
    }
}
