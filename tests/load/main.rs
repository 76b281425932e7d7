//! `lucid-grpc-load`: an open-loop load generator of unary gRPC calls over h2c, for the
//! benchmarks that compare the mesh with nginx `grpc_pass` (ghz is not packaged here).
//!
//! At `--rate R` it starts one call every 1/R s on a fixed schedule, whatever earlier calls
//! are doing, spread over `--conns` HTTP/2 connections, and measures each call's latency from
//! the moment the schedule meant to start it, so a stall cannot hide the queue behind it
//! (coordinated omission corrected, as `oha --latency-correction` and wrk2 do). `--rate 0`
//! runs closed-loop instead, `--concurrency` calls in flight at all times, for the maximum.
//! A call succeeds when the answer is 200 with `grpc-status: 0` (in its trailers or headers)
//! and the echoed message is whole. Prints one JSON object:
//! `{"ok", "failed", "p50_ms", "p99_ms", "p999_ms", "rps", "first_error"}`.
//!
//!     lucid-grpc-load --target 127.0.0.1:15002 --authority ledger.lucid.internal \
//!         --path /test.Echo/Unary --size 256 --rate 2000 --duration 10 --conns 8

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use tokio::time::Instant;

struct Args {
    target: String,
    authority: String,
    path: String,
    size: usize,
    rate: u64,
    duration: Duration,
    conns: usize,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        target: String::new(),
        authority: String::new(),
        path: "/test.Echo/Unary".into(),
        size: 256,
        rate: 0,
        duration: Duration::from_secs(10),
        conns: 4,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--target" => a.target = v()?,
            "--authority" => a.authority = v()?,
            "--path" => a.path = v()?,
            "--size" => a.size = v()?.parse()?,
            "--rate" => a.rate = v()?.parse()?,
            "--duration" => a.duration = Duration::from_secs_f64(v()?.parse()?),
            "--conns" => a.conns = v()?.parse()?,
            "--concurrency" => a.concurrency = v()?.parse()?,
            "--help" | "-h" => {
                println!("lucid-grpc-load --target HOST:PORT --authority NAME [--path P] [--size N] [--rate R|0] [--duration S] [--conns N] [--concurrency N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.target.is_empty() || a.authority.is_empty() || a.conns == 0 {
        bail!("--target, --authority and --conns > 0 are required");
    }
    Ok(a)
}

/// One gRPC frame: no compression, the length, the message.
fn frame(size: usize) -> Bytes {
    let mut f = Vec::with_capacity(5 + size);
    f.push(0);
    f.extend_from_slice(&(size as u32).to_be_bytes());
    f.extend((0..size).map(|i| (i % 251) as u8));
    Bytes::from(f)
}

#[derive(Default)]
struct Tally {
    /// Latencies of successful calls, in µs.
    ok: Vec<u64>,
    failed: u64,
    first_error: Option<String>,
}

async fn call(send: &mut SendRequest<Full<Bytes>>, a: &Args, body: &Bytes) -> anyhow::Result<()> {
    let req = Request::post(format!("http://{}{}", a.authority, a.path))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body.clone()))?;
    send.ready().await?;
    let resp = send.send_request(req).await?;
    if resp.status() != http::StatusCode::OK {
        bail!("HTTP {}", resp.status());
    }
    let head = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.as_bytes().to_vec());
    let got = resp.into_body().collect().await?;
    let status = got
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.as_bytes().to_vec())
        .or(head);
    if status.as_deref() != Some(b"0") {
        bail!(
            "grpc-status {:?}",
            status.map(|s| String::from_utf8_lossy(&s).into_owned())
        );
    }
    if got.to_bytes().len() != body.len() {
        bail!("the echo came back short");
    }
    Ok(())
}

async fn connect(a: &Args) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(&a.target).await?;
    tcp.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake(TokioIo::new(tcp))
        .await?;
    tokio::spawn(conn);
    Ok(send)
}

fn record(tally: &Mutex<Tally>, r: anyhow::Result<()>, started: Instant) {
    let mut t = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match r {
        Ok(()) => t.ok.push(started.elapsed().as_micros() as u64),
        Err(e) => {
            t.failed += 1;
            t.first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Arc::new(args()?);
    let body = frame(a.size);
    let mut conns = Vec::new();
    for _ in 0..a.conns {
        conns.push(connect(&a).await?);
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let end = start + a.duration;
    let mut tasks = Vec::new();
    if a.rate > 0 {
        let period = Duration::from_secs_f64(1.0 / a.rate as f64);
        let mut n: u64 = 0;
        loop {
            let due = start + period.mul_f64(n as f64);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due).await;
            let mut send = conns[n as usize % conns.len()].clone();
            let (a, body, tally) = (a.clone(), body.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                let r = call(&mut send, &a, &body).await;
                record(&tally, r, due);
            }));
            n += 1;
        }
    } else {
        for w in 0..a.concurrency {
            let mut send = conns[w % conns.len()].clone();
            let (a, body, tally) = (a.clone(), body.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let started = Instant::now();
                    let r = call(&mut send, &a, &body).await;
                    record(&tally, r, started);
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let took = start.elapsed().as_secs_f64();
    let mut t = tally
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    t.ok.sort_unstable();
    let pct = |p: f64| {
        if t.ok.is_empty() {
            return 0.0;
        }
        let i = ((t.ok.len() as f64 * p).ceil() as usize).clamp(1, t.ok.len()) - 1;
        t.ok[i] as f64 / 1000.0
    };
    println!(
        "{}",
        json!({
            "ok": t.ok.len(),
            "failed": t.failed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "rps": t.ok.len() as f64 / took,
            "first_error": t.first_error,
        })
    );
    if t.ok.is_empty() {
        bail!("no call succeeded");
    }
    Ok(())
}
