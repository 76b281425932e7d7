//! Durable storage for Raft: the log and vote ([`LogStore`]) and the replicated application
//! state ([`StateMachine`]), both in one sled database.
//!
//! The seam other modules see is openraft's storage-v2 traits (`RaftLogStorage`,
//! `RaftStateMachine`) plus the read handle [`StateReader`]; sled never leaks past this module.
//!
//! One sled `Db` holds three trees. sled recovers a prefix of its single write log after a
//! crash, so anything written before a flush (state-machine batches included) is durable once a
//! later vote or append has been flushed.
//! - `raft_log`: index (u64 big-endian) -> JSON entry.
//! - `raft_meta`: `vote`, `purged` -> JSON.
//! - `state`: the application state plus its `applied`/`membership` markers, changed only by
//!   atomic batches so a crash never leaves half an entry applied (see [`state`]).

mod flush;
mod log;
mod sm;
pub mod state;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

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
    #[error("cannot start the log flusher thread: {0}")]
    Flusher(#[source] std::io::Error),
    #[error("state in {path} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
}

/// Open (or create) the database under `dir` and return the two Raft halves plus a reader.
pub fn open(
    dir: &Path,
    opts: &StoreOptions,
) -> Result<(LogStore, StateMachine, StateReader), OpenError> {
    let path = dir.join("sled");
    let sled_err = |source| OpenError::Sled {
        path: path.display().to_string(),
        source,
    };
    let db = sled::Config::new()
        .path(&path)
        .cache_capacity(opts.cache_capacity)
        .mode(sled::Mode::HighThroughput)
        // Durability comes from explicit flushes before acknowledging; this is only a backstop.
        .flush_every_ms(Some(500))
        .open()
        .map_err(sled_err)?;
    let log_tree = db.open_tree("raft_log").map_err(sled_err)?;
    let meta_tree = db.open_tree("raft_meta").map_err(sled_err)?;
    let state_tree = db.open_tree("state").map_err(sled_err)?;
    let reader = StateReader::new(state_tree).map_err(|e| OpenError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let flusher = flush::Flusher::start(db.clone()).map_err(OpenError::Flusher)?;
    let log = LogStore::new(flusher, log_tree, meta_tree);
    let sm = StateMachine::new(Arc::new(db), reader.clone());
    Ok((log, sm, reader))
}
