//! `tlsRequiredClientCa` against the real binary: `openssl s_client -starttls smtp`
//! with a client certificate from the configured CA gets through STARTTLS and is
//! served; without a certificate, or with one from another CA, the handshake is
//! refused and the session never reaches SMTP over TLS. The CAs and certificates are
//! made by the openssl command line for each run.
//!
//! A missing tool fails the test when `CI` is set; otherwise the test says so loudly on
//! stderr and returns.

mod support_process;

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use support_process::{Process, WAIT, Workdir, http_get, metric, require_tool, run_command};

/// Runs openssl with `args` in `dir`; it must succeed.
fn openssl(openssl: &Path, dir: &Path, args: &[&str]) {
    let run = run_command(Command::new(openssl).current_dir(dir).args(args));
    assert!(run.status.success(), "openssl {args:?}: {}", run.stderr);
}

/// A CA (`{name}-ca.crt`/`.key`) and a client certificate it issued (`{name}.crt`/`.key`).
fn issue(tool: &Path, dir: &Path, name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca_subject = format!("/CN={name} CA");
    let ca_key = format!("{name}-ca.key");
    let ca_crt = format!("{name}-ca.crt");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "1",
        "-subj",
        &ca_subject,
    ]);
    openssl(tool, dir, &args);
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let subject = format!("/CN={name}.client.test");
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
    openssl(tool, dir, &args);
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        tool,
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "1",
            "-extfile",
            "client.ext",
        ],
    );
}

/// `openssl s_client -starttls smtp` to `port`, optionally presenting `cert`, saying
/// EHLO and QUIT over TLS. Returns (stdout, stderr).
fn s_client(tool: &Path, dir: &Path, port: u16, cert: Option<&str>) -> (String, String) {
    let connect = format!("127.0.0.1:{port}");
    let mut command = Command::new(tool);
    command.current_dir(dir).args([
        "s_client",
        "-connect",
        &connect,
        "-starttls",
        "smtp",
        "-quiet",
        "-crlf",
    ]);
    if let Some(name) = cert {
        command.args([
            "-cert",
            &format!("{name}.crt"),
            "-key",
            &format!("{name}.key"),
        ]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"EHLO tls.client.test\nQUIT\n")
        .expect("write to s_client");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(WAIT)
        .expect("s_client finished in time")
        .expect("s_client output");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn starttls_needs_a_client_certificate_from_the_configured_ca() {
    let Some(tool) = require_tool("openssl") else {
        return;
    };
    let work = Workdir::new();
    issue(&tool, work.path(), "good");
    issue(&tool, work.path(), "rogue");
    let ca = work.path().join("good-ca.crt");
    let setup = work.config(
        "mtls",
        &[&format!(
            "tlsRequiredClientCa: {:?}",
            ca.display().to_string()
        )],
        &[],
    );
    let mut process = Process::start(&work, &setup, "mtls").await;
    let port = setup.smtp.port();

    let (out, err) = s_client(&tool, work.path(), port, Some("good"));
    assert!(
        out.contains("250-mx.test Hello tls.client.test"),
        "{out}\n{err}"
    );
    assert!(out.contains("221 2.0.0"), "{out}\n{err}");

    for cert in [None, Some("rogue")] {
        let (out, err) = s_client(&tool, work.path(), port, cert);
        assert!(
            !out.contains("Hello tls.client.test") && !out.contains("221"),
            "{cert:?} was served over TLS: {out}\n{err}"
        );
        assert!(err.contains("alert"), "{cert:?}: no TLS alert: {err}");
    }

    let (_, metrics) = http_get(setup.admin, "/metrics").await.unwrap();
    assert_eq!(
        metric(&metrics, "postern_tls_handshake_failures_total"),
        Some(2.0),
        "{metrics}"
    );
    process.sigterm();
    assert_eq!(process.wait_exit(WAIT).await.code(), Some(0));
}
