//! The current Raft snapshot as one file, `<data>/raft/snapshot`, replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory). It is the durable base the log is
//! purged against; the sled state is only a cache that [`super::open`] rebuilds from it when a
//! crash left sled older.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::types::SnapshotMeta;

const NAME: &str = "snapshot";

/// Serialises writers (a snapshot being built and one being installed), and publishes the
/// last log index a durable snapshot covers.
#[derive(Clone)]
pub(crate) struct SnapFile {
    dir: PathBuf,
    lock: Arc<Mutex<()>>,
    durable: Arc<watch::Sender<u64>>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl SnapFile {
    pub(crate) fn new(dir: &Path) -> Self {
        SnapFile {
            dir: dir.to_owned(),
            lock: Arc::new(Mutex::new(())),
            durable: Arc::new(watch::channel(0).0),
        }
    }

    fn published(&self, meta: &SnapshotMeta) {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.durable.send_if_modified(|cur| {
            let newer = index > *cur;
            if newer {
                *cur = index;
            }
            newer
        });
    }

    /// Wait until a durable snapshot covers `index`. openraft 0.9 purges the log right after
    /// handing a received snapshot to the state-machine worker, without waiting for it to be
    /// installed; the log store calls this before purging so a crash in between cannot leave
    /// the log purged past the snapshot on disk.
    pub(crate) async fn wait_durable(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.durable.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|d| *d >= index)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// Tests of log mechanics alone (openraft's suite purges with no snapshot at all).
    #[cfg(test)]
    pub(crate) fn assume_durable(&self) {
        self.durable.send_replace(u64::MAX);
    }

    /// Read `[meta length u32][meta JSON][state blob]`.
    pub(crate) fn load(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let raw = match fs::read(self.dir.join(NAME)) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if raw.len() < 4 {
            return Err(invalid("snapshot file is truncated".into()));
        }
        let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        let meta_raw = raw
            .get(4..4 + len)
            .ok_or_else(|| invalid("snapshot meta is truncated".into()))?;
        let meta: SnapshotMeta =
            serde_json::from_slice(meta_raw).map_err(|e| invalid(e.to_string()))?;
        self.published(&meta);
        Ok(Some((meta, raw[4 + len..].to_vec())))
    }

    /// Durably replace the snapshot, unless the one on disk is newer. Blocking.
    pub(crate) fn save(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<bool> {
        let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cur, _)) = self.load()? {
            if cur.last_log_id > meta.last_log_id {
                return Ok(false);
            }
        }
        let meta_raw = serde_json::to_vec(meta).map_err(|e| invalid(e.to_string()))?;
        let len =
            u32::try_from(meta_raw.len()).map_err(|_| invalid("snapshot meta too large".into()))?;
        let tmp = self.dir.join("snapshot.tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&len.to_le_bytes())?;
        f.write_all(&meta_raw)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(NAME))?;
        File::open(&self.dir)?.sync_all()?;
        self.published(meta);
        Ok(true)
    }
}
