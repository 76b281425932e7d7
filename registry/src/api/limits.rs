//! What one caller may hold or spend: blocking queries waiting at once (per token and per
//! client address) and CSR signings per second (per token). Past either, 429
//! `LUCID_ERR_1201` with `Retry-After`, the code the sidecars use for their own rate limits.
//!
//! Without these one read-only token held 5,000 blocking queries (400 MB), and one service
//! token had the CA sign 857 leaves a second.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use lucid_core::ErrorCode;

use super::error::ApiError;

/// Blocking queries one token may have waiting at once (`--max-blocking-per-token`).
pub const BLOCKING_PER_TOKEN: usize = 256;
/// ... and one client address (`--max-blocking-per-ip`; below the 256 connections an address
/// may hold, so a watcher-heavy client still has room for ordinary requests).
pub const BLOCKING_PER_IP: usize = 128;

/// Who a limit counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// The hash of the secret (never the secret itself).
    Token(String),
    Ip(IpAddr),
}

fn too_many(message: String, retry_after_s: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TrafficPolicyFailed,
        message,
    )
    .retry_after(retry_after_s)
}

/// Blocking queries waiting now, per key, and how many each kind of key may have.
#[derive(Debug)]
pub struct Watchers {
    counts: Arc<Mutex<HashMap<Key, usize>>>,
    per_token: usize,
    per_ip: usize,
}

/// A waiting query's place, given back on drop (whether it answered, timed out or the client
/// went away).
#[derive(Debug)]
pub struct WatchPermit {
    counts: Arc<Mutex<HashMap<Key, usize>>>,
    keys: Vec<Key>,
}

impl Watchers {
    pub fn new(per_token: usize, per_ip: usize) -> Watchers {
        Watchers {
            counts: Arc::default(),
            per_token,
            per_ip,
        }
    }

    /// Admit one more waiting query for every key, or refuse without taking any.
    pub fn admit(&self, keys: Vec<Key>) -> Result<WatchPermit, ApiError> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for k in &keys {
            let cap = match k {
                Key::Token(_) => self.per_token,
                Key::Ip(_) => self.per_ip,
            };
            if c.get(k).copied().unwrap_or(0) >= cap {
                let who = match k {
                    Key::Token(_) => "this token".to_owned(),
                    Key::Ip(ip) => ip.to_string(),
                };
                return Err(too_many(
                    format!("{who} already has {cap} blocking queries waiting"),
                    5,
                ));
            }
        }
        for k in &keys {
            *c.entry(k.clone()).or_insert(0) += 1;
        }
        metrics::gauge!("lucid_blocking_queries_waiting").increment(1.0);
        Ok(WatchPermit {
            counts: self.counts.clone(),
            keys,
        })
    }

    /// Waiting now under `key`.
    pub fn waiting(&self, key: &Key) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        metrics::gauge!("lucid_blocking_queries_waiting").decrement(1.0);
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for k in &self.keys {
            if let Some(n) = c.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    c.remove(k);
                }
            }
        }
    }
}

/// CSR signings per second per key (governor's GCRA, keyed).
pub struct Signing {
    limiter: RateLimiter<Key, HashMapStateStore<Key>, DefaultClock>,
    per_second: u32,
    burst: u32,
}

impl Signing {
    pub fn new(per_second: u32, burst: u32) -> Signing {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let b = NonZeroU32::new(burst).unwrap_or(rate);
        Signing {
            limiter: RateLimiter::hashmap(Quota::per_second(rate).allow_burst(b)),
            per_second,
            burst,
        }
    }

    /// One signing for `key`, or 429 with when to come back.
    pub fn check(&self, key: &Key) -> Result<(), ApiError> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            too_many(
                format!(
                    "signing is limited to {}/s (burst {}) per token",
                    self.per_second, self.burst
                ),
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            )
        })?;
        // Forget idle keys now and then, so the table does not grow with every token seen.
        if self.limiter.len() > 4096 {
            self.limiter.retain_recent();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_are_capped_per_key_and_released() {
        let w = Watchers::new(3, 10);
        let t = Key::Token("h".into());
        let ip = Key::Ip([127, 0, 0, 1].into());
        let held: Vec<_> = (0..3)
            .map(|_| w.admit(vec![t.clone(), ip.clone()]).unwrap())
            .collect();
        let e = w.admit(vec![t.clone(), ip.clone()]).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(w.waiting(&ip), 3, "a refusal takes nothing");
        let more: Vec<_> = (0..7)
            .map(|i| {
                w.admit(vec![Key::Token(format!("t{i}")), ip.clone()])
                    .unwrap()
            })
            .collect();
        assert!(
            w.admit(vec![Key::Token("third".into()), ip.clone()])
                .is_err(),
            "the address's own cap"
        );
        drop((held, more));
        assert_eq!(w.waiting(&t), 0);
        assert!(w.admit(vec![t]).is_ok());
    }

    #[test]
    fn signing_allows_the_burst_then_refuses_per_token() {
        let s = Signing::new(10, 5);
        let a = Key::Token("a".into());
        let b = Key::Token("b".into());
        let ok = (0..20).filter(|_| s.check(&a).is_ok()).count();
        assert!((5..=6).contains(&ok), "{ok} of 20 at once");
        assert!(s.check(&b).is_ok(), "another token has its own budget");
    }
}
