//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy drops them
//! before passing a message on, in both directions and on every listener. Besides the fixed
//! list, `Connection` may name any other header as connection-specific; those go too (a
//! caller naming `X-Forwarded-Client-Cert` there only removes its own, forged one: the inbound
//! side sets the real one after this runs).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Set by the caller's sidecar (`HTTP/2`) on a request its app sent over HTTP/2: requests
/// travel between the sidecars over HTTP/2 whatever the app spoke, so under
/// `--app-protocol auto` the destination's sidecar gives its app h2c only for these and
/// HTTP/1.1 otherwise (linkerd's `l5d-orig-proto`, the other way round, so a caller's sidecar
/// from before this marker still gets HTTP/1.1 apps their HTTP/1.1). Removed from what apps
/// send, and before any app sees it.
pub const ORIG_PROTO: &str = "x-lucid-orig-proto";

/// Connection-specific on every hop. `Proxy-Authorization` / `Proxy-Authenticate` are meant
/// for the proxy that asks or answers, never for the app behind it.
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    // Sent with `Upgrade: h2c` (RFC 7540 §3.2.1), meaningless past the hop it was sent on.
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Drop every hop-by-hop header from `h`. With `h2_trailers` (a request about to go out over
/// HTTP/2, where gRPC needs it) a `TE: trailers`, the one value HTTP/2 allows, is kept.
pub fn strip(h: &mut HeaderMap, h2_trailers: bool) {
    let keep_te = h2_trailers
        && h.contains_key(header::TE)
        && h.get_all(header::TE)
            .iter()
            .all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers"));
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        h.remove(name);
    }
    if keep_te {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_fixed_list_and_what_connection_names_are_dropped() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Forwarded-Client-Cert"),
            ("connection", " x-secret ,,"),
            ("x-forwarded-client-cert", "URI=forged"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-authenticate", "Basic"),
            ("upgrade", "websocket"),
            ("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "yes"),
            ("content-length", "0"),
        ]);
        strip(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x-kept"]);
    }

    #[test]
    fn te_trailers_survives_only_towards_http2() {
        let mut h = headers(&[("te", "Trailers"), ("connection", "te")]);
        strip(&mut h, true);
        assert_eq!(
            h.get("te").map(HeaderValue::as_bytes),
            Some(&b"trailers"[..])
        );
        assert!(h.get("connection").is_none());
        let mut h = headers(&[("te", "trailers, deflate")]);
        strip(&mut h, true);
        assert!(h.get("te").is_none());
        let mut h = headers(&[("te", "trailers")]);
        strip(&mut h, false);
        assert!(h.get("te").is_none());
    }
}
