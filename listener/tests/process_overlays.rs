//! KumoMTA's `peer` and `via` overlays against the real binary: clients bound to
//! different loopback source addresses (127.0.0.2 and 127.0.0.3) get a different
//! banner hostname and relay permission from the `peer` entry that holds their address,
//! and a connection to 127.0.0.4 gets the `via` entry's banner, applied after `peer`.

mod support_process;

use std::net::{IpAddr, SocketAddr};

use support_process::{HOST, Process, Setup, WAIT, Workdir, free_addrs, spool_list};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpSocket,
};

/// A client session from `source` to `server`: the banner, then the replies to EHLO,
/// MAIL and RCPT (each reply's last line), and QUIT.
async fn session(source: &str, server: SocketAddr) -> (String, Vec<String>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    let stream = socket.connect(server).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async || loop {
        let line = lines.next_line().await.unwrap().expect("a reply line");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    let banner = reply().await;
    let mut replies = Vec::new();
    for command in [
        "EHLO client.test",
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<b@elsewhere.example>",
    ] {
        write
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .unwrap();
        replies.push(reply().await);
    }
    write.write_all(b"QUIT\r\n").await.unwrap();
    reply().await;
    (banner, replies)
}

#[tokio::test]
async fn peer_and_via_entries_change_the_session_by_address() {
    let work = Workdir::new();
    let [admin, smtp] = free_addrs();
    let port = smtp.port();
    let spool = work.spool();
    let records = work.path().join("overlays.records.jsonl");
    // Every IPv4 address, so that 127.0.0.4 reaches the listener too.
    let yaml = format!(
        r#"listeners:
  - listen: "0.0.0.0:{port}"
    hostname: {HOST}
    relayHosts: []
    peer:
      127.0.0.2: {{hostname: two.peer.test, relayHosts: ["127.0.0.2"]}}
      127.0.0.0/8: {{banner: "loopback peer"}}
    via:
      127.0.0.4: {{banner: "via four"}}
spool:
  path: {spool:?}
log: {records:?}
admin:
  listen: "{admin}"
"#
    );
    let setup = Setup {
        config: work.write("overlays.yaml", &yaml),
        smtp: SocketAddr::from(([127, 0, 0, 1], port)),
        admin,
        spool,
        records,
    };
    let mut process = Process::start(&work, &setup, "overlays").await;

    let (banner, replies) = session("127.0.0.2", setup.smtp).await;
    assert!(banner.starts_with("220 two.peer.test "), "{banner}");
    assert!(replies[0].starts_with("250 "), "{replies:?}");
    assert!(
        replies[2].starts_with("250 2.1.5"),
        "127.0.0.2 may relay: {replies:?}"
    );

    let (banner, replies) = session("127.0.0.3", setup.smtp).await;
    assert_eq!(banner, format!("220 {HOST} loopback peer"));
    assert!(
        replies[2].starts_with("550 5.7.1"),
        "127.0.0.3 may not relay: {replies:?}"
    );

    // via after peer: the /8 peer entry's banner is replaced by the via entry's.
    let via = SocketAddr::from(([127, 0, 0, 4], port));
    let (banner, replies) = session("127.0.0.3", via).await;
    assert_eq!(banner, format!("220 {HOST} via four"));
    assert!(replies[2].starts_with("550 5.7.1"), "{replies:?}");

    process.sigterm();
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    assert!(spool_list(&setup.spool).is_empty(), "no message was sent");
}
