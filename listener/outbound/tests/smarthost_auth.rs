//! AUTH toward a smarthost that really checks credentials: aiosmtpd with an
//! authenticator (PyPI, in the venv `~/.cache/postern/venv` that scripts/install-deps makes, or `$POSTERN_PYTHON`),
//! over STARTTLS and implicit TLS, PLAIN and LOGIN, credentials read from files like a
//! mounted Secret.

mod support;

use std::net::SocketAddr;

use postern_outbound::{
    Credentials, NextHop, OutboundConnection, OutboundError, Phase, Stage, TlsClients, TlsMode,
};
use postern_test_peers::aiosmtpd::{AuthSmarthost, HOST_NAME, PASSWORD, USERNAME};
use support::{WAIT, envelope, options};

/// The shared aiosmtpd smarthost, and connecting to it.
struct Smarthost(AuthSmarthost);

impl std::ops::Deref for Smarthost {
    type Target = AuthSmarthost;

    fn deref(&self) -> &AuthSmarthost {
        &self.0
    }
}

impl Smarthost {
    fn start() -> Option<Self> {
        AuthSmarthost::start().map(Self)
    }

    fn tls(&self) -> TlsClients {
        TlsClients::with_ca_file(&self.pki.ca_file).expect("the test CA")
    }

    fn hop(addr: SocketAddr) -> Vec<NextHop> {
        vec![NextHop {
            name: HOST_NAME.into(),
            addresses: vec![addr.ip()],
        }]
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        mode: TlsMode,
        credentials: Option<Credentials>,
    ) -> Result<OutboundConnection, OutboundError> {
        let mut options = options(addr.port(), mode);
        options.credentials = credentials;
        OutboundConnection::connect(&Self::hop(addr), &options, &self.tls()).await
    }

    /// Waits until a line starting with `prefix` was printed.
    async fn wait_for(&self, prefix: &str) -> String {
        self.0.wait_for(prefix, WAIT).await
    }
}

/// Credentials read from files, as from a mounted Secret.
fn credentials_from_files(dir: &std::path::Path) -> Credentials {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .expect("a credentials file")
            .trim_end()
            .to_string()
    };
    Credentials::new(read("username"), read("password"))
}

#[tokio::test]
async fn auth_plain_and_login_over_starttls_and_implicit_tls() {
    let Some(smarthost) = Smarthost::start() else {
        return;
    };
    let credentials = credentials_from_files(smarthost.pki.dir.path());
    for (addr, mode) in [
        (smarthost.starttls, TlsMode::Required),
        (smarthost.implicit, TlsMode::Implicit),
    ] {
        let mut connection = smarthost
            .connect(addr, mode, Some(credentials.clone()))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(connection.is_tls());
        let outcome = connection
            .send(
                &envelope("app@relay.test", &["user@example.test"]),
                format!("Subject: via {mode}\r\n\r\nhi\r\n").as_bytes(),
            )
            .await
            .expect("a transaction");
        assert!(outcome.recipients[0].is_delivered(), "{mode}: {outcome:?}");
        connection.quit().await;
    }
    let mut login = smarthost
        .connect(smarthost.login_only, TlsMode::Implicit, Some(credentials))
        .await
        .expect("AUTH LOGIN");
    assert!(!login.capabilities().auth_plain && login.capabilities().auth_login);
    let outcome = login
        .send(
            &envelope("app@relay.test", &["user@example.test"]),
            b"hi\r\n",
        )
        .await
        .expect("a transaction");
    assert!(outcome.recipients[0].is_delivered());
    login.quit().await;
    smarthost.wait_for("AUTH PLAIN ok").await;
    smarthost.wait_for("AUTH LOGIN ok").await;
    let delivered = smarthost.wait_for("DELIVERED").await;
    assert!(delivered.contains("auth=True"), "{delivered}");
    assert!(!smarthost.printed("DELIVERED auth=True").is_empty());
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_535() {
    let Some(smarthost) = Smarthost::start() else {
        return;
    };
    for (addr, mode) in [
        (smarthost.starttls, TlsMode::Required),
        (smarthost.implicit, TlsMode::Implicit),
    ] {
        let error = smarthost
            .connect(
                addr,
                mode,
                Some(Credentials::new(USERNAME, "wrong password")),
            )
            .await
            .expect_err("the smarthost checks the password");
        let OutboundError::Rejected {
            phase: Phase::Auth,
            ref reply,
            ..
        } = error
        else {
            panic!("{mode}: {error:?}");
        };
        assert_eq!(reply.code, 535, "{mode}");
        assert!(error.is_permanent());
    }
    smarthost.wait_for("AUTH PLAIN failed").await;
    assert!(smarthost.printed("DELIVERED").is_empty());
}

#[tokio::test]
async fn credentials_are_never_sent_without_tls() {
    let Some(smarthost) = Smarthost::start() else {
        return;
    };
    let error = smarthost
        .connect(
            smarthost.starttls,
            TlsMode::None,
            Some(Credentials::new(USERNAME, PASSWORD)),
        )
        .await
        .expect_err("no AUTH over plaintext");
    assert!(
        matches!(error, OutboundError::AuthWithoutTls { .. }),
        "{error:?}"
    );
    assert!(smarthost.printed("AUTH").is_empty());

    // Without credentials the smarthost refuses the mail itself.
    let mut connection = smarthost
        .connect(smarthost.starttls, TlsMode::Required, None)
        .await
        .expect("TLS without AUTH");
    let outcome = connection
        .send(
            &envelope("app@relay.test", &["user@example.test"]),
            b"hi\r\n",
        )
        .await
        .expect("an outcome");
    assert_eq!(outcome.recipients[0].stage, Stage::Mail);
    assert_eq!(outcome.recipients[0].reply.code, 530);
    connection.quit().await;
}
