//! The admin unix socket (`--admin-socket PATH`): owner-only from the moment it can be
//! reached, whatever the umask. It is bound inside a fresh 0700 directory next to PATH, set to
//! 0600 there, and only then renamed into place.

use std::fs::DirBuilder;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use tokio::net::UnixListener;

/// Bind `path` mode 0600. A socket left there by a sidecar that is gone is replaced; one a
/// live process still answers on, or any other kind of file, is an error.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                anyhow::bail!("--admin-socket {shown}: another process is serving on it");
            }
        }
        Ok(_) => anyhow::bail!("--admin-socket {shown}: exists and is not a socket"),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("--admin-socket {shown}")),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Short: a socket path has a limit of about 100 bytes.
    let private = parent.join(format!(".lucid-proxy-{}", std::process::id()));
    DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("--admin-socket: creating {}", private.display()))?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        anyhow::Ok(listener)
    })()
    .with_context(|| format!("--admin-socket {shown}"));
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_owner_only_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin.sock");
        let first = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(bind(&path).is_err(), "a live socket is not taken over");
        drop(first);
        let _second = bind(&path).expect("a stale socket is replaced");
        let entries = std::fs::read_dir(dir.path()).expect("ls").count();
        assert_eq!(entries, 1, "no staging directory left behind");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").expect("write");
        assert!(bind(&file).is_err(), "a regular file is never replaced");
    }
}
