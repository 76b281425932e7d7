//! Child processes that announce their listeners on stderr as `listening <kind> <addr>`:
//! collect their log, wait for the addresses, and stop them by PID.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child's stderr lines so far (shared with the reader thread).
pub type Log = Arc<Mutex<Vec<String>>>;

/// Read `child`'s piped stderr into a log (echoed with `tag` when `LUCID_TEST_LOGS` is set)
/// and wait up to 30 s for a `listening <kind> <addr>` line for each of `kinds`. On failure
/// the child is killed and the error carries its log.
pub fn listeners(
    child: &mut Child,
    kinds: &[&'static str],
    tag: &str,
) -> anyhow::Result<(HashMap<&'static str, String>, Log)> {
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let log: Log = Arc::default();
    let sink = log.clone();
    let (tx, rx) = std::sync::mpsc::channel::<(&'static str, String)>();
    let kinds_owned = kinds.to_vec();
    let tag = tag.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for kind in &kinds_owned {
                let marker = format!("listening {kind} ");
                if let Some(pos) = line.find(&marker) {
                    let addr = line[pos + marker.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("");
                    let _ = tx.send((kind, addr.to_owned()));
                }
            }
            if std::env::var_os("LUCID_TEST_LOGS").is_some() {
                eprintln!("[{tag}] {line}");
            }
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    });
    let mut found = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.len() < kinds.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((k, a)) => {
                found.insert(k, a);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not report its listeners {kinds:?}:\n{}",
                    child.id(),
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .join("\n")
                );
            }
        }
    }
    Ok((found, log))
}

/// SIGTERM and wait up to `within` for the exit status.
pub fn terminate(child: &mut Child, within: Duration) -> anyhow::Result<ExitStatus> {
    signal(child, "TERM")?;
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            bail!(
                "process {} did not exit within {within:?} of SIGTERM",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send a signal (`TERM`, `STOP`, `CONT`...) to this child, by PID.
pub fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()?;
    anyhow::ensure!(st.success(), "kill -{sig} {} failed", child.id());
    Ok(())
}

/// A child started as the leader of its own process group (a script and whatever it starts):
/// dropping the guard kills the whole group, so a failed test leaves no process behind (and
/// none holding the test's output pipe open).
pub struct Group(Child);

impl Group {
    /// Spawn `cmd` in a new process group.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Group> {
        use std::os::unix::process::CommandExt;
        Ok(Group(cmd.process_group(0).spawn()?))
    }
}

impl std::ops::Deref for Group {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Group {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The group id is the leader's PID; the group outlives its leader while members run.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}
