//! Test hosts in network namespaces: one namespace per node, each joined by a veth pair to a
//! bridge in the root namespace, so tests can cut links the way a real network fails.
//!
//! Splitting a node from its peers uses blackhole routes inside the namespaces (no iptables
//! needed), so clients on the bridge still reach every node: the classic setting for stale
//! reads. Everything is deleted on Drop, even when the test fails. Needs root, as CI has.

use std::process::Command;

use anyhow::Context;

/// A bridge `10.213.<net>.1/24` and `n` namespaces at `10.213.<net>.11`, `.12`, ...
pub struct Hosts {
    tag: String,
    net: u8,
    n: usize,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Can this process make namespaces (root with iproute2)?
pub fn available() -> bool {
    let name = format!("lucidprobe{}", std::process::id());
    let ok = ip(&["netns", "add", &name]).is_ok();
    if ok {
        let _ = ip(&["netns", "del", &name]);
    }
    ok
}

impl Hosts {
    /// Create the bridge and `n` hosts. The subnet comes from the PID, so two test
    /// processes on one machine do not collide.
    pub fn new(n: usize) -> anyhow::Result<Hosts> {
        let pid = std::process::id();
        let h = Hosts {
            tag: format!("{:x}", pid % 0xfffff),
            net: (pid % 200 + 20) as u8,
            n,
        };
        // Leftovers of a crashed run with the same PID would make `add` fail.
        h.cleanup();
        let br = h.bridge();
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("10.213.{}.1/24", h.net), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..n {
            let (ns, veth) = (h.ns(i), format!("lv{}x{i}", h.tag));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &br, "up"])?;
            let addr = format!("{}/24", h.addr(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(h)
    }

    fn bridge(&self) -> String {
        format!("lbr{}", self.tag)
    }

    /// The namespace of host `i` (for `ip netns exec`).
    pub fn ns(&self, i: usize) -> String {
        format!("lucid{}x{i}", self.tag)
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.net, 11 + i)
    }

    /// Cut host `i` off from every other host; the bridge (clients) still reaches it.
    pub fn split(&self, i: usize) -> anyhow::Result<()> {
        self.routes(i, "add")
    }

    /// Undo [`Hosts::split`].
    pub fn heal(&self, i: usize) -> anyhow::Result<()> {
        self.routes(i, "del")
    }

    fn routes(&self, i: usize, verb: &str) -> anyhow::Result<()> {
        for j in (0..self.n).filter(|&j| j != i) {
            let (to_j, to_i) = (
                format!("{}/32", self.addr(j)),
                format!("{}/32", self.addr(i)),
            );
            ip(&["-n", &self.ns(i), "route", verb, "blackhole", &to_j])?;
            ip(&["-n", &self.ns(j), "route", verb, "blackhole", &to_i])?;
        }
        Ok(())
    }

    fn cleanup(&self) {
        for i in 0..self.n {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.cleanup();
    }
}
