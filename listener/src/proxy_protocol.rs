//! The PROXY protocol driver of a listener with `requireProxyProtocol`: before any
//! banner, the peer must be one of `proxyProtocolFrom` and must send a whole PROXY
//! header within `clientTimeout`; the header's client address then stands for the
//! peer everywhere (relay rules, trace headers, records). Anything else closes the
//! connection without a word. The parsing is [`crate::smtp::proxy_header`]'s.

use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::{io::AsyncReadExt, net::TcpStream, time::Instant};

use crate::{
    connection::Shared,
    metrics::ProxyLabels,
    smtp::proxy_header::{MAX_HEADER, ProxyHeader, parse_proxy_header},
};

/// Read size while waiting for the header (a v1 header is at most 107 octets).
const CHUNK: usize = 512;

/// Checks the peer and reads its header. Returns the client address to use and any
/// octets that came after the header, or `None` when the connection must be closed.
pub async fn accept_header(
    socket: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<(SocketAddr, BytesMut)> {
    let config = &shared.ctx.config;
    if !config
        .proxy_protocol_from
        .iter()
        .any(|net| net.contains(peer.ip()))
    {
        count(shared, "untrusted");
        tracing::info!(%peer, "connection from a peer outside proxyProtocolFrom closed");
        return None;
    }
    let deadline = Instant::now() + config.client_timeout.get();
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        match parse_proxy_header(&buf) {
            ProxyHeader::Complete {
                len,
                version,
                addresses,
            } => {
                buf.advance(len);
                let client = match addresses {
                    Some(a) => {
                        count(shared, if version == 1 { "v1" } else { "v2" });
                        SocketAddr::new(a.source.ip().to_canonical(), a.source.port())
                    }
                    None => {
                        count(shared, "local");
                        peer
                    }
                };
                tracing::debug!(%peer, %client, version, "PROXY header accepted");
                return Some((client, buf));
            }
            ProxyHeader::Invalid(why) => {
                count(shared, "malformed");
                tracing::info!(%peer, %why, "connection without a valid PROXY header closed");
                return None;
            }
            ProxyHeader::Incomplete => {}
        }
        let want = CHUNK.min(MAX_HEADER - buf.len()).max(1);
        buf.reserve(want);
        let mut limited = (&mut *socket).take(want as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => {
                count(shared, "missing");
                return None;
            }
            Err(_) => {
                count(shared, "missing");
                shared.metrics.deadline("proxy");
                tracing::info!(%peer, "no PROXY header within clientTimeout; closed");
                return None;
            }
        }
    }
}

fn count(shared: &Shared, outcome: &'static str) {
    shared
        .metrics
        .proxy_headers
        .get_or_create(&ProxyLabels {
            listener: shared.ctx.config.listen.to_string(),
            outcome,
        })
        .inc();
}
