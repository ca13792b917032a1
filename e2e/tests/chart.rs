//! The Helm chart (`charts/postern`) on the real control plane of `e2e/cluster`.
//!
//! The control plane cannot pull images (kwok plays the kubelet, so the chart's
//! operator pod "runs" without running anything). These tests therefore run the
//! operator binary (`cargo build -p postern-operator`, or `$POSTERN_OPERATOR_BIN`)
//! on this machine *as the chart's pod would*: with the arguments and environment
//! of the installed Deployment and a kubeconfig holding a token of the chart's
//! ServiceAccount (`kubectl create token`), so the chart's RBAC is what the
//! API server enforces on every request of the operator.
//!
//! * `chart_install_reconcile_upgrade_uninstall`: `helm install` (default values:
//!   ClusterRole, the CRD), the ServiceAccount's permissions are exactly the
//!   documented ones (SubjectAccessReviews), the operator reconciles the three
//!   examples of `charts/postern/examples` to `Ready`, `helm upgrade` with changed
//!   values rolls the operator and leaves the CRD and the listeners alone,
//!   `helm uninstall` removes the chart's objects and keeps the CRD and the
//!   users' `EsmtpListener`s.
//! * `chart_restricted_namespace_admits_operator_and_listener_pods`: in a
//!   namespace enforcing the `restricted` Pod Security profile, with
//!   `watchNamespace` (Role instead of ClusterRole): a non-compliant pod is
//!   refused, the chart's operator pod is admitted, and so are the listener pods
//!   the operator creates for the NOTES.txt sample and the MX relay example.
//! * `chart_version_follows_the_crate`, `chart_crd_is_the_generated_one`: no
//!   cluster needed.
//!
//! Each test installs its own release (named after its namespace) and watches
//! only its own namespaces, so it never touches other tests' listeners. The CRD
//! is cluster-wide and shared: installs use `--take-ownership` and nothing here
//! deletes it.

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
        coordination::v1::Lease,
        core::v1::{Pod, Secret, Service, ServiceAccount},
        events::v1::Event,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
};
use postern_e2e::{
    Cluster, POD_SECURITY_RESTRICTED, TestNamespace, poll, require_cluster,
    wait_deployment_available,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous for a loaded 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(120);
const CRD_NAME: &str = "esmtplisteners.postern.io";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    workspace().join("charts/postern")
}

fn examples() -> PathBuf {
    chart().join("examples")
}

/// Runs a command; its stdout, or an error with both outputs.
fn run(program: &Path, args: &[&str], kubeconfig: &Path) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(workspace())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.success(),
        "{} {} failed ({}):\n{stdout}\n{stderr}",
        program.display(),
        args.join(" "),
        out.status
    );
    Ok(stdout)
}

/// `helm` and `kubectl` from the e2e build cache, against the test cluster.
struct Tools {
    helm: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Tools {
    fn new(cluster: &Cluster) -> Self {
        Self {
            helm: cluster.tool("helm"),
            kubectl: cluster.tool("kubectl"),
            kubeconfig: cluster.kubeconfig_path().to_owned(),
        }
    }

    fn helm(&self, args: &[&str]) -> Result<String> {
        run(&self.helm, args, &self.kubeconfig)
    }

    /// `helm install`, one at a time in this process: on a fresh cluster two installs
    /// would both try to create the shared CRD (`--take-ownership` adopts an existing
    /// object, it cannot settle a race to create one). Retried once when another
    /// process created the CRD in between.
    fn helm_install(&self, args: &[&str]) -> Result<String> {
        static INSTALLS: Mutex<()> = Mutex::new(());
        let _one_at_a_time = INSTALLS.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all = vec!["install"];
        all.extend_from_slice(args);
        match self.helm(&all) {
            Err(e) if e.to_string().contains("already exists") => self.helm(&all),
            result => result,
        }
    }

    fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&self.kubectl, args, &self.kubeconfig)
    }
}

/// The operator binary: `$POSTERN_OPERATOR_BIN`, else built with cargo into the workspace target.
fn operator_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("POSTERN_OPERATOR_BIN") {
        return Ok(bin.into());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "postern-operator",
            "--bin",
            "postern-operator",
        ])
        .current_dir(workspace())
        .status()
        .context("running cargo build -p postern-operator")?;
    ensure!(status.success(), "cargo build -p postern-operator failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    Ok(target.join("debug").join("postern-operator"))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A kubeconfig for the ServiceAccount `ns/name`: the test cluster's server and CA,
/// and a token the API server issues for that account.
fn service_account_kubeconfig(
    tools: &Tools,
    cluster: &Cluster,
    ns: &str,
    name: &str,
    dir: &Path,
) -> Result<PathBuf> {
    let token = tools.kubectl(&["-n", ns, "create", "token", name, "--duration=1h"])?;
    let ca = tools.kubectl(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ])?;
    ensure!(!ca.trim().is_empty(), "the test kubeconfig has no CA data");
    let server = cluster.config().cluster_url.to_string();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": server.trim_end_matches('/'),
            "certificate-authority-data": ca.trim(),
        }}],
        "users": [{"name": name, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": name, "namespace": ns}}],
        "current-context": "sa",
    });
    let path = dir.join(format!("{name}.kubeconfig"));
    // JSON is YAML: every kubeconfig loader reads it.
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("postern-chart-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `postern-operator run` on this machine, as the chart's Deployment runs it: its
/// container's args and env, the ServiceAccount's token; killed on drop.
struct LocalOperator {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl LocalOperator {
    /// Starts the operator with the args of `deployment`'s container; `--listen`
    /// moves to a free local port, and `--namespace=watch` is added when the chart
    /// watches all namespaces (so that this test never reconciles other tests'
    /// listeners; the ClusterRole grants the same in every namespace).
    fn start(
        deployment: &Deployment,
        kubeconfig: &Path,
        watch: &str,
        identity: &str,
        dir: &Path,
    ) -> Result<Self> {
        let container = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers[0].clone())
            .context("the chart's Deployment has no container")?;
        ensure!(
            container.command.as_deref() == Some(&["postern-operator".to_string()][..]),
            "the chart runs {:?}",
            container.command
        );
        let port = free_port()?;
        let mut args: Vec<String> = container
            .args
            .unwrap_or_default()
            .into_iter()
            .filter(|a| !a.starts_with("--listen"))
            .collect();
        args.push(format!("--listen=127.0.0.1:{port}"));
        if !args.iter().any(|a| a.starts_with("--namespace")) {
            args.push(format!("--namespace={watch}"));
        }
        // The container's env, with the downward-API values it would get.
        let ns = deployment.namespace().unwrap_or_default();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for e in container.env.unwrap_or_default() {
            let value = match (e.value, e.value_from.and_then(|v| v.field_ref)) {
                (Some(v), _) => v,
                (None, Some(f)) if f.field_path == "metadata.name" => identity.to_owned(),
                (None, Some(f)) if f.field_path == "metadata.namespace" => ns.clone(),
                _ => continue,
            };
            env.insert(e.name, value);
        }
        let log = dir.join(format!("{identity}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(operator_binary()?)
            .args(&args)
            .env_remove("POSTERN_WATCH_NAMESPACE")
            .env_remove("POSTERN_OPERATOR_LISTEN")
            .envs(&env)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting postern-operator")?;
        eprintln!(
            "postern-operator {} (env {env:?}), log {}",
            args.join(" "),
            log.display()
        );
        Ok(Self { child, log, port })
    }

    /// The operator's log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200 (it leads, or stands by).
    async fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        let result = poll("the operator's /readyz", TIMEOUT, || async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return Ok(None);
            };
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .await?;
            let mut response = String::new();
            s.read_to_string(&mut response).await?;
            // hyper answers an HTTP/1.0 request in HTTP/1.0 and closes.
            Ok((response.split_whitespace().nth(1) == Some("200")).then_some(()))
        })
        .await;
        if let Some(status) = self.child.try_wait()? {
            bail!("postern-operator exited ({status}):\n{}", self.log());
        }
        result.with_context(|| self.log())
    }

    /// Fails when the API server refused any of the operator's requests.
    fn ensure_never_forbidden(&self) -> Result<()> {
        let log = self.log();
        let denied: Vec<&str> = log
            .lines()
            // kube's error text for a 403: `... is forbidden: User ... cannot ...: Forbidden`.
            .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
            .collect();
        ensure!(
            denied.is_empty(),
            "the API server refused the operator (RBAC):\n{}",
            denied.join("\n")
        );
        Ok(())
    }

    /// Kills it and returns its log.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for LocalOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `user` may `verb` the resource; `namespace` `None` means all namespaces.
async fn allowed(
    client: &Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> Result<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let (resource, name) = match resource.split_once(':') {
        Some((r, n)) => (r, Some(n.to_owned())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!(
                    "system:serviceaccounts:{}",
                    user.split(':').nth(2).unwrap_or_default()
                ),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                name,
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .context("SubjectAccessReview")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Checks a table of (verb, group, resource[:name][/subresource], namespace, allowed?).
async fn ensure_permissions(
    client: &Client,
    user: &str,
    table: &[(&str, &str, &str, Option<&str>, bool)],
) -> Result<()> {
    let mut wrong = Vec::new();
    for &(verb, group, resource, ns, want) in table {
        let got = allowed(client, user, verb, group, resource, ns).await?;
        if got != want {
            wrong.push(format!(
                "{verb} {group}/{resource} in {}: {} (want {})",
                ns.unwrap_or("all namespaces"),
                if got { "allowed" } else { "denied" },
                if want { "allowed" } else { "denied" },
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{user}'s permissions differ from the chart's documented RBAC:\n{}",
        wrong.join("\n")
    );
    Ok(())
}

/// A `kubernetes.io/tls` Secret; the operator only looks at its keys and the pods are fake.
async fn tls_secret(ns: &TestNamespace, name: &str) -> Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {
            "tls.crt": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
            "tls.key": "-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n",
        },
    }))?;
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the TLS Secret")?;
    Ok(())
}

/// The uid of an object, through kubectl (`kind/name`), or `None` when it does not exist.
fn uid(tools: &Tools, ns: Option<&str>, object: &str) -> Result<Option<String>> {
    let mut args = vec![
        "get",
        object,
        "--ignore-not-found",
        "-o",
        "jsonpath={.metadata.uid}",
    ];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = tools.kubectl(&args)?;
    Ok((!out.trim().is_empty()).then(|| out.trim().to_owned()))
}

/// `kubectl wait --for=condition=Ready`, the line NOTES.txt and docs/chart.md give.
fn wait_listeners_ready(tools: &Tools, ns: &str, names: &[&str]) -> Result<()> {
    let objects: Vec<String> = names.iter().map(|n| format!("esmtplistener/{n}")).collect();
    let mut args = vec!["-n", ns, "wait", "--for=condition=Ready", "--timeout=120s"];
    args.extend(objects.iter().map(String::as_str));
    tools.kubectl(&args).map(drop).map_err(|e| {
        let state = tools
            .kubectl(&[
                "-n",
                ns,
                "get",
                "esmtplisteners,deployments,pods,pvc",
                "-o",
                "wide",
            ])
            .unwrap_or_default();
        let conditions = tools
            .kubectl(&[
                "-n",
                ns,
                "get",
                "esmtplisteners",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}: {.status.conditions}{\"\\n\"}{end}",
            ])
            .unwrap_or_default();
        e.context(format!("{state}\n{conditions}"))
    })
}

fn container_env(d: &Deployment, name: &str) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_install_reconcile_upgrade_uninstall() -> Result<()> {
    let cluster = require_cluster!("chart_install_reconcile_upgrade_uninstall", Ok(()));
    let tools = Tools::new(&cluster);
    let client = cluster.client();
    // Spool claims bind to the cluster's pool of volumes; earlier runs leave them Released.
    cluster.recycle_volumes().await?;
    let rel_ns = cluster.namespace("chart-rel").await?;
    let mail = cluster.namespace("chart-mail").await?;
    let release = rel_ns.name().to_owned();
    let fullname = format!("{release}-postern");
    let scratch = Scratch::new(&release)?;
    let chart = chart();
    let chart = chart.to_str().context("chart path")?;

    // Install with the default values: ClusterRole, the CRD.
    let notes = tools.helm_install(&[
        &release,
        chart,
        "-n",
        rel_ns.name(),
        "--take-ownership",
        "--wait",
        "--timeout=2m",
    ])?;
    ensure!(
        notes.contains("kubectl wait --for=condition=Ready esmtplistener/relay"),
        "NOTES.txt lacks the kubectl wait line:\n{notes}"
    );
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd = crds.get(CRD_NAME).await.context("the chart's CRD")?;
    ensure!(
        crd.annotations()
            .get("helm.sh/resource-policy")
            .map(String::as_str)
            == Some("keep"),
        "CRD annotations: {:?}",
        crd.annotations()
    );
    let crd_uid = crd.uid().context("CRD uid")?;
    let deployment = wait_deployment_available(
        &Api::namespaced(client.clone(), rel_ns.name()),
        &fullname,
        TIMEOUT,
    )
    .await?;
    ensure!(
        deployment.spec.as_ref().and_then(|s| s.replicas) == Some(1),
        "one operator replica by default"
    );

    // The ServiceAccount may do what the operator does, and nothing more.
    let user = format!("system:serviceaccount:{}:{fullname}", rel_ns.name());
    let (m, r) = (Some(mail.name()), Some(rel_ns.name()));
    ensure_permissions(
        &client,
        &user,
        &[
            ("list", "postern.io", "esmtplisteners", None, true),
            ("watch", "postern.io", "esmtplisteners", None, true),
            ("patch", "postern.io", "esmtplisteners/status", m, true),
            ("update", "postern.io", "esmtplisteners/finalizers", m, true),
            ("patch", "postern.io", "esmtplisteners", m, false),
            ("delete", "postern.io", "esmtplisteners", m, false),
            ("list", "", "secrets", None, true),
            ("watch", "", "secrets", None, true),
            ("get", "", "secrets", m, false),
            ("create", "", "secrets", m, false),
            ("patch", "", "secrets", m, false),
            ("list", "", "pods", None, true),
            ("watch", "", "pods", None, true),
            ("patch", "", "pods", m, true),
            ("delete", "", "pods", m, true),
            ("get", "", "pods", m, false),
            ("create", "", "configmaps", m, true),
            ("patch", "", "configmaps", m, true),
            // ConfigMaps of finished rollouts are collected.
            ("delete", "", "configmaps", m, true),
            ("get", "", "services", m, true),
            ("create", "", "services", m, true),
            ("delete", "", "services", m, false),
            ("create", "", "persistentvolumeclaims", m, true),
            ("delete", "", "persistentvolumeclaims", m, true),
            ("create", "apps", "deployments", m, true),
            ("patch", "apps", "deployments", m, true),
            ("delete", "apps", "deployments", m, true),
            ("patch", "policy", "poddisruptionbudgets", m, true),
            ("delete", "policy", "poddisruptionbudgets", m, true),
            ("create", "events.k8s.io", "events", m, true),
            ("patch", "events.k8s.io", "events", m, true),
            ("create", "", "events", m, false),
            ("create", "coordination.k8s.io", "leases", r, true),
            (
                "get",
                "coordination.k8s.io",
                "leases:postern-operator",
                r,
                true,
            ),
            (
                "patch",
                "coordination.k8s.io",
                "leases:postern-operator",
                r,
                true,
            ),
            ("patch", "coordination.k8s.io", "leases:another", r, false),
            ("create", "coordination.k8s.io", "leases", m, false),
            ("create", "", "pods", m, false),
            ("list", "", "namespaces", None, false),
            ("create", "rbac.authorization.k8s.io", "roles", m, false),
            ("create", "", "serviceaccounts/token", m, false),
        ],
    )
    .await?;

    // The operator, as the chart's pod runs it, with the ServiceAccount's token.
    let kubeconfig =
        service_account_kubeconfig(&tools, &cluster, rel_ns.name(), &fullname, &scratch.0)?;
    let mut operator = LocalOperator::start(
        &deployment,
        &kubeconfig,
        mail.name(),
        "operator-0",
        &scratch.0,
    )?;
    operator.wait_ready().await?;

    // The examples: the MX relay's TLS Secret and the submission relay's
    // ServiceAccount (for Vault's Kubernetes auth) exist first, as their comments say.
    tls_secret(&mail, "mx-tls").await?;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "postern-submission"}}))?;
    mail.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await?;
    let examples = examples();
    tools.kubectl(&[
        "apply",
        "-n",
        mail.name(),
        "-f",
        examples.to_str().context("examples path")?,
    ])?;
    let started = std::time::Instant::now();
    wait_listeners_ready(&tools, mail.name(), &["mx", "submission", "bounces"])?;
    eprintln!(
        "three examples Ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // What only these permissions allow: the PDB of the 2-replica MX relay,
    // the Lease in the release namespace, events.k8s.io Events.
    mail.api::<PodDisruptionBudget>()
        .get("mx")
        .await
        .context("the MX relay's PodDisruptionBudget")?;
    let lease = rel_ns
        .api::<Lease>()
        .get("postern-operator")
        .await
        .context("the leader Lease in the release namespace")?;
    ensure!(
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some("operator-0"),
        "lease holder: {:?}",
        lease.spec
    );
    let events = mail.api::<Event>().list(&ListParams::default()).await?;
    ensure!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Created")),
        "no Created event from the operator"
    );
    operator.ensure_never_forbidden()?;
    let listener_uids: Vec<String> = ["mx", "submission", "bounces"]
        .iter()
        .map(|n| uid(&tools, Some(mail.name()), &format!("esmtplistener/{n}"))?.context("listener"))
        .collect::<Result<_>>()?;

    // Upgrade with changed values: the operator Deployment changes, nothing else does.
    tools.helm(&[
        "upgrade",
        &release,
        chart,
        "-n",
        rel_ns.name(),
        "--reuse-values",
        "--set",
        "replicas=2",
        "--set",
        "logLevel=debug",
        "--wait",
        "--timeout=2m",
    ])?;
    let upgraded = wait_deployment_available(
        &Api::namespaced(client.clone(), rel_ns.name()),
        &fullname,
        TIMEOUT,
    )
    .await?;
    ensure!(upgraded.spec.as_ref().and_then(|s| s.replicas) == Some(2));
    ensure!(
        container_env(&upgraded, "RUST_LOG").as_deref() == Some("debug"),
        "RUST_LOG after the upgrade: {:?}",
        container_env(&upgraded, "RUST_LOG")
    );
    let args = upgraded
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    ensure!(
        args.iter().any(|a| a == "--lease-name=postern-operator")
            && !args.iter().any(|a| a == "--no-leader-election"),
        "two replicas need leader election: {args:?}"
    );
    ensure!(uid(&tools, None, &format!("crd/{CRD_NAME}"))?.as_deref() == Some(crd_uid.as_str()));
    wait_listeners_ready(&tools, mail.name(), &["mx", "submission", "bounces"])?;

    // Uninstall: the chart's objects go; the CRD and the users' listeners stay.
    let log = operator.stop();
    ensure!(!log.contains("forbidden"), "{log}");
    let out = tools.helm(&[
        "uninstall",
        &release,
        "-n",
        rel_ns.name(),
        "--wait",
        "--timeout=2m",
    ])?;
    ensure!(
        out.contains("kept due to the resource policy") && out.contains(CRD_NAME),
        "helm uninstall did not keep the CRD by its resource policy:\n{out}"
    );
    ensure!(
        uid(&tools, None, &format!("crd/{CRD_NAME}"))?.as_deref() == Some(crd_uid.as_str()),
        "helm uninstall deleted or replaced the CRD"
    );
    for (name, want) in ["mx", "submission", "bounces"].iter().zip(&listener_uids) {
        let got = uid(&tools, Some(mail.name()), &format!("esmtplistener/{name}"))?;
        ensure!(
            got.as_ref() == Some(want),
            "EsmtpListener {name} did not survive helm uninstall"
        );
    }
    ensure!(
        Api::<Deployment>::namespaced(client.clone(), rel_ns.name())
            .get_opt(&fullname)
            .await?
            .is_none(),
        "the operator Deployment is left"
    );
    ensure!(
        Api::<ServiceAccount>::namespaced(client.clone(), rel_ns.name())
            .get_opt(&fullname)
            .await?
            .is_none()
    );
    ensure!(
        Api::<Service>::namespaced(client.clone(), rel_ns.name())
            .get_opt(&format!("{fullname}-metrics"))
            .await?
            .is_none()
    );
    ensure!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&fullname)
            .await?
            .is_none()
    );
    ensure!(
        Api::<ClusterRoleBinding>::all(client.clone())
            .get_opt(&fullname)
            .await?
            .is_none()
    );
    let leader_role = format!("{fullname}-leader-election");
    ensure!(rel_ns.api::<Role>().get_opt(&leader_role).await?.is_none());
    ensure!(
        rel_ns
            .api::<RoleBinding>()
            .get_opt(&leader_role)
            .await?
            .is_none()
    );

    mail.cleanup().await?;
    rel_ns.cleanup().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_restricted_namespace_admits_operator_and_listener_pods() -> Result<()> {
    let cluster = require_cluster!(
        "chart_restricted_namespace_admits_operator_and_listener_pods",
        Ok(())
    );
    let tools = Tools::new(&cluster);
    let client = cluster.client();
    // Spool claims bind to the cluster's pool of volumes; earlier runs leave them Released.
    cluster.recycle_volumes().await?;
    let ns = cluster
        .namespace_with_labels("chart-psa", POD_SECURITY_RESTRICTED)
        .await?;
    let release = ns.name().to_owned();
    let fullname = format!("{release}-postern");
    let scratch = Scratch::new(&release)?;

    // The profile is enforced here: a pod without the restricted settings is refused.
    let bare: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))?;
    match ns.api::<Pod>().create(&PostParams::default(), &bare).await {
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("PodSecurity") => {}
        other => bail!("a non-compliant pod was not refused by PodSecurity: {other:?}"),
    }

    // Namespace-scoped mode; the CRD may be installed by another release already.
    let chart = chart();
    let notes = tools.helm_install(&[
        &release,
        chart.to_str().context("chart path")?,
        "-n",
        ns.name(),
        "--set",
        &format!("watchNamespace={}", ns.name()),
        "--take-ownership",
        "--wait",
        "--timeout=2m",
    ])?;
    ensure!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&fullname)
            .await?
            .is_none(),
        "watchNamespace must not create a ClusterRole"
    );
    ns.api::<Role>()
        .get(&fullname)
        .await
        .context("the namespace Role")?;
    // Namespace mode grants nothing outside the watched namespace.
    let user = format!("system:serviceaccount:{}:{fullname}", ns.name());
    let here = Some(ns.name());
    ensure_permissions(
        &client,
        &user,
        &[
            ("list", "postern.io", "esmtplisteners", here, true),
            ("list", "postern.io", "esmtplisteners", None, false),
            ("list", "", "secrets", here, true),
            ("list", "", "secrets", None, false),
            ("list", "", "secrets", Some("default"), false),
            ("create", "apps", "deployments", here, true),
            ("create", "apps", "deployments", Some("default"), false),
            ("create", "coordination.k8s.io", "leases", here, true),
        ],
    )
    .await?;

    // The chart's operator pod was admitted: the Deployment is available and its
    // ReplicaSet never failed to create a pod.
    let deployment = wait_deployment_available(&ns.api(), &fullname, TIMEOUT).await?;
    let replica_sets = ns.api::<ReplicaSet>().list(&ListParams::default()).await?;
    for rs in &replica_sets.items {
        let failures: Vec<_> = rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ == "ReplicaFailure")
            .collect();
        ensure!(failures.is_empty(), "{}: {failures:?}", rs.name_any());
    }
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=postern"))
        .await?;
    ensure!(pods.items.len() == 1, "operator pods: {}", pods.items.len());

    // The listener pods the operator creates are admitted too: the NOTES.txt sample
    // (applied exactly as NOTES prints it) and the MX relay (a Secret volume, 2 replicas).
    let kubeconfig =
        service_account_kubeconfig(&tools, &cluster, ns.name(), &fullname, &scratch.0)?;
    let mut operator = LocalOperator::start(
        &deployment,
        &kubeconfig,
        ns.name(),
        "operator-psa",
        &scratch.0,
    )?;
    operator.wait_ready().await?;
    let sample: String = notes
        .lines()
        .skip_while(|l| !l.contains("<<'YAML'"))
        .skip(1)
        .take_while(|l| l.trim() != "YAML")
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    ensure!(
        sample.contains("kind: EsmtpListener"),
        "no sample in NOTES.txt:\n{notes}"
    );
    let sample_path = scratch.0.join("sample.yaml");
    std::fs::write(&sample_path, &sample)?;
    tools.kubectl(&[
        "apply",
        "-n",
        ns.name(),
        "-f",
        sample_path.to_str().context("path")?,
    ])?;
    tls_secret(&ns, "mx-tls").await?;
    let mx = examples().join("mx-relay.yaml");
    tools.kubectl(&["apply", "-n", ns.name(), "-f", mx.to_str().context("path")?])?;
    wait_listeners_ready(&tools, ns.name(), &["relay", "mx"])?;
    for name in ["relay-0", "mx-0", "mx-1"] {
        wait_deployment_available(&ns.api(), name, TIMEOUT).await?;
    }
    let listener_pods = poll("the three listener pods", TIMEOUT, || async {
        let pods = ns
            .api::<Pod>()
            .list(&ListParams::default().labels("postern.io/listener"))
            .await?;
        Ok((pods.items.len() == 3).then_some(pods.items))
    })
    .await?;
    for pod in &listener_pods {
        let spec = pod.spec.as_ref().context("pod spec")?;
        let sc = spec.containers[0]
            .security_context
            .as_ref()
            .context("listener container securityContext")?;
        ensure!(
            sc.read_only_root_filesystem == Some(true),
            "{}",
            pod.name_any()
        );
    }
    operator.ensure_never_forbidden()?;
    drop(operator);

    tools.helm(&[
        "uninstall",
        &release,
        "-n",
        ns.name(),
        "--wait",
        "--timeout=2m",
    ])?;
    ensure!(
        uid(&tools, None, &format!("crd/{CRD_NAME}"))?.is_some(),
        "the CRD must survive helm uninstall"
    );
    ns.cleanup().await
}

/// `version` and `appVersion` in Chart.yaml are `[workspace.package] version`.
#[test]
fn chart_version_follows_the_crate() -> Result<()> {
    let cargo = std::fs::read_to_string(workspace().join("Cargo.toml"))?;
    let mut in_package = false;
    let mut crate_version = None;
    for line in cargo.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package && let Some(v) = line.strip_prefix("version") {
            crate_version = Some(
                v.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_owned(),
            );
        }
    }
    let crate_version = crate_version.context("no [workspace.package] version in Cargo.toml")?;
    let chart_yaml = std::fs::read_to_string(chart().join("Chart.yaml"))?;
    let field = |key: &str| {
        chart_yaml
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    ensure!(
        field("version:").as_deref() == Some(crate_version.as_str()),
        "Chart.yaml version {:?} != crate version {crate_version}",
        field("version:")
    );
    ensure!(
        field("appVersion:").as_deref() == Some(crate_version.as_str()),
        "Chart.yaml appVersion {:?} != crate version {crate_version}",
        field("appVersion:")
    );
    Ok(())
}

/// The chart's CRD is the generated file (`postern-operator crd` > crds/…, which the
/// operator's own test keeps current).
#[test]
fn chart_crd_is_the_generated_one() -> Result<()> {
    let generated = std::fs::read(workspace().join("crds/esmtplisteners.postern.io.yaml"))?;
    let copy = std::fs::read(chart().join("files/esmtplisteners.postern.io.yaml"))?;
    ensure!(
        generated == copy,
        "charts/postern/files/esmtplisteners.postern.io.yaml differs from the generated crds/esmtplisteners.postern.io.yaml; copy it:\n\n    cp crds/esmtplisteners.postern.io.yaml charts/postern/files/\n"
    );
    Ok(())
}
