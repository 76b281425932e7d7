//! Stage 1, route: the destination service of an app's request, from an absolute-form URI
//! (`HTTP_PROXY`) or the Host header `<service>.lucid.internal[:port]`.

use http::Request;

/// `<service>` from `web.lucid.internal[:port]`.
pub(super) fn service_of(host: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host.strip_suffix(".lucid.internal")
        .map(str::to_owned)
        .filter(|s| lucid_core::catalog::valid_service_name(s))
}

/// The destination of `req`, if it names one.
pub(super) fn destination<B>(req: &Request<B>) -> Option<String> {
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })?;
    service_of(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(service_of("web.lucid.internal").as_deref(), Some("web"));
        assert_eq!(
            service_of("web.lucid.internal:8080").as_deref(),
            Some("web")
        );
        assert_eq!(service_of("example.com"), None);
        assert_eq!(service_of("Bad_Name.lucid.internal"), None);
    }

    #[test]
    fn the_absolute_uri_wins_over_the_host_header() {
        let req = Request::get("http://api.lucid.internal/x")
            .header("host", "web.lucid.internal")
            .body(())
            .unwrap();
        assert_eq!(destination(&req).as_deref(), Some("api"));
        let req = Request::get("/x")
            .header("host", "web.lucid.internal:80")
            .body(())
            .unwrap();
        assert_eq!(destination(&req).as_deref(), Some("web"));
        let req = Request::get("/x").body(()).unwrap();
        assert_eq!(destination(&req), None);
    }
}
