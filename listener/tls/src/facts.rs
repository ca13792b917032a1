//! What was negotiated, for the `Received` header and the reception log.

use rustls::ServerConnection;

/// The negotiated protocol and cipher suite, named as rustls (and KumoMTA) print them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFacts {
    /// The protocol version, e.g. `TLSv1_3` or `TLSv1_2`.
    pub protocol: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsFacts {
    /// The facts of a connection whose handshake has completed; `None` before that.
    pub fn of(conn: &ServerConnection) -> Option<Self> {
        let protocol = conn.protocol_version()?;
        let suite = conn.negotiated_cipher_suite()?;
        Some(Self {
            protocol: format!("{protocol:?}"),
            cipher: format!("{:?}", suite.suite()),
        })
    }
}
