//! `--dns-recursor`: names outside our zones are relayed to one upstream resolver, over UDP
//! first and over TCP when the upstream truncates its answer.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_server::server::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why the upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    #[error("recursor {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("recursor {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("recursor {0} sent an undecodable answer: {1}")]
    Decode(SocketAddr, String),
}

/// Relays queries to one upstream.
#[derive(Debug, Clone)]
pub struct Forwarder {
    upstream: SocketAddr,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstream: SocketAddr, timeout: Duration) -> Forwarder {
        Forwarder { upstream, timeout }
    }

    /// Send the request as received and return the upstream's answer.
    pub async fn exchange(&self, request: &Request) -> Result<Message, ForwardError> {
        let raw = request.as_slice();
        let id = request.metadata.id;
        let answer = tokio::time::timeout(self.timeout, self.udp(raw, id))
            .await
            .map_err(|_| ForwardError::Timeout(self.upstream, self.timeout))??;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        tokio::time::timeout(self.timeout, self.tcp(raw))
            .await
            .map_err(|_| ForwardError::Timeout(self.upstream, self.timeout))?
    }

    async fn udp(&self, raw: &[u8], id: u16) -> Result<Message, ForwardError> {
        let io = |e| ForwardError::Io(self.upstream, e);
        let local: SocketAddr = if self.upstream.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(io)?;
        sock.connect(self.upstream).await.map_err(io)?;
        sock.send(raw).await.map_err(io)?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).await.map_err(io)?;
            // A stray datagram with another id is not our answer; keep waiting.
            if let Ok(m) = Message::from_vec(&buf[..n]) {
                if m.metadata.id == id {
                    return Ok(m);
                }
            }
        }
    }

    async fn tcp(&self, raw: &[u8]) -> Result<Message, ForwardError> {
        let io = |e| ForwardError::Io(self.upstream, e);
        let mut s = TcpStream::connect(self.upstream).await.map_err(io)?;
        let len = u16::try_from(raw.len()).map_err(|_| {
            ForwardError::Io(self.upstream, std::io::ErrorKind::InvalidInput.into())
        })?;
        let mut framed = Vec::with_capacity(raw.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(raw);
        s.write_all(&framed).await.map_err(io)?;
        let n = s.read_u16().await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(n)];
        s.read_exact(&mut buf).await.map_err(io)?;
        Message::from_vec(&buf).map_err(|e| ForwardError::Decode(self.upstream, e.to_string()))
    }
}
