//! Stages 1 and 2, normalise and authorise: the path the app will act on (Envoy's
//! normalisation, `path.rs`; 400 `LUCID_ERR_1103` when it cannot be done safely), then the
//! intentions decide on the caller's SPIFFE id, the method and that path (403
//! `LUCID_ERR_1203`).

use http::{Method, StatusCode};
use lucid_core::intention::{allowed, Caller};
use lucid_core::ErrorCode;
use lucid_tls::SpiffeId;

use super::Refused;
use crate::mesh::Policy;
use crate::reply::refuse;

/// The normalised path, or the 400 that refuses it.
pub(super) fn normalize(path: &str) -> Result<String, Refused> {
    crate::path::normalize(path).map_err(|e| {
        Box::new(refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::RoutingInvalid,
            &format!("{e}: {path}"),
        ))
    })
}

/// May `peer` send `method path` to `me`? The 403 when not.
pub(super) fn authorize(
    policy: &Policy,
    peer: &SpiffeId,
    me: &SpiffeId,
    method: &Method,
    path: &str,
) -> Result<(), Refused> {
    let (ok, _) = allowed(
        &policy.intentions,
        Caller {
            service: &peer.service,
            plane: Some(&peer.plane),
        },
        Caller {
            service: &me.service,
            plane: Some(&me.plane),
        },
        Some((method.as_str(), path)),
        policy.default,
    );
    if ok {
        Ok(())
    } else {
        Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            ErrorCode::SecurityPolicyViolation,
            &format!("{peer} may not {method} {path}"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use lucid_core::intention::{Action, Intention, Party, Permission};

    use super::*;

    fn id(plane: &str, service: &str) -> SpiffeId {
        SpiffeId {
            plane: plane.into(),
            service: service.into(),
        }
    }

    fn code(r: &Refused) -> &str {
        r.headers()["x-lucid-error"].to_str().unwrap()
    }

    #[test]
    fn a_path_that_cannot_be_normalised_safely_is_refused() {
        assert_eq!(normalize("/a//./b/../c").unwrap(), "/a/c");
        let r = normalize("/a%2Fb").unwrap_err();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(code(&r), "LUCID_ERR_1103");
    }

    #[test]
    fn intentions_decide_on_the_normalised_path() {
        let (web, api) = (id("default", "web"), id("default", "api"));
        let policy = Policy {
            intentions: vec![Intention {
                id: "1".into(),
                source: Party::Service("web".into()),
                destination: Party::Service("api".into()),
                action: None,
                permissions: vec![Permission {
                    action: Action::Allow,
                    methods: vec!["GET".into()],
                    path_exact: None,
                    path_prefix: Some("/public".into()),
                }],
                description: String::new(),
            }],
            ..Policy::default()
        };
        assert!(authorize(&policy, &web, &api, &Method::GET, "/public/x").is_ok());
        let r = authorize(&policy, &web, &api, &Method::GET, "/admin").unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(code(&r), "LUCID_ERR_1203");
        assert!(authorize(&policy, &web, &api, &Method::POST, "/public/x").is_err());
        let stranger = id("default", "db");
        assert!(
            authorize(&policy, &stranger, &api, &Method::GET, "/public/x").is_err(),
            "no intention and the default (deny until told) refuses"
        );
    }
}
