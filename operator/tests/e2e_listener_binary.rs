//! The two halves agree: the config the operator rendered into the cluster's ConfigMap
//! runs the real `postern-listener` binary, which accepts a message over SMTP.
//!
//! Only what a pod provides differently is rewritten: the spool directory and the
//! admin and listen addresses (a free loopback port each, instead of the pod's ports).

mod support;

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use postern_e2e::require_cluster;
use postern_operator::{build::configmap::CONFIG_KEY, crd::EsmtpListener};
use serde_yaml::Value;
use support::{apply_listener, listener_binary, setup, wait_ready};

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Listener(Child);

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one SMTP reply (all its lines) and returns its code and text.
fn reply(reader: &mut BufReader<TcpStream>) -> Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        ensure!(
            reader.read_line(&mut line)? > 0,
            "connection closed; got so far: {text}"
        );
        text.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code = line
                .get(..3)
                .unwrap_or_default()
                .parse()
                .context("reply code")?;
            return Ok((code, text));
        }
    }
}

fn expect(reader: &mut BufReader<TcpStream>, code: u16, after: &str) -> Result<String> {
    let (got, text) = reply(reader)?;
    ensure!(got == code, "after {after}: expected {code}, got {text}");
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_the_rendered_config_runs_the_real_listener() -> Result<()> {
    let cluster = require_cluster!("e2e_the_rendered_config_runs_the_real_listener", Ok(()));
    let (ns, operator) = setup(&cluster, "op-binary").await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(
        &api,
        "mx",
        "
listeners:
  - listen: 0.0.0.0:25
    hostname: mx.example.com
    banner: Postern via the operator
    relayHosts: [127.0.0.0/8, 10.0.0.0/8]
    maxRecipientsPerMessage: 10
    domains:
      example.com: {relayTo: true}
    traceHeaders: {headerName: X-Postern-Ref}
  - listen: 0.0.0.0:2026
",
    )
    .await?;
    wait_ready(&api, "mx").await?;
    let cm = support::current_config(&ns, "mx").await?;
    let rendered = cm
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_KEY))
        .context("the ConfigMap has no config.yaml")?
        .clone();
    operator.stop().await;
    ns.cleanup().await?;

    // Rewrite what a pod provides: spool volume, admin and listen addresses.
    let dir = tempfile::tempdir()?;
    let mut config: Value = serde_yaml::from_str(&rendered)?;
    let smtp_port = free_port()?;
    let admin_port = free_port()?;
    config["spool"]["path"] = Value::from(dir.path().join("spool").to_string_lossy().into_owned());
    config["admin"]["listen"] = Value::from(format!("127.0.0.1:{admin_port}"));
    let listeners = config["listeners"].as_sequence_mut().context("listeners")?;
    listeners[0]["listen"] = Value::from(format!("127.0.0.1:{smtp_port}"));
    listeners[1]["listen"] = Value::from(format!("127.0.0.1:{}", free_port()?));
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;

    let bin = listener_binary()?;
    let check = Command::new(&bin)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    ensure!(
        check.status.success(),
        "postern-listener check refused the operator's config: {}{}\n{rendered}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let log = std::fs::File::create(dir.path().join("listener.log"))?;
    let _listener = Listener(
        Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?,
    );

    // Wait for /readyz on the admin endpoint, then talk SMTP.
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(admin) {
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
            let mut first = String::new();
            BufReader::new(s).read_line(&mut first)?;
            if first.contains(" 200 ") {
                break;
            }
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("listener.log")).unwrap_or_default();
            bail!("the listener did not become ready on {admin}; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stream = TcpStream::connect(("127.0.0.1", smtp_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let greeting = expect(&mut reader, 220, "connect")?;
    ensure!(
        greeting.contains("mx.example.com Postern via the operator"),
        "{greeting}"
    );
    writer.write_all(b"EHLO client.example\r\n")?;
    expect(&mut reader, 250, "EHLO")?;
    writer.write_all(b"MAIL FROM:<sender@example.org>\r\n")?;
    expect(&mut reader, 250, "MAIL FROM")?;
    writer.write_all(b"RCPT TO:<user@example.com>\r\n")?;
    expect(&mut reader, 250, "RCPT TO")?;
    writer.write_all(b"DATA\r\n")?;
    expect(&mut reader, 354, "DATA")?;
    writer.write_all(
        b"From: sender@example.org\r\nTo: user@example.com\r\nSubject: operator e2e\r\n\r\nHello from the operator's config.\r\n.\r\n",
    )?;
    let accepted = expect(&mut reader, 250, "the message")?;
    writer.write_all(b"QUIT\r\n")?;
    expect(&mut reader, 221, "QUIT")?;

    // The message is in the spool, with the trace header the spec named.
    let list = Command::new(&bin)
        .args(["spool", "list", "--spool"])
        .arg(dir.path().join("spool"))
        .output()?;
    let listing = String::from_utf8_lossy(&list.stdout);
    ensure!(
        list.status.success() && listing.contains("sender@example.org"),
        "spool list: {listing}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let id: serde_json::Value = serde_json::from_str(listing.lines().next().unwrap_or("{}"))?;
    let id = id["id"]
        .as_str()
        .context("an id in spool list")?
        .to_string();
    ensure!(
        accepted.contains(&id),
        "the 250 reply names the spooled id: {accepted}"
    );
    let show = Command::new(&bin)
        .args(["spool", "show", &id, "--spool"])
        .arg(dir.path().join("spool"))
        .output()?;
    let message = String::from_utf8_lossy(&show.stdout);
    ensure!(message.contains("X-Postern-Ref:"), "{message}");
    ensure!(
        message.contains("Hello from the operator's config."),
        "{message}"
    );
    Ok(())
}
