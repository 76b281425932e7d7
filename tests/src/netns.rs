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

/// `ip ARGS` and its standard output; an error when it fails.
fn ip_out(args: &[&str]) -> anyhow::Result<String> {
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Remove the bridges and namespaces of earlier runs whose process is gone (a killed test
/// cannot run its Drop).
fn remove_leftovers() {
    let links = ip_out(&["-o", "link", "show", "type", "bridge"]).unwrap_or_default();
    for name in links.split_whitespace().filter_map(|w| w.strip_suffix(':')) {
        let Some(tag) = name.strip_prefix("lbr") else {
            continue;
        };
        let Ok(pid) = u32::from_str_radix(tag, 16) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = ip(&["link", "del", name]);
        for i in 0..9 {
            let _ = ip(&["netns", "del", &format!("lucid{tag}x{i}")]);
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    ip_out(args).map(|_| ())
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
        anyhow::ensure!(n <= 9, "at most 9 hosts");
        remove_leftovers();
        let pid = std::process::id();
        // A /24 nothing on this machine routes yet, starting from one the PID picks.
        let net = (0..200u32)
            .map(|k| ((pid + k) % 200 + 20) as u8)
            .find(|net| {
                ip_out(&["route", "show", &format!("10.213.{net}.0/24")])
                    .is_ok_and(|r| r.trim().is_empty())
            })
            .context("no free 10.213.x.0/24 for test hosts")?;
        let h = Hosts {
            tag: format!("{pid:x}"),
            net,
            n,
        };
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
