//! Authenticated submission against the real binary: swaks and Python's smtplib with
//! AUTH PLAIN and LOGIN over STARTTLS (port "587") and over implicit TLS (port "465"),
//! with argon2id and bcrypt hashes read from a credentials file. Good credentials relay,
//! bad ones get 535, AUTH in plaintext gets 538, an unauthenticated client may not
//! relay, and a client address that failed too often gets 454 even with the right
//! password. The spool holds exactly the authenticated messages and the Reception
//! records carry `authn_id`; no record or log line holds a password.
//!
//! A missing tool fails the test when `CI` is set; otherwise the test says so loudly on
//! stderr and returns.

mod support_process;

use std::process::Command;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, SaltString},
};
use support_process::{
    HOST, Process, Setup, WAIT, Workdir, free_addrs, require_tool, run_command, spool_list,
};

const APP_PASSWORD: &str = "app-Secret-4417";
const DEVICE_PASSWORD: &str = "device-Secret-9021";

/// `app` with an argon2id hash (cheap parameters), `device` with a bcrypt one.
fn credentials() -> String {
    let params = argon2::Params::new(4096, 1, 1, None).unwrap();
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(
            APP_PASSWORD.as_bytes(),
            &SaltString::from_b64("cG9zdGVybnNhbHQ").unwrap(),
        )
        .unwrap()
        .to_string();
    let bcrypt = bcrypt::hash_with_salt(DEVICE_PASSWORD, 4, [9; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoB);
    format!("# submission users\napp:{argon}\ndevice:{bcrypt}\n")
}

/// Two listeners sharing the credentials: STARTTLS and implicit TLS. Nobody may relay
/// without authenticating (`relayHosts: []`).
fn setup(work: &Workdir) -> (Setup, std::net::SocketAddr) {
    let [submission, smtps, admin] = free_addrs();
    let users = work.write("users", &credentials());
    let spool = work.spool();
    let records = work.path().join("auth.records.jsonl");
    let auth = format!(
        "auth: {{credentials: {users:?}, maxFailures: 3, failureWindow: 10m, failureDelay: 1s}}"
    );
    let yaml = format!(
        "listeners:\n  - listen: \"{submission}\"\n    hostname: {HOST}\n    relayHosts: []\n    {auth}\n  - listen: \"{smtps}\"\n    hostname: {HOST}\n    tls: implicit\n    relayHosts: []\n    {auth}\nspool:\n  path: {spool:?}\nlog: {records:?}\nadmin:\n  listen: \"{admin}\"\n"
    );
    let config = work.write("auth.yaml", &yaml);
    let setup = Setup {
        config,
        smtp: submission,
        admin,
        spool,
        records,
    };
    (setup, smtps)
}

struct Ran {
    ok: bool,
    out: String,
}

fn run(command: &mut Command) -> Ran {
    let finished = run_command(command);
    Ran {
        ok: finished.status.success(),
        out: format!(
            "{}\n{}",
            String::from_utf8_lossy(&finished.stdout),
            finished.stderr
        ),
    }
}

const SMTPLIB_SCRIPT: &str = r#"
import smtplib, ssl, sys

submission, smtps, app_pw, device_pw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE

def expect(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got}, want {want}")

# Plaintext: AUTH is neither offered nor accepted.
with smtplib.SMTP("127.0.0.1", submission, timeout=10) as s:
    s.ehlo("python.test")
    if s.has_extn("auth"):
        sys.exit("AUTH is offered in plaintext")
    code, _ = s.docmd("AUTH", "PLAIN AGFwcABhcHAtU2VjcmV0LTQ0MTc=")
    expect("AUTH in plaintext", code, 538)

# STARTTLS: unauthenticated relaying is refused, then AUTH PLAIN (smtplib's first
# choice) with the argon2 user relays.
with smtplib.SMTP("127.0.0.1", submission, timeout=10) as s:
    s.starttls(context=context)
    s.ehlo("python.test")
    if "PLAIN" not in s.esmtp_features.get("auth", ""):
        sys.exit(f"AUTH PLAIN not offered over TLS: {s.esmtp_features}")
    s.mail("app@example.org")
    code, _ = s.rcpt("someone@elsewhere.example")
    expect("RCPT before AUTH", code, 550)
    s.rset()
    code, _ = s.login("app", app_pw)
    expect("AUTH PLAIN", code, 235)
    code, _ = s.docmd("AUTH", "PLAIN AGFwcABhcHAtU2VjcmV0LTQ0MTc=")
    expect("AUTH twice", code, 503)
    s.sendmail("app@example.org", ["one@elsewhere.example"],
               b"Subject: smtplib starttls\r\n\r\nauthenticated over STARTTLS\r\n")

# Implicit TLS: AUTH LOGIN with the bcrypt user.
with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=context) as s:
    s.ehlo("python.test")
    if s.has_extn("starttls"):
        sys.exit("STARTTLS offered on an implicit-TLS listener")
    s.user, s.password = "device", device_pw
    code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    expect("AUTH LOGIN", code, 235)
    s.sendmail("device@example.org", ["two@elsewhere.example"],
               b"Subject: smtplib implicit\r\n\r\nauthenticated over implicit TLS\r\n")

# A wrong password is refused.
with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=context) as s:
    try:
        s.login("app", "wrong")
        sys.exit("a wrong password was accepted")
    except smtplib.SMTPAuthenticationError as e:
        expect("wrong password", e.smtp_code, 535)

# From 127.0.0.5: three failures use up the address's attempts; then even the right
# password gets 454, and a client from another address is not affected.
for attempt in range(3):
    with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=context,
                          source_address=("127.0.0.5", 0)) as s:
        s.ehlo("python.test")
        code, _ = s.docmd("AUTH", "PLAIN AGFwcAB3cm9uZw==")
        expect(f"failure {attempt + 1}", code, 535)
with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=context,
                      source_address=("127.0.0.5", 0)) as s:
    s.ehlo("python.test")
    try:
        s.login("app", app_pw)
        sys.exit("a blocked address could still authenticate")
    except smtplib.SMTPAuthenticationError as e:
        expect("blocked address", e.smtp_code, 454)
with smtplib.SMTP_SSL("127.0.0.1", smtps, timeout=10, context=context,
                      source_address=("127.0.0.6", 0)) as s:
    code, _ = s.login("app", app_pw)
    expect("another address", code, 235)
print("smtplib auth: ok")
"#;

#[tokio::test]
async fn swaks_and_smtplib_authenticate_over_starttls_and_implicit_tls() {
    let (Some(swaks), Some(python)) = (require_tool("swaks"), require_tool("python3")) else {
        return;
    };
    let work = Workdir::new();
    let (setup, smtps) = setup(&work);
    let mut process = Process::start(&work, &setup, "auth").await;
    let submission = setup.smtp.to_string();
    let smtps = smtps.to_string();
    let swaks_to = |server: &str, user: &str, password: &str, rcpt: &str| {
        let mut command = Command::new(&swaks);
        command.args([
            "--server",
            server,
            "--to",
            rcpt,
            "--from",
            "sender@example.org",
            "--helo",
            "swaks.test",
            "--timeout",
            "10",
            "--auth-user",
            user,
            "--auth-password",
            password,
        ]);
        command
    };

    // Good credentials relay: PLAIN over STARTTLS, LOGIN over implicit TLS.
    let starttls = run(
        swaks_to(&submission, "app", APP_PASSWORD, "s1@elsewhere.example")
            .args(["--tls", "--auth", "PLAIN"]),
    );
    assert!(starttls.ok, "{}", starttls.out);
    assert!(starttls.out.contains("<~  235 2.7.0"), "{}", starttls.out);
    assert!(
        starttls.out.contains("<~  250 2.0.0 OK id="),
        "{}",
        starttls.out
    );
    let implicit = run(
        swaks_to(&smtps, "device", DEVICE_PASSWORD, "s2@elsewhere.example").args([
            "--tls-on-connect",
            "--auth",
            "LOGIN",
        ]),
    );
    assert!(implicit.ok, "{}", implicit.out);
    assert!(implicit.out.contains("<~  235 2.7.0"), "{}", implicit.out);
    // Bad credentials are refused.
    let bad = run(swaks_to(
        &submission,
        "app",
        "not-the-password",
        "s3@elsewhere.example",
    )
    .args(["--tls", "--auth", "PLAIN"]));
    assert!(!bad.ok, "{}", bad.out);
    assert!(bad.out.contains("<~* 535 5.7.8"), "{}", bad.out);
    // In plaintext AUTH is not offered, so swaks cannot authenticate.
    let plaintext = run(
        swaks_to(&submission, "app", APP_PASSWORD, "s4@elsewhere.example")
            .args(["--auth", "PLAIN"]),
    );
    assert!(!plaintext.ok, "{}", plaintext.out);
    assert!(!plaintext.out.contains("235"), "{}", plaintext.out);

    let script = work.write("auth.py", SMTPLIB_SCRIPT);
    let smtps_port = smtps.rsplit(':').next().unwrap().to_owned();
    let smtplib = run(Command::new(python).arg(&script).args([
        setup.smtp.port().to_string(),
        smtps_port,
        APP_PASSWORD.into(),
        DEVICE_PASSWORD.into(),
    ]));
    assert!(
        smtplib.ok && smtplib.out.contains("smtplib auth: ok"),
        "{}",
        smtplib.out
    );

    process.sigterm();
    let status = process.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    let listed = spool_list(&setup.spool);
    let mut recipients: Vec<String> = listed
        .values()
        .map(|e| e["recipients"][0].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "one@elsewhere.example",
            "s1@elsewhere.example",
            "s2@elsewhere.example",
            "two@elsewhere.example"
        ],
        "exactly the authenticated messages were accepted"
    );
    let records = setup.records();
    let mut authn: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["type"] == "Reception")
        .map(|r| {
            (
                r["meta"]["authn_id"].as_str().unwrap_or("-").to_owned(),
                r["meta"]["authz_id"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect();
    authn.sort();
    assert_eq!(
        authn,
        [
            ("app".into(), "app".into()),
            ("app".into(), "app".into()),
            ("device".into(), "device".into()),
            ("device".into(), "device".into())
        ]
    );
    let log =
        std::fs::read_to_string(&setup.records).unwrap() + &process.stderr() + &process.stdout();
    for secret in [
        APP_PASSWORD,
        DEVICE_PASSWORD,
        "AGFwcABhcHAtU2VjcmV0LTQ0MTc=",
    ] {
        assert!(!log.contains(secret), "a password reached the logs");
    }
    let codes: Vec<u64> = records
        .iter()
        .filter(|r| r["type"] == "Rejection")
        .filter_map(|r| r["response"]["code"].as_u64())
        .collect();
    for code in [535, 538, 454, 550, 503] {
        assert!(
            codes.contains(&code),
            "a {code} rejection is recorded: {codes:?}"
        );
    }
}
