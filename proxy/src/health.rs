//! The app's health, probed locally by the kind `--health-check` names: `http` (a GET of
//! `--health-path`, 2xx healthy), `grpc` (`grpc.health.v1.Health/Check` over h2c, healthy when
//! the answer is `SERVING` with `grpc-status` 0), `tcp` (the app port takes a connection), or
//! `none` (healthy while the sidecar itself is); unset, `http`, or `tcp` for a `tcp` service.
//! The sidecar reports the result through the instance's TTL check.

use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::config::{AppProtocol, HealthCheck, ProxyConfig};

/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Is the app healthy now? `protocol` is the service's (for the default kind).
pub async fn probe(cfg: &ProxyConfig, protocol: AppProtocol) -> bool {
    let port = cfg.app_port;
    let kind = cfg.health_check.unwrap_or(match protocol {
        AppProtocol::Tcp => HealthCheck::Tcp,
        _ => HealthCheck::Http,
    });
    match kind {
        HealthCheck::None => true,
        HealthCheck::Tcp => matches!(
            tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await,
            Ok(Ok(_))
        ),
        HealthCheck::Http => {
            let url = format!("http://127.0.0.1:{port}{}", cfg.health_path);
            lucid_client::HttpClient::new(PROBE_TIMEOUT)
                .send(Method::GET, &url, &[], "")
                .await
                .is_ok_and(|r| r.status.is_success())
        }
        HealthCheck::Grpc => {
            match tokio::time::timeout(PROBE_TIMEOUT, grpc_check(port, &cfg.health_grpc_service))
                .await
            {
                Ok(Ok(serving)) => serving,
                Ok(Err(e)) => {
                    tracing::debug!(error = %format!("{e:#}"), "gRPC health check failed");
                    false
                }
                Err(_) => false,
            }
        }
    }
}

/// `HealthCheckRequest { service = 1 }` in a gRPC frame (no compression, length prefix).
fn check_request(service: &str) -> Bytes {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        let mut n = service.len();
        while n >= 0x80 {
            msg.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        msg.push(n as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(5 + msg.len());
    frame.push(0);
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    Bytes::from(frame)
}

/// Is `HealthCheckResponse { status = 1 }` (`SERVING`) in this gRPC message body?
fn serving(mut body: Bytes) -> bool {
    if body.len() < 5 || body[0] != 0 {
        return false;
    }
    body.advance(1);
    let len = body.get_u32() as usize;
    let msg = body.slice(..len.min(body.len()));
    // The one field: tag 0x08 (field 1, varint), value 1. Unknown fields are skipped over.
    let mut i = 0;
    while i < msg.len() {
        let tag = msg[i];
        i += 1;
        match tag {
            0x08 => return msg.get(i) == Some(&1),
            t if t & 0x07 == 0 => {
                while msg.get(i).is_some_and(|b| b & 0x80 != 0) {
                    i += 1;
                }
                i += 1;
            }
            t if t & 0x07 == 2 => {
                let n = msg.get(i).copied().unwrap_or(0) as usize;
                i += 1 + n;
            }
            _ => return false,
        }
    }
    false
}

async fn grpc_check(port: u16, service: &str) -> anyhow::Result<bool> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = Request::post(format!(
        "http://127.0.0.1:{port}/grpc.health.v1.Health/Check"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Full::new(check_request(service)))?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        return Ok(false);
    }
    let head_status = crate::grpc::status(resp.headers());
    let collected = resp.into_body().collect().await?;
    let status = collected
        .trailers()
        .and_then(crate::grpc::status)
        .or(head_status);
    Ok(status == Some(lucid_core::grpc::OK) && serving(collected.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_request_and_the_serving_answer() {
        assert_eq!(&check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &check_request("ledger")[..],
            &[0, 0, 0, 0, 8, 0x0a, 6, b'l', b'e', b'd', b'g', b'e', b'r']
        );
        assert!(serving(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1])));
        assert!(
            !serving(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 2])),
            "NOT_SERVING"
        );
        assert!(
            !serving(Bytes::from_static(&[0, 0, 0, 0, 0])),
            "UNKNOWN (0) is omitted"
        );
        assert!(
            !serving(Bytes::from_static(&[1, 0, 0, 0, 2, 0x08, 1])),
            "compressed"
        );
    }
}
