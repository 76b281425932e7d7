//! Caps on the connections one listener holds, in total and per peer address, shared by
//! every listener of both binaries. A listener takes a [`Slot`] per accepted connection and
//! closes the connection at once when none is left, so a flood from one address cannot use
//! up the process's file descriptors and everybody else (health checks included) still gets
//! in. The slot goes back when the connection's task drops it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Request headers (and a TLS handshake) must arrive within this on every listener; an idle
/// HTTP/1.1 keep-alive connection closes after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections a listener admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open at once on the listener.
    pub total: usize,
    /// ... of which from one IP address.
    pub per_ip: usize,
}

impl ConnLimits {
    /// Raise the soft descriptor limit to the hard one (as Go's runtime does at start) and
    /// size the caps from what the process may then open.
    pub fn from_fd_limit() -> ConnLimits {
        ConnLimits::for_fds(rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024))
    }

    /// These limits with the operator's overrides (`--max-connections`,
    /// `--max-connections-per-ip` on both binaries); an address may never hold more than the
    /// listener.
    pub fn with(self, total: Option<usize>, per_ip: Option<usize>) -> ConnLimits {
        let total = total.unwrap_or(self.total);
        ConnLimits {
            total,
            per_ip: per_ip.unwrap_or(self.per_ip).min(total),
        }
    }

    /// Half the descriptors left after a reserve of 256 (files, peers, the other listeners)
    /// per listener, and no single address more than 256 (Consul allows 200 per client).
    pub fn for_fds(fds: u64) -> ConnLimits {
        let total = (fds.saturating_sub(256) / 2).clamp(64, 16_384);
        ConnLimits {
            total: usize::try_from(total).unwrap_or(16_384),
            per_ip: 256,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One listener's open connections, in total and per address.
#[derive(Debug, Clone)]
pub struct Slots {
    limits: ConnLimits,
    counts: Arc<Mutex<Counts>>,
}

impl Slots {
    pub fn new(limits: ConnLimits) -> Slots {
        Slots {
            limits,
            counts: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, or `None` past either cap.
    pub fn take(&self, ip: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.limits.total || mine >= self.limits.per_ip {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, mine + 1);
        Some(Slot {
            counts: self.counts.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// Refusals past a cap, reported at most once a second: a flood must not also flood the log.
#[derive(Debug, Default)]
pub struct Refusals {
    since_report: u64,
    last: Option<std::time::Instant>,
}

impl Refusals {
    /// Count one; `Some(n)` (refusals since the last report) when it is time to log.
    pub fn refused(&mut self) -> Option<u64> {
        self.since_report += 1;
        if matches!(self.last, Some(t) if t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        self.last = Some(std::time::Instant::now());
        Some(std::mem::take(&mut self.since_report))
    }
}

/// A connection's place in [`Slots`], given back on drop.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_reported_once_a_second_with_their_count() {
        let mut r = Refusals::default();
        assert_eq!(r.refused(), Some(1), "the first is reported at once");
        assert_eq!(r.refused(), None);
        assert_eq!(r.refused(), None);
        r.last = r.last.map(|t| t - Duration::from_secs(2));
        assert_eq!(r.refused(), Some(3), "the next report carries the count");
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        assert_eq!(ConnLimits::for_fds(1024).total, 384);
        assert_eq!(ConnLimits::for_fds(100).total, 64);
        assert_eq!(ConnLimits::for_fds(1 << 20).total, 16_384);
        assert!(ConnLimits::for_fds(1024).per_ip < ConnLimits::for_fds(1024).total);
    }

    #[test]
    fn overrides_replace_the_defaults_and_an_address_never_exceeds_the_listener() {
        let d = ConnLimits::for_fds(1024);
        assert_eq!(d.with(None, None), d);
        let l = d.with(Some(100), Some(5));
        assert_eq!((l.total, l.per_ip), (100, 5));
        assert_eq!(d.with(Some(50), None).per_ip, 50);
    }

    #[test]
    fn slots_cap_per_ip_and_in_total_and_are_given_back() {
        let slots = Slots::new(ConnLimits {
            total: 5,
            per_ip: 3,
        });
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let c: IpAddr = [127, 0, 0, 3].into();
        let held: Vec<Slot> = (0..3).map(|_| slots.take(a).unwrap()).collect();
        assert!(slots.take(a).is_none(), "one address is capped");
        let others: Vec<Slot> = (0..2).map(|_| slots.take(b).unwrap()).collect();
        assert!(slots.take(c).is_none(), "the listener is capped");
        assert_eq!(slots.open(), 5);
        drop(held);
        assert!(slots.take(a).is_some(), "slots come back");
        drop(others);
        assert_eq!(slots.open(), 0);
        assert!(slots.counts.lock().unwrap().per_ip.is_empty());
    }
}
