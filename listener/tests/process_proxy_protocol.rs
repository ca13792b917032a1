//! PROXY protocol from a real balancer: Debian's HAProxy, run unprivileged in the
//! foreground on loopback ports, in front of the real listener binary. One frontend
//! sends v1 headers (`send-proxy`), the other v2 (`send-proxy-v2`); both connect to the
//! listener from 127.0.0.3, the only address in `proxyProtocolFrom`. `relayHosts` holds
//! only 127.0.0.2, so relaying works exactly when the client HAProxy saw is 127.0.0.2:
//! swaks and smtplib bind their source address to pick which client HAProxy sees.
//! Direct connections (untrusted peer, or trusted peer without a header) are closed
//! before any banner.
//!
//! A missing tool fails the test when `CI` is set; otherwise the test says so loudly on
//! stderr and returns.

mod support_process;

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support_process::{
    Process, Setup, Smtp, WAIT, Workdir, contains, free_addrs, http_get, metric, require_tool,
    run_command, spool_list, spool_show,
};
use tokio::net::TcpSocket;

/// The only peer allowed to send PROXY headers: HAProxy's `source` address.
const BALANCER: &str = "127.0.0.3";
/// The only client allowed to relay.
const RELAY_CLIENT: &str = "127.0.0.2";
/// A client that may not relay.
const OTHER_CLIENT: &str = "127.0.0.4";

/// HAProxy in the foreground (`-db`), killed when dropped.
struct Haproxy {
    child: Child,
    v1: SocketAddr,
    v2: SocketAddr,
}

impl Haproxy {
    fn start(haproxy: &Path, work: &Workdir, backend: SocketAddr) -> Self {
        let [v1, v2] = free_addrs();
        let config = format!(
            "global\n\
             \x20   maxconn 64\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 5s\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             frontend v1\n\
             \x20   bind {v1}\n\
             \x20   default_backend postern_v1\n\
             frontend v2\n\
             \x20   bind {v2}\n\
             \x20   default_backend postern_v2\n\
             backend postern_v1\n\
             \x20   server postern {backend} send-proxy source {BALANCER}\n\
             backend postern_v2\n\
             \x20   server postern {backend} send-proxy-v2 source {BALANCER}\n"
        );
        let path = work.write("haproxy.cfg", &config);
        let stderr = std::fs::File::create(work.path().join("haproxy.stderr")).unwrap();
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start haproxy");
        let deadline = Instant::now() + WAIT;
        // Watched in /proc rather than by connecting: a probe connection would be
        // passed on to the listener with a header of its own.
        while !(listening(v1) && listening(v2)) {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {v1} and {v2}: {}",
                std::fs::read_to_string(work.path().join("haproxy.stderr")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, v1, v2 }
    }
}

/// Whether a socket listens on `addr` (IPv4), per `/proc/net/tcp`.
fn listening(addr: SocketAddr) -> bool {
    let IpAddr::V4(ip) = addr.ip() else {
        panic!("IPv4 only: {addr}");
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        addr.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SMTPLIB: &str = r#"
import smtplib, sys
port, source, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as s:
    s.ehlo("smtplib.test")
    code, text = s.mail("sender@example.org")
    code, text = s.rcpt(rcpt)
    if code != 250:
        print(f"RCPT {code} {text.decode()}")
        sys.exit(0)
    s.data(b"Subject: via v2\r\n\r\nsmtplib through haproxy\r\n")
    print("sent")
"#;

fn listener(work: &Workdir) -> Setup {
    work.config(
        "proxy",
        &[
            "requireProxyProtocol: true",
            &format!("proxyProtocolFrom: [\"{BALANCER}\"]"),
            &format!("relayHosts: [\"{RELAY_CLIENT}\"]"),
        ],
        &[],
    )
}

#[tokio::test]
async fn haproxy_v1_and_v2_headers_decide_who_the_client_is() {
    let (Some(haproxy), Some(swaks), Some(python)) = (
        require_tool("haproxy"),
        require_tool("swaks"),
        require_tool("python3"),
    ) else {
        return;
    };
    let work = Workdir::new();
    let setup = listener(&work);
    let mut process = Process::start(&work, &setup, "proxy").await;
    let balancer = Haproxy::start(&haproxy, &work, setup.smtp);

    // v1: swaks from 127.0.0.2 may relay, and the trace header names 127.0.0.2.
    let v1 = balancer.v1;
    let swaks_run = run_command(Command::new(&swaks).args([
        "--server",
        "127.0.0.1",
        "--port",
        &v1.port().to_string(),
        "--local-interface",
        RELAY_CLIENT,
        "--ehlo",
        "swaks.test",
        "--from",
        "sender@example.org",
        "--to",
        "rcpt@example.com",
        "--header",
        "Subject: via v1",
    ]));
    let out = String::from_utf8_lossy(&swaks_run.stdout);
    assert!(
        swaks_run.status.success(),
        "swaks: {out}\n{}",
        swaks_run.stderr
    );
    assert!(out.contains("250 2.0.0 OK id="), "{out}");

    // v1 from another client: relaying denied for the address HAProxy saw.
    let denied = run_command(Command::new(&swaks).args([
        "--server",
        "127.0.0.1",
        "--port",
        &v1.port().to_string(),
        "--local-interface",
        OTHER_CLIENT,
        "--from",
        "sender@example.org",
        "--to",
        "rcpt@example.com",
    ]));
    let out = String::from_utf8_lossy(&denied.stdout);
    assert!(
        out.contains(&format!(
            "550 5.7.1 relaying to <rcpt@example.com> denied for {OTHER_CLIENT}"
        )),
        "{out}"
    );

    // v2: smtplib, allowed from 127.0.0.2 and denied from 127.0.0.4.
    let v2 = balancer.v2.port().to_string();
    for (source, expected) in [
        (RELAY_CLIENT, "sent".to_string()),
        (
            OTHER_CLIENT,
            format!("RCPT 550 5.7.1 relaying to <rcpt@example.com> denied for {OTHER_CLIENT}"),
        ),
    ] {
        let run = run_command(Command::new(&python).args([
            "-c",
            SMTPLIB,
            &v2,
            source,
            "rcpt@example.com",
        ]));
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "smtplib: {out}\n{}", run.stderr);
        assert_eq!(out.trim(), expected);
    }

    // Direct connections: from an untrusted peer, and from the trusted address
    // without a header. Neither hears a banner.
    let mut untrusted = Smtp::connect(setup.smtp).await.unwrap();
    assert!(untrusted.closed().await, "an untrusted peer was not closed");
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(BALANCER.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(setup.smtp).await.unwrap();
    let mut no_header = Smtp::from_stream(stream);
    no_header.send(b"EHLO direct.test\r\n").await.unwrap();
    assert!(
        no_header.closed().await,
        "SMTP without a header was not closed"
    );

    // Records, spool and metrics all name the clients HAProxy saw.
    let (_, metrics) = http_get(setup.admin, "/metrics").await.unwrap();
    let count = |outcome: &str| {
        metric(
            &metrics,
            &format!(
                "postern_proxy_headers_total{{listener=\"{}\",outcome=\"{outcome}\"}}",
                setup.smtp
            ),
        )
    };
    assert_eq!(count("v1"), Some(2.0), "{metrics}");
    assert_eq!(count("v2"), Some(2.0), "{metrics}");
    assert_eq!(count("untrusted"), Some(1.0), "{metrics}");
    assert_eq!(count("malformed"), Some(1.0), "{metrics}");
    process.sigterm();
    assert_eq!(process.wait_exit(WAIT).await.code(), Some(0));
    drop(balancer);

    let spooled = spool_list(&setup.spool);
    assert_eq!(spooled.len(), 2, "{spooled:?}");
    for id in spooled.keys() {
        let data = spool_show(&setup.spool, id);
        assert!(
            contains(&data, &format!("({RELAY_CLIENT}"))
                || contains(&data, &format!("[{RELAY_CLIENT}]")),
            "{}",
            String::from_utf8_lossy(&data)
        );
        assert!(
            !contains(&data, BALANCER),
            "the balancer leaked into the message"
        );
    }
    let records = setup.records();
    let peers: Vec<&str> = records
        .iter()
        .filter_map(|r| r["peer_address"]["addr"].as_str())
        .collect();
    assert!(peers.contains(&RELAY_CLIENT), "{records:?}");
    assert!(peers.contains(&OTHER_CLIENT), "{records:?}");
    assert!(!peers.contains(&BALANCER), "{records:?}");
}
