//! lucid-dns: the DNS responder of the registry (DESIGN §7). A hickory-server request handler
//! answers `*.lucid.internal` and Consul's `*.service.consul` from an immutable [`Zone`] that
//! the registry replaces, one service at a time, whenever the catalog changes.

mod answer;
mod forward;
mod handler;
mod names;
mod policy;
mod zone;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use answer::{resolve, Answer};
pub use forward::{ForwardError, Forwarder};
pub use handler::{DnsHandler, MAX_UDP_PAYLOAD};
pub use ipnet::IpNet;
pub use names::{classify, Lookup, Origin};
pub use policy::{private_networks, Policy, Rate, Rrl, LOOPBACK_NETWORKS};
pub use zone::{
    Endpoint, InstanceChange, ServiceInput, ServiceSet, Zone, ZoneConfig, ZoneError, ZoneHandle,
};

/// Re-exported so callers (tests, the fuzz target) use the same hickory types.
pub use hickory_proto as proto;
pub use hickory_server as server;

/// How long a TCP client may sit idle between queries before we close the connection.
const TCP_IDLE: Duration = Duration::from_secs(5);

/// Receive buffer asked for on the UDP socket (the kernel caps it at `net.core.rmem_max`). The
/// default (about 200 KiB, a few hundred queries) overflows during a scheduling hiccup of a
/// few milliseconds at tens of thousands of queries per second.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Bind DNS over UDP and TCP on one port. With port 0, find a port free for both.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        let udp = bind_udp(addr)?;
        let tcp = TcpListener::bind(addr).await?;
        return Ok((udp, tcp));
    }
    let mut last = None;
    for _ in 0..32 {
        let udp = bind_udp(addr)?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()))
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, it only drops sooner under a burst.
    let _ = sock.set_recv_buffer_size(UDP_RECV_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

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
