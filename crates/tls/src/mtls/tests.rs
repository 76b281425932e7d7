//! Real TLS handshakes over an in-memory duplex pipe.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::ca::{CaMaterial, Signer};

const NOW: i64 = 1_790_000_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(NOW, |d| d.as_secs() as i64)
}

struct Pki {
    signer: Signer,
    root: String,
}

impl Pki {
    fn new() -> Pki {
        let m = CaMaterial::generate(now()).unwrap();
        Pki {
            signer: Signer::new(&m).unwrap(),
            root: m.cert_pem,
        }
    }

    fn identity(&self, plane: &str, service: &str) -> (Arc<Identity>, String) {
        let leaf = self
            .signer
            .issue(
                &SpiffeId::new(plane, service).unwrap(),
                time::Duration::hours(1),
                now(),
            )
            .unwrap();
        let id = Identity::from_pem(&leaf.cert_pem, leaf.key_pem.as_deref().unwrap()).unwrap();
        (Arc::new(id), leaf.serial)
    }
}

/// One handshake plus a byte each way; the server's view of the client, or the first error.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(SpiffeId, Option<Vec<u8>>), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let srv = tokio::spawn(async move {
        let mut s = TlsAcceptor::from(server)
            .accept(a)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let peer = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned());
        let alpn = s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        s.write_all(&buf)
            .await
            .map_err(|e| format!("server write: {e}"))?;
        s.flush().await.map_err(|e| e.to_string())?;
        let peer = peer.ok_or("no client certificate")?;
        Ok::<_, String>((peer_identity(&peer).ok_or("no identity")?.id, alpn))
    });
    let cli = async move {
        let mut c = TlsConnector::from(client)
            .connect(name, b)
            .await
            .map_err(|e| format!("client: {e}"))?;
        c.write_all(b"x")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        let mut buf = [0u8; 1];
        c.read_exact(&mut buf)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        Ok::<_, String>(())
    };
    let (c, s) = tokio::join!(cli, srv);
    let s = s.map_err(|e| e.to_string())?;
    match (c, s) {
        (Ok(()), Ok(v)) => Ok(v),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

#[tokio::test]
async fn mutual_tls_with_identities_and_h2() {
    let pki = Pki::new();
    let (web, _) = pki.identity("ops", "web");
    let (api, _) = pki.identity("ops", "api");
    let revoked = Revoked::default();
    let server = server_config(web, &pki.root, revoked.clone()).unwrap();
    let client = client_config(api, &pki.root, "web", revoked).unwrap();
    let (peer, alpn) = handshake(server, client, "web.lucid.internal")
        .await
        .unwrap();
    assert_eq!(
        peer.to_string(),
        "spiffe://lucid.internal/plane/ops/svc/api"
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn a_client_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let (web, _) = pki.identity("ops", "web");
    let (intruder, _) = other.identity("ops", "api");
    let server = server_config(web, &pki.root, Revoked::default()).unwrap();
    // The intruder trusts our root, so only the server's check can stop it.
    let client = client_config(intruder, &pki.root, "web", Revoked::default()).unwrap();
    let e = handshake(server, client, "web.lucid.internal")
        .await
        .unwrap_err();
    assert!(e.contains("server") || e.contains("client"), "{e}");
}

#[tokio::test]
async fn a_revoked_client_is_refused() {
    let pki = Pki::new();
    let (web, _) = pki.identity("ops", "web");
    let (api, serial) = pki.identity("ops", "api");
    let revoked = Revoked::default();
    let server = server_config(web, &pki.root, revoked.clone()).unwrap();
    let client = client_config(api, &pki.root, "web", Revoked::default()).unwrap();
    assert!(
        handshake(server.clone(), client.clone(), "web.lucid.internal")
            .await
            .is_ok()
    );
    revoked.replace([serial]);
    // In TLS 1.3 the client finishes first and learns of the refusal from the server's alert.
    let e = handshake(server, client, "web.lucid.internal")
        .await
        .unwrap_err();
    assert!(e.contains("server") || e.contains("fatal alert"), "{e}");
}

#[tokio::test]
async fn a_peer_that_is_not_the_intended_service_is_refused() {
    let pki = Pki::new();
    // A real mesh member, but not the one we meant to reach.
    let (db, _) = pki.identity("chain", "db");
    let (api, _) = pki.identity("ops", "api");
    let server = server_config(db, &pki.root, Revoked::default()).unwrap();
    let client = client_config(api.clone(), &pki.root, "web", Revoked::default()).unwrap();
    let e = handshake(server.clone(), client, "db.lucid.internal")
        .await
        .unwrap_err();
    assert!(e.contains("not the service web"), "{e}");
    // Asking for `web` by name does not help either: the certificate does not name it.
    let client = client_config(api, &pki.root, "web", Revoked::default()).unwrap();
    assert!(handshake(server, client, "web.lucid.internal")
        .await
        .is_err());
}

#[tokio::test]
async fn rotation_takes_effect_for_new_handshakes() {
    let pki = Pki::new();
    let (web, _) = pki.identity("ops", "web");
    let (api, first) = pki.identity("ops", "api");
    let server = server_config(web, &pki.root, Revoked::default()).unwrap();
    let client = client_config(api.clone(), &pki.root, "web", Revoked::default()).unwrap();
    assert_eq!(api.serial().as_deref(), Some(first.as_str()));
    let next = pki
        .signer
        .issue(
            &SpiffeId::new("ops", "api").unwrap(),
            time::Duration::hours(1),
            now(),
        )
        .unwrap();
    api.rotate(&next.cert_pem, next.key_pem.as_deref().unwrap())
        .unwrap();
    assert_eq!(api.serial().as_deref(), Some(next.serial.as_str()));
    assert!(
        handshake(server, client, "web.lucid.internal")
            .await
            .is_ok(),
        "same configs, new cert"
    );
    // A key that does not match the certificate is refused, and the old one stays.
    let other = pki
        .signer
        .issue(
            &SpiffeId::new("ops", "api").unwrap(),
            time::Duration::hours(1),
            now(),
        )
        .unwrap();
    assert!(api
        .rotate(&next.cert_pem, other.key_pem.as_deref().unwrap())
        .is_err());
    assert_eq!(api.serial().as_deref(), Some(next.serial.as_str()));
}
