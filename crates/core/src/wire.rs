//! The typed wire contract between our own binaries: every answer of the registry that the
//! sidecar or lucidctl reads, as one set of serde structs. The registry serialises these and
//! the readers deserialise them, so a renamed field is a compile error on both sides instead
//! of a silent `null`.
//!
//! Consul clients (py-consul, python-consul2, node's `consul`) read the same answers, so the
//! field names are Consul's and must never change: `tests.rs` pins the exact bytes. Fields are
//! declared in the byte order of their names, which is the order the registry wrote them in
//! when it built these answers with `json!` (a sorted map), so the bytes did not move either.
//!
//! Every struct takes `#[serde(default)]` on the reading side: a field an older registry does
//! not send reads as its default instead of failing the whole answer.

pub mod acl;
pub mod ca;
pub mod catalog;
pub mod operator;

#[cfg(test)]
mod tests;
