//! How long a peer's certificate may keep a connection open: until its serial shows up in the
//! revoked list (checked whenever the list changes) or until it expires, whichever comes
//! first. Inbound connections and pooled outbound connections both end there, so a revoked
//! or expired identity cannot ride on a connection opened while it was still good.

use std::time::Duration;

use lucid_tls::mtls::{PeerCert, Revoked};
use tokio::sync::watch;

use crate::serve::EndReason;

/// The revoked list and a signal that moves each time it is replaced.
#[derive(Debug, Clone)]
pub struct Trust {
    revoked: Revoked,
    changes: watch::Sender<u64>,
}

impl Trust {
    pub fn new(revoked: Revoked) -> Trust {
        Trust {
            revoked,
            changes: watch::channel(0).0,
        }
    }

    pub fn revoked(&self) -> &Revoked {
        &self.revoked
    }

    /// Replace the revoked list and wake every connection to look at it.
    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        self.revoked.replace(serials);
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
        trust.replace(["aa".to_owned()]);
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
}
