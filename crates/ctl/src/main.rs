//! `lucidctl`: the operator CLI for a Lucid Mesh registry cluster (DESIGN §3). Finds the
//! registry from `--registry`, `LUCID_REGISTRY`, `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500;
//! prints tables, or JSON with `--json`; exits non-zero with the server's reason on error.

mod cli;
mod commands;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // rustls needs a process-wide provider before any configuration is built (DESIGN §2).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lucidctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lucidctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
