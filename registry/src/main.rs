//! The `lucid-registry` binary: parse configuration, start logging, bind the listeners, run.

use std::process::ExitCode;

use anyhow::Context;
use lucid_registry::config::{Args, ConfigError, RegistryConfig};
use lucid_registry::{run, Listeners};

fn main() -> ExitCode {
    // rustls needs a process-wide provider before any configuration is built (DESIGN §2).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("health") {
        // `lucid-registry health [ADDR]`: GET /health on this node (the image's HEALTHCHECK).
        return lucid_client::health::run_health(
            &args[1..],
            "LUCID_HTTP_ADDR",
            "127.0.0.1:8500",
            "/health",
        );
    }
    let cfg = match Args::load(std::env::args_os().collect()).and_then(Args::resolve) {
        Ok(c) => c,
        Err(ConfigError::Load(lucid_runtime::config::ConfigError::Args(e))) => e.exit(),
        Err(e) => {
            eprintln!("lucid-registry: {e}");
            return ExitCode::from(2);
        }
    };
    lucid_runtime::logging::init(
        cfg.log_format,
        "info,openraft=warn,sled=warn,hickory_server=warn,hickory_proto=warn,hickory_net=warn",
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lucid-registry: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lucid-registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: RegistryConfig) -> anyhow::Result<()> {
    let http = tokio::net::TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", cfg.http_addr))?;
    let raft = tokio::net::TcpListener::bind(cfg.raft_addr)
        .await
        .with_context(|| format!("binding the Raft listener on {}", cfg.raft_addr))?;
    let (dns_udp, dns_tcp) = lucid_dns::bind(cfg.dns_addr)
        .await
        .with_context(|| format!("binding the DNS listeners on {}", cfg.dns_addr))?;
    let https = match cfg.https_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the HTTPS listener on {a}"))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        http,
        raft,
        dns_udp,
        dns_tcp,
        https,
    };
    run(cfg, listeners, lucid_runtime::signal::shutdown()).await?;
    Ok(())
}
