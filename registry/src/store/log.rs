//! The Raft log store: [`Wal`] files for entries, vote and purge point. Every vote is synced
//! before `save_vote` returns; every append is synced (group-committed by [`Flusher`]) before
//! openraft is told it is durable.

// openraft's trait methods return its own (large) StorageError; helpers share that type.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use super::flush::Flusher;
use super::snapfile::SnapFile;
use super::wal::Wal;
use crate::types::{Entry, LogId, StorageError, StorageIOError, TypeConfig, Vote};

/// How long a purge waits for the snapshot it depends on to reach disk.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The log half of the store. Clones share the same files (openraft reads entries from a
/// clone while the core appends).
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Mutex<Wal>>,
    flusher: Flusher,
    snap: SnapFile,
    /// Last committed index seen, for `/status` and metrics.
    committed: Arc<AtomicU64>,
}

impl LogStore {
    pub(crate) fn new(wal: Wal, flusher: Flusher, snap: SnapFile) -> Self {
        LogStore {
            wal: Arc::new(Mutex::new(wal)),
            flusher,
            snap,
            committed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A shared view of the commit index, updated whenever openraft reports it.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    #[cfg(test)]
    pub(crate) fn snapshot_gate(&self) -> &SnapFile {
        &self.snap
    }

    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn decode_entry(raw: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(raw).map_err(|e| StorageIOError::read_logs(&e).into())
}

// === impl LogStore: openraft traits ===

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let wal = self.wal();
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(wal.first_index());
        let Some(last) = wal.last_index() else {
            return Ok(Vec::new());
        };
        let end = match range.end_bound() {
            Bound::Included(i) => (*i).min(last),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => (i - 1).min(last),
            Bound::Unbounded => last,
        };
        let mut out = Vec::new();
        let mut index = start;
        while index <= end {
            match wal.read(index).map_err(|e| StorageIOError::read_logs(&e))? {
                Some(raw) => out.push(decode_entry(&raw)?),
                None => break,
            }
            index += 1;
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let wal = self.wal();
        let last_purged = wal.meta.purged;
        let last = match wal.last_index() {
            Some(i) => {
                let raw = wal
                    .read(i)
                    .map_err(|e| StorageIOError::read_logs(&e))?
                    .ok_or_else(|| {
                        StorageIOError::read_logs(&std::io::Error::other("last entry vanished"))
                    })?;
                Some(decode_entry(&raw)?.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut wal = self.wal();
        let mut meta = wal.meta.clone();
        meta.vote = Some(*vote);
        wal.save_meta(meta)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.wal().meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Kept in memory only: this runs on every commit advance, and a lost commit index only
        // means re-learning it from the leader after a restart (openraft's default behaviour).
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(None)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        for entry in entries {
            let raw = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            records.push((entry.log_id.index, raw));
        }
        let file = self
            .wal()
            .append(&records)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        match file {
            Some(f) => self
                .flusher
                .after_sync(f, callback)
                .map_err(|e| StorageIOError::write_logs(&e))?,
            None => callback.log_io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.wal()
            .truncate(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if !self.snap.wait_durable(log_id.index, PURGE_WAIT).await {
            let e = std::io::Error::other(format!(
                "refusing to purge the log to {}: no durable snapshot covers it after {PURGE_WAIT:?}",
                log_id.index
            ));
            return Err(StorageIOError::write_logs(&e).into());
        }
        self.wal()
            .purge(log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}
