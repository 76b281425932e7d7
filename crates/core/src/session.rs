//! Consul's `PUT /v1/session/create` body, parsed once with Consul's key rules: `Name`,
//! `Node`, `Checks` (the old name of `NodeChecks`), `NodeChecks`, `ServiceChecks`
//! (`[{"ID", "Namespace"}]`), `LockDelay` (`"15s"`, or a number: seconds below 1000,
//! nanoseconds from there, as Consul reads it), `Behavior` (`release` or `delete`) and `TTL`
//! (10s to 24h, or none). A TTL outside that range is refused with Consul's own words,
//! "Invalid Session TTL ...", which clients such as Patroni look for.

use std::time::Duration;

use serde_json::Value;

use crate::obj::{bad, BodyError, Obj};

/// The shortest and longest session TTL (Consul's `session_ttl_min` and `SessionTTLMax`).
pub const TTL_MIN: Duration = Duration::from_secs(10);
pub const TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// Consul's default lock-delay.
pub const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// The node check every session is bound to unless told otherwise.
pub const SERF_HEALTH: &str = "serfHealth";

/// A parsed session request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    pub name: String,
    /// `None`: the agent's node.
    pub node: Option<String>,
    pub node_checks: Vec<String>,
    /// Service check ids.
    pub service_checks: Vec<String>,
    pub lock_delay: Duration,
    /// `true`: delete the held keys when invalidated; `false`: release them.
    pub delete: bool,
    /// As given (`"20s"`); empty for none.
    pub ttl: String,
    pub ttl_value: Option<Duration>,
}

/// Go's `%v` of a duration, as Consul's error message prints the bounds (`10s`, `24h0m0s`).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The TTL's refusal in Consul's words (HTTP 400 here; Consul's agent answers 500).
fn invalid_ttl(ttl: Duration) -> BodyError {
    bad(
        "TTL",
        format!(
            "Invalid Session TTL '{}', must be between [{}={}]",
            ttl.as_nanos(),
            go_duration(TTL_MIN),
            go_duration(TTL_MAX)
        ),
    )
}

/// Parse a create body (empty means every default).
pub fn parse(body: &Value) -> Result<SessionRequest, BodyError> {
    let empty = Value::Object(Default::default());
    let v = if body.is_null() { &empty } else { body };
    let o = Obj::new(v, String::new())?;
    o.only(&[
        "id",
        "name",
        "node",
        "checks",
        "nodechecks",
        "servicechecks",
        "lockdelay",
        "behavior",
        "ttl",
        "namespace",
        "partition",
    ])?;
    let lock_delay = match o.get(&["lockdelay"]) {
        None => DEFAULT_LOCK_DELAY,
        Some(Value::Number(n)) => {
            let n = n
                .as_u64()
                .ok_or_else(|| bad("LockDelay", "must not be negative"))?;
            // Consul: a small number is seconds, a large one nanoseconds.
            if n < 1000 {
                Duration::from_secs(n)
            } else {
                Duration::from_nanos(n)
            }
        }
        Some(_) => o.duration("LockDelay", &["lockdelay"])?.unwrap_or_default(),
    };
    if lock_delay > Duration::from_secs(60) {
        return Err(bad("LockDelay", "must be at most 60s"));
    }
    let delete = match o.string("Behavior", &["behavior"])?.as_deref() {
        None | Some("") | Some("release") => false,
        Some("delete") => true,
        Some(other) => {
            return Err(bad(
                "Behavior",
                format!("{other:?} is not release or delete"),
            ))
        }
    };
    let ttl = o.string("TTL", &["ttl"])?.unwrap_or_default();
    let ttl_value = if ttl.is_empty() {
        None
    } else {
        let d = crate::duration::parse_duration(&ttl)
            .map_err(|e| bad("TTL", format!("Request decode failed: {e}")))?;
        if d.is_zero() {
            None
        } else if d < TTL_MIN || d > TTL_MAX {
            return Err(invalid_ttl(d));
        } else {
            Some(d)
        }
    };
    let mut node_checks = o.strings("NodeChecks", &["nodechecks"])?;
    node_checks.extend(o.strings("Checks", &["checks"])?);
    let service_checks = match o.get(&["servicechecks"]) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(n, item)| {
                let c = Obj::new(item, format!("ServiceChecks[{n}]."))?;
                c.string("ID", &["id"])?
                    .ok_or_else(|| bad(&c.name("ID"), "is required"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("ServiceChecks", "must be a list")),
    };
    if node_checks.is_empty()
        && service_checks.is_empty()
        && !o.has("checks")
        && !o.has("nodechecks")
    {
        node_checks.push(SERF_HEALTH.to_owned());
    }
    node_checks.dedup();
    Ok(SessionRequest {
        name: o.string("Name", &["name"])?.unwrap_or_default(),
        node: o.string("Node", &["node"])?.filter(|n| !n.is_empty()),
        node_checks,
        service_checks,
        lock_delay,
        delete,
        ttl: if ttl_value.is_some() {
            ttl
        } else {
            String::new()
        },
        ttl_value,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_and_py_consuls_lower_case_body() {
        let r = parse(&Value::Null).unwrap();
        assert_eq!(r.node_checks, [SERF_HEALTH]);
        assert_eq!(r.lock_delay, DEFAULT_LOCK_DELAY);
        assert!(!r.delete);
        assert_eq!(r.ttl_value, None);
        let r = parse(
            &json!({"name": "s", "behavior": "delete", "ttl": "20s", "lockdelay": "5s",
            "checks": ["c1"]}),
        )
        .unwrap();
        assert_eq!(r.name, "s");
        assert!(r.delete);
        assert_eq!(
            (r.ttl.as_str(), r.ttl_value),
            ("20s", Some(Duration::from_secs(20)))
        );
        assert_eq!(r.lock_delay, Duration::from_secs(5));
        assert_eq!(r.node_checks, ["c1"], "explicit checks replace serfHealth");
        assert_eq!(
            parse(&json!({"LockDelay": 7})).unwrap().lock_delay,
            Duration::from_secs(7)
        );
        assert_eq!(
            parse(&json!({"LockDelay": 2_000_000_000u64}))
                .unwrap()
                .lock_delay,
            Duration::from_secs(2)
        );
        let r = parse(&json!({"Checks": []})).unwrap();
        assert!(r.node_checks.is_empty(), "an empty list binds no check");
    }

    #[test]
    fn a_ttl_out_of_range_is_refused_in_consuls_words() {
        let e = parse(&json!({"TTL": "5s"})).unwrap_err().to_string();
        assert_eq!(
            e,
            "TTL: Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
        );
        assert!(parse(&json!({"TTL": "25h"})).is_err());
        assert!(parse(&json!({"TTL": "ten"})).is_err());
        assert!(parse(&json!({"Behavior": "explode"})).is_err());
        assert!(parse(&json!({"Bogus": 1})).is_err());
        assert_eq!(parse(&json!({"TTL": "0s"})).unwrap().ttl_value, None);
    }
}
