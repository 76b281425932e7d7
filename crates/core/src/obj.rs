//! Consul's JSON object rules, shared by every body parser: keys are case-insensitive and
//! `_` is ignored (`ServiceID`, `serviceid` and `service_id` are one key), JSON null means
//! absent, durations are `"10s"` strings or integer nanoseconds, and every refusal names the
//! field it is about.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration::parse_duration;

/// Why a body was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

pub(crate) fn bad(field: &str, reason: impl Into<String>) -> BodyError {
    BodyError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// An object with Consul's key rules: case-insensitive, `_` ignored (so `ServiceID`,
/// `serviceid` and `service_id` are one key).
pub(crate) struct Obj<'a> {
    keys: BTreeMap<String, &'a Value>,
    /// Prefix for error messages, e.g. `Checks[1].`.
    pub(crate) at: String,
}

/// A key as Consul compares it: lower case, `_` removed.
pub fn fold_key(key: &str) -> String {
    norm(key)
}

pub(crate) fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl<'a> Obj<'a> {
    pub(crate) fn new(v: &'a Value, at: String) -> Result<Self, BodyError> {
        let map: &Map<String, Value> = v.as_object().ok_or_else(|| {
            if at.is_empty() {
                BodyError::NotObject
            } else {
                bad(at.trim_end_matches('.'), "must be an object")
            }
        })?;
        let mut keys: BTreeMap<String, &'a Value> = BTreeMap::new();
        let mut spelled: BTreeMap<String, &str> = BTreeMap::new();
        for (k, v) in map {
            let n = norm(k);
            // `{"Service":"web","name":"db"}` style bodies: two spellings of one key would
            // let different readers pick different values, so refuse them outright.
            if let Some(first) = spelled.insert(n.clone(), k) {
                return Err(bad(
                    &format!("{at}{first}"),
                    format!(
                        "keys {first:?} and {k:?} are the same key (case and '_' are ignored); send one"
                    ),
                ));
            }
            keys.insert(n, v);
        }
        Ok(Obj { keys, at })
    }

    pub(crate) fn name(&self, field: &str) -> String {
        format!("{}{field}", self.at)
    }

    /// The value under any of `aliases` (already normalised), ignoring JSON null.
    pub(crate) fn get(&self, aliases: &[&str]) -> Option<&'a Value> {
        aliases
            .iter()
            .find_map(|a| self.keys.get(*a).copied())
            .filter(|v| !v.is_null())
    }

    /// Refuse keys other than `known` (normalised), naming the first unknown one.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), BodyError> {
        match self.keys.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(bad(&self.name(k), "unknown field")),
            None => Ok(()),
        }
    }

    pub(crate) fn has(&self, alias: &str) -> bool {
        self.get(&[alias]).is_some()
    }

    pub(crate) fn string(
        &self,
        field: &str,
        aliases: &[&str],
    ) -> Result<Option<String>, BodyError> {
        match self.get(aliases) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&self.name(field), "must be a string")),
        }
    }

    pub(crate) fn uint(&self, field: &str, aliases: &[&str]) -> Result<Option<u64>, BodyError> {
        match self.get(aliases) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(&self.name(field), "must be a non-negative integer")),
        }
    }

    pub(crate) fn boolean(&self, field: &str, aliases: &[&str]) -> Result<bool, BodyError> {
        match self.get(aliases) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(&self.name(field), "must be true or false")),
        }
    }

    /// `"10s"`-style string or integer nanoseconds.
    pub(crate) fn duration(
        &self,
        field: &str,
        aliases: &[&str],
    ) -> Result<Option<Duration>, BodyError> {
        match self.get(aliases) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .map_err(|e| bad(&self.name(field), e.to_string())),
            Some(v) => v
                .as_u64()
                .map(|n| Some(Duration::from_nanos(n)))
                .ok_or_else(|| {
                    bad(
                        &self.name(field),
                        "must be a duration like \"10s\" or integer nanoseconds",
                    )
                }),
        }
    }

    pub(crate) fn strings(&self, field: &str, aliases: &[&str]) -> Result<Vec<String>, BodyError> {
        match self.get(aliases) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(&self.name(field), "must be a list of strings")),
            Some(_) => Err(bad(&self.name(field), "must be a list of strings")),
        }
    }

    pub(crate) fn string_map(
        &self,
        field: &str,
        aliases: &[&str],
    ) -> Result<BTreeMap<String, String>, BodyError> {
        match self.get(aliases) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect::<Option<BTreeMap<_, _>>>()
                .ok_or_else(|| bad(&self.name(field), "values must be strings")),
            Some(_) => Err(bad(&self.name(field), "must be an object of strings")),
        }
    }

    pub(crate) fn port(&self, field: &str, aliases: &[&str]) -> Result<Option<u16>, BodyError> {
        match self.get(aliases) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(p @ 1..=65535) => Ok(Some(p as u16)),
                _ => Err(bad(
                    &self.name(field),
                    format!("{v} is not a port (1-65535)"),
                )),
            },
        }
    }
}
