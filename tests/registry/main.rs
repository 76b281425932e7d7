//! Integration suite for lucid-registry: real processes, real sockets, real sled files.

mod acl;
mod acl_policies;
mod admin;
mod ca;
mod catalog;
mod cluster;
mod config;
mod crash;
mod ctl;
mod dns;
mod dns_policy;
mod health;
mod intentions;
mod kv;
mod limits;
mod nodes;
mod operator;
mod partition;
mod pyconsul;
mod query;
mod restore;
mod sessions;
mod trust;
mod watchers;
