//! Group commit: one thread owns fsync. Appends hand it their completion callback and return
//! at once; it takes every request waiting, flushes once, and completes them in order. Under
//! load many appends (on the leader and on followers) share one fsync.

use std::sync::{mpsc, Arc};

use openraft::storage::LogFlushed;
use tokio::sync::oneshot;

use crate::types::TypeConfig;

enum Request {
    /// Complete openraft's append callback once durable.
    Append(LogFlushed<TypeConfig>),
    /// Wake a caller that must not return before its write is durable (vote, truncate).
    Sync(oneshot::Sender<Result<(), String>>),
}

/// Handle to the flusher thread; clones share it. Dropping the last handle stops and joins
/// the thread, so the database (and its file lock) is released when the store is.
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
    pub(crate) fn start(db: sled::Db) -> std::io::Result<Flusher> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("lucid-log-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "log flush failed");
                    }
                    for req in batch {
                        match req {
                            Request::Append(cb) => {
                                cb.log_io_completed(result.clone().map_err(std::io::Error::other))
                            }
                            Request::Sync(tx) => {
                                let _ = tx.send(result.clone());
                            }
                        }
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

    fn send(&self, req: Request) -> Result<(), std::io::Error> {
        self.inner
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("log flusher stopped"))?
            .send(req)
            .map_err(|_| std::io::Error::other("log flusher stopped"))
    }

    /// Complete `cb` after the next flush.
    pub(crate) fn after_flush(&self, cb: LogFlushed<TypeConfig>) -> Result<(), std::io::Error> {
        self.send(Request::Append(cb))
    }

    /// Wait until everything written so far is on disk.
    pub(crate) async fn sync(&self) -> Result<(), std::io::Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Sync(tx))?;
        rx.await
            .map_err(|_| std::io::Error::other("log flusher stopped"))?
            .map_err(std::io::Error::other)
    }
}
