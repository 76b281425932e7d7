//! How long a peer's certificate may keep a connection open: until its serial shows up in the
//! revoked list (checked whenever the list changes) or until it expires, whichever comes
//! first. Inbound connections and pooled outbound connections both end there, so a revoked
//! or expired identity cannot ride on a connection opened while it was still good.
//!
//! The registry sends the revoked list once in full, then only what was revoked since the
//! index last seen; entries leave the local set when their certificate expires (an expired
//! certificate fails every handshake anyway), so the set stays as small as the live fleet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lucid_tls::mtls::{PeerCert, Revoked};
use tokio::sync::watch;

use crate::serve::EndReason;

/// The revoked list and a signal that moves each time it changes.
#[derive(Debug, Clone)]
pub struct Trust {
    revoked: Revoked,
    /// serial -> expiry (unix seconds) of every revoked leaf known: what deltas merge into.
    known: Arc<Mutex<HashMap<String, i64>>>,
    changes: watch::Sender<u64>,
}

impl Trust {
    pub fn new(revoked: Revoked) -> Trust {
        Trust {
            revoked,
            known: Arc::default(),
            changes: watch::channel(0).0,
        }
    }

    pub fn revoked(&self) -> &Revoked {
        &self.revoked
    }

    /// Replace the revoked list with a full one (serial, expiry) and wake every connection
    /// to look at it.
    pub fn replace(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        self.update(true, entries);
    }

    /// Add what was revoked since the last answer, and forget entries that have expired.
    pub fn merge(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        self.update(false, entries);
    }

    /// Only a serial new to the set can end a connection, so only that wakes them: a blocking
    /// query that timed out brings an empty delta every few minutes, and waking every
    /// connection of a busy sidecar for nothing is what that would cost.
    fn update(&self, full: bool, entries: impl IntoIterator<Item = (String, i64)>) {
        let now = lucid_core::unix_now();
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let had = known.len();
        // A full list is compared with what it replaces; a delta with what it adds to.
        let replaced = if full {
            std::mem::take(&mut *known)
        } else {
            HashMap::new()
        };
        let mut added = false;
        for (serial, not_after) in entries {
            let seen = if full {
                replaced.contains_key(&serial)
            } else {
                known.contains_key(&serial)
            };
            added |= !seen;
            known.insert(serial, not_after);
        }
        known.retain(|_, not_after| *not_after >= now);
        // Without an addition the new set is a subset of the old one: same size, same set.
        if added || known.len() != had {
            self.revoked.replace(known.keys().cloned());
        }
        drop(known);
        if added {
            self.changes.send_modify(|g| *g += 1);
        }
    }

    /// Resolves when `peer` is revoked or expires.
    pub fn until_untrusted(&self, peer: &PeerCert) -> impl std::future::Future<Output = EndReason> {
        let mut changes = self.changes.subscribe();
        let revoked = self.revoked.clone();
        let serial = peer.serial.clone();
        let left = u64::try_from(peer.not_after - lucid_core::unix_now()).unwrap_or(0);
        async move {
            let expiry = tokio::time::sleep(Duration::from_secs(left));
            tokio::pin!(expiry);
            loop {
                if revoked.contains(&serial) {
                    return EndReason::Revoked;
                }
                tokio::select! {
                    () = &mut expiry => return EndReason::Expired,
                    r = changes.changed() => if r.is_err() {
                        // The list can no longer change: only expiry remains.
                        expiry.as_mut().await;
                        return EndReason::Expired;
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lucid_tls::SpiffeId;

    fn peer(serial: &str, not_after: i64) -> PeerCert {
        PeerCert {
            id: SpiffeId::new("default", "web").unwrap(),
            serial: serial.into(),
            not_after,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ends_on_revocation_of_that_serial_only() {
        let trust = Trust::new(Revoked::default());
        let far = lucid_core::unix_now() + 3600;
        let mine = tokio::spawn(trust.until_untrusted(&peer("aa", far)));
        let other = tokio::spawn(trust.until_untrusted(&peer("bb", far)));
        tokio::task::yield_now().await;
        trust.replace([("aa".to_owned(), far)]);
        assert_eq!(mine.await.unwrap(), EndReason::Revoked);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!other.is_finished(), "another serial is not ended");
        other.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn ends_at_expiry() {
        let trust = Trust::new(Revoked::default());
        let soon = lucid_core::unix_now() + 30;
        let t = tokio::spawn(trust.until_untrusted(&peer("aa", soon)));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(!t.is_finished(), "still valid before expiry");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(t.await.unwrap(), EndReason::Expired);
    }

    #[test]
    fn deltas_add_full_lists_replace_and_expired_entries_leave() {
        let trust = Trust::new(Revoked::default());
        let (now, far) = (lucid_core::unix_now(), lucid_core::unix_now() + 3600);
        trust.replace([("aa".to_owned(), far), ("old".to_owned(), now - 10)]);
        assert!(trust.revoked().contains("aa"));
        assert!(
            !trust.revoked().contains("old"),
            "an expired leaf is not kept"
        );
        trust.merge([("bb".to_owned(), far)]);
        assert!(trust.revoked().contains("aa") && trust.revoked().contains("bb"));
        // A full list (after a restore, say) drops what it does not name.
        trust.replace([("cc".to_owned(), far)]);
        assert!(!trust.revoked().contains("aa") && !trust.revoked().contains("bb"));
        assert_eq!(trust.revoked().len(), 1);
    }

    #[test]
    fn only_a_newly_revoked_serial_wakes_connections() {
        let trust = Trust::new(Revoked::default());
        let far = lucid_core::unix_now() + 3600;
        let mut w = trust.changes.subscribe();
        trust.replace([("aa".to_owned(), far)]);
        assert!(w.has_changed().unwrap(), "a new serial wakes");
        w.borrow_and_update();
        trust.merge([]);
        trust.merge([("aa".to_owned(), far)]);
        trust.replace([("aa".to_owned(), far)]);
        assert!(!w.has_changed().unwrap(), "nothing new: nobody woken");
        trust.replace([]);
        assert!(!w.has_changed().unwrap(), "a removal ends no connection");
        assert!(!trust.revoked().contains("aa"), "but the set shrank");
        trust.merge([("bb".to_owned(), far)]);
        assert!(w.has_changed().unwrap());
    }
}
