//! Integration suite for lucid-registry: real processes, real sockets, real sled files.

mod admin;
mod cluster;
mod crash;
mod kv;
