//! Durable storage for Raft: the log and vote ([`LogStore`], append-only segment files under
//! `<data>/raft/`, see [`wal`]), the current snapshot (`<data>/raft/snapshot`) and the
//! replicated application state ([`StateMachine`], a sled database under `<data>/sled/`).
//!
//! The seam other modules see is openraft's storage-v2 traits (`RaftLogStorage`,
//! `RaftStateMachine`) plus the read handle [`StateReader`]; neither files nor sled leak past
//! this module.
//!
//! Why two stores: the log is the write hot path and needs only append, sync, truncate and
//! purge. Kept in sled, every fsync sealed a sled IO buffer and woke sled's thread pool, which
//! cost more than half the leader's CPU (see docs/BENCHMARKS.md). The state machine stays in
//! sled: it needs ordered keys and atomic multi-key batches, and is never synced on the hot path.
//!
//! Crash safety: the durable pair is the log and the snapshot file ([`snapfile`]), both synced
//! before openraft is told. sled is never synced on the hot path; after a crash it may be
//! behind, and [`open`] reloads it from the snapshot if it is older than that, after which
//! openraft re-applies the log. The log is purged only against a snapshot already on disk.

pub mod acl;
pub mod ca;
pub mod catalog;
pub mod config;
pub mod events;
mod flush;
pub mod intentions;
mod kinds;
mod log;
pub mod nodes;
pub mod queries;
pub mod sessions;
pub mod settings;
mod sm;
mod snapfile;
pub mod state;
pub mod txn;
mod wal;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use self::log::LogStore;
pub use self::sm::StateMachine;
pub use self::state::{KvEntry, StateReader};

/// Tunables for a small device.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled page cache bound, bytes.
    pub cache_capacity: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 16 * 1024 * 1024,
        }
    }
}

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("cannot open sled database at {path}: {source}")]
    Sled {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("cannot start the log sync thread: {0}")]
    Flusher(#[source] std::io::Error),
    #[error("cannot open the raft log in {path}: {source}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state in {path} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
}

/// Open (or create) the database under `dir` and return the two Raft halves plus a reader.
pub fn open(
    dir: &Path,
    opts: &StoreOptions,
) -> Result<(LogStore, StateMachine, StateReader), OpenError> {
    private_dir(dir).map_err(|source| OpenError::Log {
        path: dir.display().to_string(),
        source,
    })?;
    let path = dir.join("sled");
    let sled_err = |source| OpenError::Sled {
        path: path.display().to_string(),
        source,
    };
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(opts.cache_capacity)
        .mode(sled::Mode::HighThroughput)
        // No periodic flush: the Raft log is the durable record, and the state is synced when
        // a snapshot is built or installed (see the module docs). Each sled flush rewrites IO
        // buffers, which cost hundreds of MB/s of writes under load.
        .flush_every_ms(None)
        .open()
        .map_err(sled_err)?;
    let state_tree = db.open_tree("state").map_err(sled_err)?;
    let reader = StateReader::new(state_tree).map_err(|e| OpenError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let raft_dir = dir.join("raft");
    let wal = wal::Wal::open(&raft_dir).map_err(|source| OpenError::Log {
        path: raft_dir.display().to_string(),
        source,
    })?;
    // Files created before this version (or by a permissive umask) are narrowed too.
    restrict_tree(dir).map_err(|source| OpenError::Log {
        path: dir.display().to_string(),
        source,
    })?;
    let snap = snapfile::SnapFile::new(&raft_dir);
    let log = LogStore::new(
        wal,
        flush::Flusher::start().map_err(OpenError::Flusher)?,
        snap.clone(),
    );
    // sled is not synced on the hot path, so a crash can leave it older than the snapshot the
    // log was purged against: bring it back up to the snapshot before Raft starts.
    let corrupt = |reason: String| OpenError::Corrupt {
        path: raft_dir.display().to_string(),
        reason,
    };
    if let Some((meta, data)) = snap
        .load()
        .map_err(|e| corrupt(format!("snapshot file: {e}")))?
    {
        if meta
            .last_log_id
            .is_some_and(|l| l.index > reader.applied_index())
        {
            tracing::warn!(snapshot = ?meta.last_log_id, applied = reader.applied_index(), "state is older than the snapshot; reloading it");
            sm::load_into_state(&reader, &meta, &data)
                .map_err(|e| corrupt(format!("loading snapshot: {e}")))?;
        }
    }
    let sm = StateMachine::new(reader.clone(), snap);
    Ok((log, sm, reader))
}

/// Create `dir` (and parents) and make it 0700 whatever the umask: the state holds ACL token
/// hashes and the CA root, and its files must not be readable by other users.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Directories 0700, files 0600, below `dir`.
fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            set_mode(&entry.path(), 0o700)?;
            restrict_tree(&entry.path())?;
        } else if ty.is_file() {
            set_mode(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}
