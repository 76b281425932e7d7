//! The `lucid-proxy` binary: parse flags, start logging, bind the listeners, run.

use std::process::ExitCode;

use anyhow::Context;
use lucid_proxy::{run, Listeners, ProxyConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("health") {
        // `lucid-proxy health [ADMIN_ADDR]`: GET /ready on the admin port (HEALTHCHECK).
        return lucid_client::health::run_health(
            &args[1..],
            "LUCID_PROXY_ADMIN_ADDR",
            "127.0.0.1:15000",
            "/ready",
        );
    }
    let cfg = match ProxyConfig::load(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(lucid_proxy::config::ConfigError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("lucid-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    lucid_runtime::logging::init(cfg.log_format, "info");
    let mut builder = if cfg.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(usize::from(cfg.workers));
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lucid-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lucid-proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: ProxyConfig) -> anyhow::Result<()> {
    let bind = |a| async move {
        tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))
    };
    let mut upstreams = Vec::new();
    for u in &cfg.upstreams {
        upstreams.push((u.clone(), bind(u.listen).await?));
    }
    let listeners = Listeners {
        inbound: bind(cfg.inbound_addr).await?,
        outbound: bind(cfg.outbound_addr).await?,
        admin: bind(cfg.admin_addr).await?,
        admin_socket: match &cfg.admin_socket {
            Some(path) => Some(lucid_proxy::admin::socket::bind(path)?),
            None => None,
        },
        upstreams,
    };
    run(cfg, listeners, lucid_runtime::signal::shutdown()).await
}
