//! `<binary> health [ADDR]`: the container `HEALTHCHECK` both server binaries answer with no
//! shell or curl in the image. One GET with a short timeout; exit 0 on a 2xx answer.

use std::process::ExitCode;
use std::time::Duration;

/// Probe `http://<addr><path>`; `addr` from the first argument after `health`, else the
/// environment variable `env`, else `default`. Prints why it failed.
pub fn run_health(args: &[String], env: &str, default: &str, path: &str) -> ExitCode {
    let addr = args
        .first()
        .cloned()
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_owned());
    // A wildcard listen address is probed on loopback.
    let addr = addr
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let base = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("health: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = crate::HttpClient::new(Duration::from_secs(3));
    match rt.block_on(client.send(http::Method::GET, &url, &[], "")) {
        Ok(r) if r.status.is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("health: {url}: {}", r.status);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("health: {e}");
            ExitCode::FAILURE
        }
    }
}
