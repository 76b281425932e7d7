//! Group commit: one thread owns `fdatasync` of the log files. Appends hand it their
//! completion callback and return at once; it takes every request waiting, syncs each file
//! once, and completes them in order, so under load many appends share one sync.

use std::fs::File;
use std::sync::{mpsc, Arc};

use openraft::storage::LogFlushed;

use crate::types::TypeConfig;

struct Request {
    file: Arc<File>,
    done: LogFlushed<TypeConfig>,
}

/// Handle to the flusher thread; clones share it. Dropping the last handle stops and joins
/// the thread.
#[derive(Clone)]
pub(crate) struct Flusher {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Flusher {
    pub(crate) fn start() -> std::io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("lucid-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let mut synced: Vec<(Arc<File>, Result<(), String>)> = Vec::new();
                    for req in &batch {
                        if !synced.iter().any(|(f, _)| Arc::ptr_eq(f, &req.file)) {
                            let r = req.file.sync_data().map_err(|e| e.to_string());
                            if let Err(e) = &r {
                                tracing::error!(error = %e, "log sync failed");
                            }
                            synced.push((req.file.clone(), r));
                        }
                    }
                    for req in batch {
                        let result = synced
                            .iter()
                            .find(|(f, _)| Arc::ptr_eq(f, &req.file))
                            .map_or(Ok(()), |(_, r)| r.clone());
                        req.done
                            .log_io_completed(result.map_err(std::io::Error::other));
                    }
                }
            })?;
        Ok(Flusher {
            inner: Arc::new(Inner {
                tx: Some(tx),
                thread: Some(thread),
            }),
        })
    }

    /// Complete `done` once `file` has been synced.
    pub(crate) fn after_sync(
        &self,
        file: Arc<File>,
        done: LogFlushed<TypeConfig>,
    ) -> std::io::Result<()> {
        self.inner
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("log sync thread stopped"))?
            .send(Request { file, done })
            .map_err(|_| std::io::Error::other("log sync thread stopped"))
    }
}
