//! lucid-dns: the DNS responder of the registry (DESIGN §7). A hickory-server request handler
//! answers `*.lucid.internal` and Consul's `*.service.consul` from an immutable [`Zone`] that
//! the registry replaces, one service at a time, whenever the catalog changes.

mod answer;
mod forward;
mod handler;
mod names;
mod zone;

use std::future::Future;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use answer::{resolve, Answer};
pub use forward::{ForwardError, Forwarder};
pub use handler::{DnsHandler, MAX_UDP_PAYLOAD};
pub use names::{classify, Lookup, Origin};
pub use zone::{Endpoint, ServiceInput, ServiceSet, Zone, ZoneConfig, ZoneError, ZoneHandle};

/// Re-exported so callers (tests, the fuzz target) use the same hickory types.
pub use hickory_proto as proto;
pub use hickory_server as server;

/// How long a TCP client may sit idle between queries before we close the connection.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Serve `handler` on the bound sockets until `shutdown` resolves.
pub async fn serve(
    handler: DnsHandler,
    udp: UdpSocket,
    tcp: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), std::io::Error> {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE, 64);
    let token = server.shutdown_token().clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    server
        .block_until_done()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}
