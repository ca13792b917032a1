//! The two halves agree: the config the operator rendered into the cluster's ConfigMap
//! runs the real `postern-listener` binary, which accepts a message over SMTP.
//!
//! Only what a pod provides differently is rewritten: the spool directory and the
//! admin and listen addresses (a free loopback port each, instead of the pod's ports),
//! and, for the smarthost test, the root of each volume the Deployment mounts (the
//! Secret and ConfigMap files are written, as the kubelet would, from the objects read
//! back from the API server, under a temporary directory instead of `/etc/postern`).

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::api::{ListParams, PostParams};
use postern_e2e::{TestNamespace, require_cluster};
use postern_operator::{build::LISTENER_LABEL, crd::EsmtpListener};
use support::{
    TIMEOUT, apply_listener,
    listener::{expect, free_port, listener_binary, require_tool, run_rendered, send},
    setup, wait_ready,
};

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
    let rendered = support::rendered_config(&ns, "mx").await?;
    operator.stop().await;
    ns.cleanup().await?;

    // What a pod provides (spool volume, admin and listen addresses) on loopback; the
    // listener's own `check` must accept the config before it runs.
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let running = run_rendered(&rendered, admin, &BTreeMap::new()).await?;
    let bin = listener_binary()?;
    let spool = running.dir.path().join("spool");

    let stream = TcpStream::connect(running.smtp)?;
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
        .arg(&spool)
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
        .arg(&spool)
        .output()?;
    let message = String::from_utf8_lossy(&show.stdout);
    ensure!(message.contains("X-Postern-Ref:"), "{message}");
    ensure!(
        message.contains("Hello from the operator's config."),
        "{message}"
    );
    Ok(())
}

const USERNAME: &str = "relay@smarthost.test";

/// The Python with aiosmtpd: `$POSTERN_PYTHON`, else the venv scripts/install-deps makes.
fn python() -> String {
    std::env::var("POSTERN_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/postern/venv/bin/python")
    })
}

/// A CA, and a certificate for 127.0.0.1 it signs: (CA PEM, certificate chain PEM, key PEM).
fn test_pki() -> Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Postern operator e2e CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem() + &ca.pem(), key.serialize_pem()))
}

/// The AUTH-checking smarthost of postern-outbound's tests (aiosmtpd with an
/// authenticator), killed when dropped.
struct Smarthost {
    child: Child,
    starttls: u16,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Smarthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smarthost {
    /// Starts it with `password`; `None` (a loud skip) without the venv.
    fn start(cert: &str, key: &str, password: &str) -> Result<Option<Self>> {
        let Some(python) = require_tool(&python()) else {
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let file = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../listener/test-peers/peers/aiosmtpd_auth.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(file("server.pem", cert)?)
            .arg(file("server.key", key)?)
            .arg(file("username", USERNAME)?)
            .arg(file("password", password)?)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the aiosmtpd smarthost")?;
        let stdout = child.stdout.take().context("its stdout")?;
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        let mut smarthost = Self {
            child,
            starttls: 0,
            lines,
            _dir: dir,
        };
        let ready = smarthost.wait_for("READY")?;
        smarthost.starttls = ready
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .context("READY names the STARTTLS port")?;
        Ok(Some(smarthost))
    }

    /// Waits until it printed a line starting with `prefix`.
    fn wait_for(&self, prefix: &str) -> Result<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return Ok(line.clone());
            }
            ensure!(
                Instant::now() < deadline,
                "the smarthost never printed {prefix:?}; it printed {:?}",
                self.lines.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What the kubelet would do for `deployment`'s listener container: each Secret and
/// ConfigMap volume it mounts (besides the config) written as files under `root`, read
/// back from the API server; returns mount path → local directory.
async fn materialise_mounts(
    ns: &TestNamespace,
    deployment: &Deployment,
    root: &std::path::Path,
) -> Result<BTreeMap<String, PathBuf>> {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .context("a pod template")?;
    let container = pod.containers.first().context("a container")?;
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mut mounts = BTreeMap::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let Some(volume) = volumes.iter().find(|v| v.name == mount.name) else {
            continue;
        };
        let files: BTreeMap<String, Vec<u8>> = if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().context("a Secret name")?;
            let s = ns.api::<Secret>().get(&name).await?;
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        } else if let Some(cm) = &volume.config_map {
            if mount.sub_path.is_some() {
                continue; // the config itself, which the test rewrites
            }
            let c = ns.api::<ConfigMap>().get(&cm.name).await?;
            c.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect()
        } else {
            continue;
        };
        let dir = root.join(format!("mount-{i}"));
        std::fs::create_dir_all(&dir)?;
        for (key, value) in files {
            std::fs::write(dir.join(key), value)?;
        }
        mounts.insert(mount.mount_path.clone(), dir);
    }
    Ok(mounts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_a_smarthost_with_a_credentials_secret_delivers_through_the_real_listener() -> Result<()>
{
    let cluster = require_cluster!(
        "e2e_a_smarthost_with_a_credentials_secret_delivers_through_the_real_listener",
        Ok(())
    );
    // A password nobody else uses, so any place it shows up is a leak.
    let password = format!("pw-{}-{}-never-in-a-configmap", free_port()?, free_port()?);
    let (ca, cert, key) = test_pki()?;
    let Some(smarthost) = Smarthost::start(&cert, &key, &password)? else {
        return Ok(());
    };
    let (ns, operator) = setup(&cluster, "op-smarthost").await?;
    let pp = PostParams::default();
    ns.api::<Secret>()
        .create(
            &pp,
            &Secret {
                metadata: ObjectMeta {
                    name: Some("relay-auth".into()),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(
                    "password".to_string(),
                    ByteString(password.clone().into_bytes()),
                )])),
                ..Secret::default()
            },
        )
        .await?;
    ns.api::<ConfigMap>()
        .create(
            &pp,
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("smarthost-ca".into()),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([("ca.pem".to_string(), ca)])),
                ..ConfigMap::default()
            },
        )
        .await?;
    let api = ns.api::<EsmtpListener>();
    apply_listener(
        &api,
        "mx",
        &format!(
            "
listeners:
  - listen: 0.0.0.0:25
    hostname: mx.example.com
    relayHosts: [127.0.0.0/8]
    delivery:
      smarthost:
        host: 127.0.0.1
        port: {}
        tls: required
        auth: {{username: {USERNAME}, password: {{secretName: relay-auth}}}}
      caFile: /etc/postern/ca/ca.pem
      retryInterval: 1s
volumes: [{{name: smarthost-ca, configMap: {{name: smarthost-ca}}}}]
volumeMounts: [{{name: smarthost-ca, mountPath: /etc/postern/ca, readOnly: true}}]
",
            smarthost.starttls
        ),
    )
    .await?;
    wait_ready(&api, "mx").await?;
    let rendered = support::rendered_config(&ns, "mx").await?;
    ensure!(
        rendered.contains("/etc/postern/secrets/relay-auth/password"),
        "the password is rendered as its mounted file:\n{rendered}"
    );
    // The password is in no ConfigMap and in no Deployment of the listener.
    let lp = ListParams::default().labels(&format!("{LISTENER_LABEL}=mx"));
    for cm in ns.api::<ConfigMap>().list(&lp).await?.items {
        ensure!(
            !serde_json::to_string(&cm)?.contains(&password),
            "ConfigMap {:?} holds the password",
            cm.metadata.name
        );
    }
    let deployment = ns.api::<Deployment>().get("mx-0").await?;
    ensure!(!serde_json::to_string(&deployment)?.contains(&password));

    let work = tempfile::tempdir()?;
    let mounts = materialise_mounts(&ns, &deployment, work.path()).await?;
    ensure!(
        mounts.contains_key("/etc/postern/secrets/relay-auth")
            && mounts.contains_key("/etc/postern/ca"),
        "the Deployment mounts the Secret and the CA: {mounts:?}"
    );
    operator.stop().await;
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let listener = run_rendered(&rendered, admin, &mounts).await?;
    send(listener.smtp, "user@example.net", "through the smarthost")?;

    let auth = smarthost.wait_for("AUTH")?;
    ensure!(auth.ends_with(" ok"), "{auth}");
    let delivered = smarthost.wait_for("DELIVERED")?;
    ensure!(
        delivered.starts_with("DELIVERED auth=True from=sender@example.org to=user@example.net"),
        "{delivered}"
    );
    support::poll_queue_empty(listener.admin).await?;
    ensure!(
        !listener.log().contains(&password),
        "the listener logged the password"
    );
    ns.cleanup().await
}
