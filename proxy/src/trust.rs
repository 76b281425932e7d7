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

    fn update(&self, full: bool, entries: impl IntoIterator<Item = (String, i64)>) {
        let now = lucid_core::unix_now();
        {
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            if full {
                known.clear();
            }
            known.extend(entries);
            known.retain(|_, not_after| *not_after >= now);
            self.revoked.replace(known.keys().cloned());
        }
        self.changes.send_modify(|g| *g += 1);
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
}
