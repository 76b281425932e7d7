//! Who the DNS server answers, and how much: `--dns-acl` (source networks allowed at all),
//! `--dns-recursor-allow` (sources the recursor relays for, so the server is never an open
//! resolver), and response rate limiting per source address in the style of BIND's RRL:
//! past the rate, UDP answers are dropped, and every `slip`-th dropped one is replaced by an
//! empty truncated (TC) answer, so a real client retries over TCP (never limited) while a
//! spoofed victim gets nothing larger than the query.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

/// Loopback and private networks: the default for who the recursor serves (and, with ACLs
/// on, who may ask at all).
pub fn private_networks() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// Loopback: the default RRL exemption (a flag's default, so written as one).
pub const LOOPBACK_NETWORKS: &str = "127.0.0.0/8,::1/128";

/// What to do with one UDP answer under the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Send,
    /// Send an empty answer with TC set instead.
    Slip,
    Drop,
}

/// Answers per second per source address, and the slip ratio.
pub struct Rrl {
    limiter: RateLimiter<IpAddr, HashMapStateStore<IpAddr>, DefaultClock>,
    slip: u32,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Rrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rrl")
            .field("slip", &self.slip)
            .finish_non_exhaustive()
    }
}

impl Rrl {
    /// `per_second` answers a second to one address, with a burst of one second's worth;
    /// `slip` 0 never slips, 1 slips every limited answer, 2 every other one (BIND's default).
    pub fn new(per_second: NonZeroU32, slip: u32) -> Rrl {
        Rrl {
            limiter: RateLimiter::hashmap(Quota::per_second(per_second)),
            slip,
            dropped: AtomicU64::new(0),
        }
    }

    pub fn check(&self, src: IpAddr) -> Rate {
        if self.limiter.check_key(&src).is_ok() {
            if self.limiter.len() > 65_536 {
                self.limiter.retain_recent();
            }
            return Rate::Send;
        }
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if self.slip > 0 && n.is_multiple_of(u64::from(self.slip)) {
            Rate::Slip
        } else {
            Rate::Drop
        }
    }
}

/// The DNS server's source policy.
#[derive(Debug, Default)]
pub struct Policy {
    /// Empty: every source may ask.
    pub acl: Vec<IpNet>,
    /// Sources the recursor relays for.
    pub recursor_allow: Vec<IpNet>,
    pub rrl: Option<Rrl>,
    /// Sources the rate limit never applies to (loopback by default: its addresses cannot
    /// be spoofed from outside the host, so it cannot be a reflection victim).
    pub rrl_exempt: Vec<IpNet>,
}

impl Policy {
    pub fn may_ask(&self, src: IpAddr) -> bool {
        self.acl.is_empty() || self.acl.iter().any(|n| n.contains(&canonical(src)))
    }

    pub fn may_recurse(&self, src: IpAddr) -> bool {
        self.recursor_allow
            .iter()
            .any(|n| n.contains(&canonical(src)))
    }

    pub fn rate(&self, src: IpAddr) -> Rate {
        let src = canonical(src);
        match &self.rrl {
            Some(r) if !self.rrl_exempt.iter().any(|n| n.contains(&src)) => r.check(src),
            _ => Rate::Send,
        }
    }
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`: judge it as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_and_recursor_allow_decide_by_network() {
        let p = Policy {
            acl: vec!["10.1.0.0/16".parse().unwrap()],
            recursor_allow: private_networks(),
            rrl: None,
            rrl_exempt: Vec::new(),
        };
        assert!(p.may_ask("10.1.2.3".parse().unwrap()));
        assert!(p.may_ask("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!p.may_ask("10.2.0.1".parse().unwrap()));
        assert!(p.may_recurse("192.168.1.1".parse().unwrap()));
        assert!(!p.may_recurse("8.8.8.8".parse().unwrap()));
        assert!(Policy::default().may_ask("8.8.8.8".parse().unwrap()));
        assert!(!Policy::default().may_recurse("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn past_the_rate_every_other_answer_slips() {
        let r = Rrl::new(NonZeroU32::new(5).unwrap(), 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let outcomes: Vec<Rate> = (0..25).map(|_| r.check(a)).collect();
        let sent = outcomes.iter().filter(|o| **o == Rate::Send).count();
        let slipped = outcomes.iter().filter(|o| **o == Rate::Slip).count();
        assert!((5..=6).contains(&sent), "{sent} sent of 25");
        assert!((9..=11).contains(&slipped), "{slipped} slipped");
        assert_eq!(
            r.check("10.0.0.2".parse().unwrap()),
            Rate::Send,
            "per source"
        );
    }
}
