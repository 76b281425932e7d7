//! Who may use the admin port's write endpoints (`POST /drain`): a caller over the unix socket
//! (`--admin-socket`, whose 0600 mode is the credential) or one presenting `--admin-token`
//! over TCP; with neither configured, nobody (SIGTERM still drains). Whatever the credential,
//! never a browser: a page on any site can send a simple POST to 127.0.0.1, and a browser
//! marks what it sends with `Origin` or `Sec-Fetch-*`, which other clients do not send.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use lucid_core::ErrorCode;

use crate::reply::refuse;

/// The write credential of one admin listener.
#[derive(Clone)]
pub struct Gate {
    /// SHA-256 (hex) of `--admin-token`: compared digest to digest, so the comparison takes
    /// the same time whatever the token's length or the position of the first difference.
    token: Option<Arc<str>>,
    /// Served on the owner-only unix socket.
    socket: bool,
}

// === impl Gate ===

impl Gate {
    pub fn new(token: Option<&str>, socket: bool) -> Gate {
        Gate {
            token: token.map(|t| Arc::from(lucid_tls::sha256_hex(t.as_bytes()))),
            socket,
        }
    }

    /// Why `headers` may not write, if they may not.
    fn refusal(&self, headers: &HeaderMap) -> Option<&'static str> {
        if from_browser(headers) {
            return Some("admin writes are refused to browsers (Origin or Sec-Fetch-* present)");
        }
        if self.socket {
            return None;
        }
        let Some(want) = &self.token else {
            return Some(
                "admin writes over TCP need --admin-token (or use --admin-socket); SIGTERM also drains",
            );
        };
        let presented = bearer(headers).into_iter().chain(
            headers
                .get_all("x-lucid-admin-token")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let mut ok = false;
        for t in presented {
            ok |= same(
                lucid_tls::sha256_hex(t.as_bytes()).as_bytes(),
                want.as_bytes(),
            );
        }
        (!ok).then_some(
            "admin writes need the admin token (Authorization: Bearer or X-Lucid-Admin-Token)",
        )
    }
}

/// `Origin` at all, `Sec-Fetch-Site` other than `none` (the user typed the URL), or a
/// `Sec-Fetch-Mode` that only pages use.
fn from_browser(h: &HeaderMap) -> bool {
    let fetch = |name: &str| h.get_all(name).iter().map(|v| v.as_bytes().trim_ascii());
    h.contains_key(http::header::ORIGIN)
        || fetch("sec-fetch-site").any(|v| !v.eq_ignore_ascii_case(b"none"))
        || fetch("sec-fetch-mode").any(|v| {
            [&b"cors"[..], b"no-cors", b"navigate"]
                .iter()
                .any(|m| v.eq_ignore_ascii_case(m))
        })
}

/// The token of every `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(h: &HeaderMap) -> Vec<&str> {
    h.get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
        .collect()
}

/// Equal, looking at every byte whatever differs (both are digests of one length).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware on the write routes: 403 `LUCID_ERR_1203` unless the gate lets the request in.
pub async fn check(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    match gate.refusal(req.headers()) {
        Some(why) => {
            tracing::warn!(path = %req.uri().path(), "admin write refused: {why}");
            refuse(
                StatusCode::FORBIDDEN,
                ErrorCode::SecurityPolicyViolation,
                why,
            )
            .into_response()
        }
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, http::HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn tokens_sockets_and_browsers() {
        let tcp = Gate::new(Some("s3cret"), false);
        assert!(tcp
            .refusal(&h(&[("authorization", "Bearer s3cret")]))
            .is_none());
        assert!(tcp
            .refusal(&h(&[("authorization", "bearer  s3cret ")]))
            .is_none());
        assert!(tcp
            .refusal(&h(&[("x-lucid-admin-token", "s3cret")]))
            .is_none());
        assert!(tcp
            .refusal(&h(&[("authorization", "Basic s3cret")]))
            .is_some());
        assert!(tcp
            .refusal(&h(&[("authorization", "Bearer s3cre")]))
            .is_some());
        assert!(tcp.refusal(&h(&[])).is_some());
        let ok = ("authorization", "Bearer s3cret");
        assert!(tcp.refusal(&h(&[ok, ("origin", "null")])).is_some());
        assert!(tcp
            .refusal(&h(&[ok, ("sec-fetch-site", "same-site")]))
            .is_some());
        assert!(tcp.refusal(&h(&[ok, ("sec-fetch-mode", "CORS")])).is_some());
        assert!(tcp.refusal(&h(&[ok, ("sec-fetch-site", "none")])).is_none());

        let nothing = Gate::new(None, false);
        assert!(nothing.refusal(&h(&[ok])).is_some());
        let socket = Gate::new(None, true);
        assert!(socket.refusal(&h(&[])).is_none());
        assert!(socket
            .refusal(&h(&[("sec-fetch-mode", "navigate")]))
            .is_some());
    }
}
