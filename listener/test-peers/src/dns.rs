//! A DNS server on 127.0.0.1 (UDP) answering from a fixed table, over the real wire
//! format (hickory-proto): records, NXDOMAIN or SERVFAIL per name. Names in the table
//! without the asked type get an empty NOERROR answer; names not in it get NXDOMAIN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What a name holds.
#[derive(Clone, Debug)]
pub enum Entry {
    /// These records (MX as (preference, exchange), exchange "." for a null MX).
    Records {
        /// MX records.
        mx: Vec<(u16, String)>,
        /// A and AAAA addresses.
        addresses: Vec<IpAddr>,
    },
    /// Answer SERVFAIL to every query.
    ServFail,
}

/// The running server; stops when dropped.
pub struct DnsServer {
    /// Where it listens (UDP).
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    /// Serves `zone` (names without the trailing dot, lowercase).
    pub async fn start(zone: Vec<(&str, Entry)>) -> Self {
        let zone: Arc<HashMap<String, Entry>> = Arc::new(
            zone.into_iter()
                .map(|(name, entry)| (format!("{name}."), entry))
                .collect(),
        );
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind UDP 127.0.0.1:0");
        let addr = socket.local_addr().expect("a local address");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let response = answer(&zone, &query);
                let bytes = response.to_vec().expect("an encodable response");
                let _ = socket.send_to(&bytes, from).await;
            }
        });
        Self { addr, task }
    }
}

fn answer(zone: &HashMap<String, Entry>, query: &Message) -> Message {
    let mut response = Message::new(query.id, MessageType::Response, OpCode::Query);
    response.metadata.recursion_desired = query.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let Some(question) = query.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    response.add_query(question.clone());
    let name = question.name().to_ascii().to_ascii_lowercase();
    match zone.get(&name) {
        None => response.metadata.response_code = ResponseCode::NXDomain,
        Some(Entry::ServFail) => response.metadata.response_code = ResponseCode::ServFail,
        Some(Entry::Records { mx, addresses }) => {
            let owner = question.name().clone();
            let records: Vec<RData> = match question.query_type() {
                RecordType::MX => mx
                    .iter()
                    .map(|(preference, exchange)| {
                        let exchange = if exchange == "." {
                            Name::root()
                        } else {
                            Name::from_ascii(format!("{exchange}.")).expect("an MX host name")
                        };
                        RData::MX(MX::new(*preference, exchange))
                    })
                    .collect(),
                RecordType::A => addresses
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(RData::A(A(*v4))),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
                RecordType::AAAA => addresses
                    .iter()
                    .filter_map(|ip| match ip {
                        IpAddr::V6(v6) => Some(RData::AAAA(AAAA(*v6))),
                        IpAddr::V4(_) => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for data in records {
                response.add_answer(Record::from_rdata(owner.clone(), 60, data));
            }
        }
    }
    response
}

/// MX records only.
pub fn mx(records: &[(u16, &str)]) -> Entry {
    Entry::Records {
        mx: records.iter().map(|(p, h)| (*p, h.to_string())).collect(),
        addresses: Vec::new(),
    }
}

/// Addresses only.
pub fn addresses(ips: &[&str]) -> Entry {
    Entry::Records {
        mx: Vec::new(),
        addresses: ips.iter().map(|ip| ip.parse().expect("an IP")).collect(),
    }
}
