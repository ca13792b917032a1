//! The real binary on bad input: `check` exits 0 on a valid file and 2 with one stderr
//! line naming the field, the value and what is expected on a bad one; running with a
//! bad configuration or a bad TLS source also exits 2, before any port is bound (proved
//! by holding the configured ports: a process that tried to bind them would fail with
//! exit 1 and "address in use" instead) and before the spool is created.

mod support_process;

use std::{ffi::OsStr, net::SocketAddr, path::Path};

use support_process::{Finished, Workdir, free_addrs, run_to_end};

/// A bad configuration and what its error line must contain.
struct Case {
    what: &'static str,
    yaml: String,
    field: &'static str,
    value: String,
    expected: &'static str,
}

/// The issue's categories of bad configuration, with the listener (or, where the
/// listen address itself is the error, the admin endpoint) on `smtp` and `admin`.
fn bad_configs(smtp: SocketAddr, admin: SocketAddr, spool: &Path) -> Vec<Case> {
    let rest = format!("spool: {{path: {spool:?}}}\nadmin: {{listen: \"{admin}\"}}\nlog: stdout\n");
    let one = |keys: &str| format!("listeners:\n  - {{listen: \"{smtp}\", {keys}}}\n{rest}");
    vec![
        Case {
            what: "unknown key",
            yaml: one("colour: blue"),
            field: "listeners[0].colour",
            value: "colour".into(),
            expected: "expected one of",
        },
        Case {
            what: "CIDR with host bits",
            yaml: one("relayHosts: [\"10.0.0.1/24\"]"),
            field: "listeners[0].relayHosts[0]",
            value: "10.0.0.1/24".into(),
            expected: "did you mean 10.0.0.0/24",
        },
        Case {
            what: "bad duration",
            yaml: one("clientTimeout: soon"),
            field: "listeners[0].clientTimeout",
            value: "soon".into(),
            expected: "expected e.g.",
        },
        Case {
            what: "bad listen address",
            yaml: format!(
                "listeners:\n  - listen: \"localhost:{}\"\n{rest}",
                smtp.port()
            ),
            field: "listeners[0].listen",
            value: format!("localhost:{}", smtp.port()),
            expected: "expected IP:PORT",
        },
        Case {
            what: "two listeners on one address",
            yaml: format!("listeners:\n  - listen: \"{smtp}\"\n  - listen: \"{smtp}\"\n{rest}"),
            field: "listeners[1].listen",
            value: smtp.to_string(),
            expected: "already used by listeners[0]",
        },
    ]
}

/// Asserts the exit code 2 and the one stderr line of `case`.
#[track_caller]
fn assert_refused(finished: &Finished, case: &Case) {
    let what = case.what;
    assert_eq!(finished.code(), 2, "{what}: {finished:?}");
    let lines = finished.stderr_lines();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stderr must be one line: {lines:#?}"
    );
    let line = lines[0];
    for part in [case.field, &case.value, case.expected] {
        assert!(line.contains(part), "{what}: '{part}' missing from: {line}");
    }
    assert_eq!(
        line.matches(case.field).count(),
        1,
        "{what}: the field is named once: {line}"
    );
    assert!(
        line.find(case.field) < line.find(case.expected),
        "{what}: the field comes first: {line}"
    );
}

fn check(work: &Workdir, config: &Path) -> Finished {
    run_to_end(
        work.path(),
        &[
            OsStr::new("check"),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
    )
}

fn run(work: &Workdir, config: &Path) -> Finished {
    run_to_end(work.path(), &[OsStr::new("--config"), config.as_os_str()])
}

#[test]
fn check_accepts_a_valid_file() {
    let work = Workdir::new();
    let config = work.write(
        "valid.yaml",
        r#"
listeners:
  - listen: "127.0.0.1:2525"
    hostname: mx.example.com
    clientTimeout: 1 minute
    relayHosts: ["10.0.0.0/24", "::1"]
    domains:
      example.com: {relayTo: true}
      "*.example.net": {logOob: true}
  - listen: "[::1]:2026"
    deferredSpool: true
spool: {path: ./spool}
log: stdout
admin: {listen: "127.0.0.1:8025"}
shutdownGracePeriod: 30s
"#,
    );
    let finished = check(&work, &config);
    assert_eq!(finished.code(), 0, "{finished:?}");
    assert!(
        !finished.stderr.contains("postern-listener:"),
        "no error line: {}",
        finished.stderr
    );
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert!(stdout.contains("valid: 2 listener(s)"), "{stdout}");
    assert!(
        !work.path().join("spool").exists(),
        "check must not create the spool"
    );
}

#[test]
fn check_refuses_each_bad_file_with_one_line() {
    let work = Workdir::new();
    let [smtp, admin] = free_addrs();
    for case in bad_configs(smtp, admin, &work.spool()) {
        let config = work.write("bad.yaml", &case.yaml);
        assert_refused(&check(&work, &config), &case);
    }
    let missing = work.path().join("missing.yaml");
    let case = Case {
        what: "missing file",
        yaml: String::new(),
        field: "cannot read config file",
        value: missing.display().to_string(),
        expected: "No such file",
    };
    assert_refused(&check(&work, &missing), &case);
    assert_refused(&run(&work, &missing), &case);
}

/// Further fields than the issue's list: the admin address, the grace period, and the
/// limits whose JSON schema says "at least 1" (the operator's CRD would refuse 0, so
/// the file must too: with `maxRecipientsPerMessage: 0` every RCPT is refused).
#[test]
fn check_refuses_other_bad_fields_with_one_line() {
    let work = Workdir::new();
    let cases = [
        Case {
            what: "bad admin address",
            yaml: "admin: {listen: nope}".into(),
            field: "admin.listen",
            value: "nope".into(),
            expected: "expected",
        },
        Case {
            what: "bad grace period",
            yaml: "shutdownGracePeriod: forever".into(),
            field: "shutdownGracePeriod",
            value: "forever".into(),
            expected: "expected e.g.",
        },
        Case {
            what: "zero recipients per message",
            yaml: "listeners: [{maxRecipientsPerMessage: 0}]".into(),
            field: "listeners[0].maxRecipientsPerMessage",
            value: "0".into(),
            expected: "expected",
        },
        Case {
            what: "zero messages per connection",
            yaml: "listeners: [{maxMessagesPerConnection: 0}]".into(),
            field: "listeners[0].maxMessagesPerConnection",
            value: "0".into(),
            expected: "expected",
        },
        Case {
            what: "zero message size",
            yaml: "listeners: [{maxMessageSize: 0}]".into(),
            field: "listeners[0].maxMessageSize",
            value: "0".into(),
            expected: "expected",
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let config = work.write("bad.yaml", &case.yaml);
        let finished = check(&work, &config);
        let one_line = finished.stderr_lines();
        let ok = finished.code() == 2
            && one_line.len() == 1
            && [case.field, &case.value, case.expected]
                .iter()
                .all(|part| one_line[0].contains(part));
        if !ok {
            failures.push(format!(
                "{}: exit {}, stderr {:?}",
                case.what,
                finished.code(),
                finished.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Holds the configured SMTP and admin ports while the binary runs with a bad
/// configuration: it must exit 2 with the configuration error, not 1 with "address in
/// use" (which it would if it bound anything first), and must not create the spool.
#[test]
fn running_with_a_bad_config_exits_2_before_binding_anything() {
    let work = Workdir::new();
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (smtp_addr, admin_addr) = (smtp.local_addr().unwrap(), admin.local_addr().unwrap());
    for case in bad_configs(smtp_addr, admin_addr, &work.spool()) {
        let config = work.write("bad.yaml", &case.yaml);
        assert_refused(&run(&work, &config), &case);
        assert!(
            !work.spool().exists(),
            "{}: the spool was created",
            case.what
        );
    }

    // The control: the same ports with a valid configuration do make it fail to bind.
    let valid = work.write(
        "valid.yaml",
        &format!("listeners: [{{listen: \"{smtp_addr}\"}}]\nadmin: {{listen: \"127.0.0.1:0\"}}\nspool: {{path: {:?}}}\n", work.spool()),
    );
    let finished = run(&work, &valid);
    assert_eq!(finished.code(), 1, "{finished:?}");
    let last = finished.stderr_lines().last().copied().unwrap_or_default();
    assert!(
        last.contains("listeners[0].listen") && last.contains(&smtp_addr.to_string()),
        "the bind failure names the listener: {last}"
    );
    drop((smtp, admin));
}

/// TLS sources are read by `check`, and by a run before any port is bound: a missing or
/// unreadable certificate exits 2 with one line naming the path, while the configured
/// ports are held.
#[test]
fn a_bad_tls_source_exits_2_naming_the_path() {
    let work = Workdir::new();
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (smtp_addr, admin_addr) = (smtp.local_addr().unwrap(), admin.local_addr().unwrap());
    let garbage = work.write("garbage.pem", "not a certificate\n");
    let cases = [
        (
            "/nonexistent.pem".to_owned(),
            "/nonexistent.key".to_owned(),
            "No such file",
        ),
        (
            garbage.display().to_string(),
            garbage.display().to_string(),
            "no certificate found",
        ),
    ];
    for (certificate, key, expected) in cases {
        let config = work.write(
            "tls.yaml",
            &format!(
                "listeners:\n  - listen: \"{smtp_addr}\"\n    tlsCertificate: {certificate}\n    tlsPrivateKey: {key}\n\
                 admin: {{listen: \"{admin_addr}\"}}\nspool: {{path: {:?}}}\n",
                work.spool()
            ),
        );
        let case = Case {
            what: "bad TLS source",
            yaml: String::new(),
            field: "listeners[0].tlsCertificate",
            value: certificate.clone(),
            expected,
        };
        assert_refused(&check(&work, &config), &case);
        assert_refused(&run(&work, &config), &case);
        assert!(!work.spool().exists(), "the spool was created");
    }
    drop((smtp, admin));
}
