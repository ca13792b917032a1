//! The command line: run, `check`, `drain`, and `spool list|show`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use postern_config::{Config, DEFAULT_SPOOL_PATH};
use postern_spool::MessageId;
use postern_tls::{TlsMetrics, TlsProvider};

use crate::{
    admin_client,
    server::{self, StartError},
};

/// Exit code for bad input: configuration, TLS sources, malformed message ids.
const EXIT_BAD_INPUT: u8 = 2;

/// Postern's ESMTP relay listener.
#[derive(Debug, Parser)]
#[command(name = "postern-listener", version, about)]
pub struct Cli {
    /// The YAML configuration file; without it, the embedded default (127.0.0.1:2525,
    /// relaying from loopback, spool in ./postern-spool, log to stdout).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the listener (the default).
    Run,
    /// Validate the configuration and exit: 0 when valid, 2 with one line when not.
    Check,
    /// Stop taking mail (new connections get 421), keep delivering, and report the
    /// queue depth until it is empty.
    Drain {
        /// The admin endpoint; by default the configuration's `admin.listen`.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// Ask for the drain and exit without waiting for the queue to empty.
        #[arg(long)]
        no_wait: bool,
    },
    /// Inspect the spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SpoolCommand {
    /// One JSON object per line per message: id, sender, recipients, size, received_at, …
    List {
        /// The spool directory.
        #[arg(long, default_value = DEFAULT_SPOOL_PATH)]
        spool: PathBuf,
    },
    /// The stored message bytes, exactly as they will be relayed.
    Show {
        /// The message id.
        id: String,
        /// The spool directory.
        #[arg(long, default_value = DEFAULT_SPOOL_PATH)]
        spool: PathBuf,
    },
}

impl Cli {
    /// The diagnostics level when `RUST_LOG` is unset: `info` while serving, `warn`
    /// for the one-shot commands, whose output is their answer.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            None | Some(Command::Run) => "info",
            Some(_) => "warn",
        }
    }

    /// Runs the chosen command and returns the process exit code.
    pub async fn run(self) -> ExitCode {
        match self.command.unwrap_or(Command::Run) {
            Command::Run => match load(self.config.as_deref()) {
                Ok(config) => run(config).await,
                Err(code) => code,
            },
            Command::Check => match load(self.config.as_deref()) {
                Ok(config) => check(&config).await,
                Err(code) => code,
            },
            Command::Drain { admin, no_wait } => {
                let admin = match admin {
                    Some(admin) => admin,
                    None => match load(self.config.as_deref()) {
                        Ok(config) => loopback(config.admin.listen.socket_addr()),
                        Err(code) => return code,
                    },
                };
                drain(admin, no_wait).await
            }
            Command::Spool {
                command: SpoolCommand::List { spool },
            } => list(&spool),
            Command::Spool {
                command: SpoolCommand::Show { id, spool },
            } => show(&spool, &id),
        }
    }
}

fn load(path: Option<&Path>) -> Result<Config, ExitCode> {
    let Some(path) = path else {
        return Ok(Config::embedded_default());
    };
    Config::load(path).map_err(|e| fail(EXIT_BAD_INPUT, &format!("config error: {e}")))
}

async fn run(config: Config) -> ExitCode {
    let running = match server::start(config).await {
        Ok(running) => running,
        Err(StartError::Tls(line)) => return fail(EXIT_BAD_INPUT, &format!("TLS error: {line}")),
        Err(e @ StartError::Other(_)) => return fail(1, &format!("cannot start: {e}")),
    };
    wait_for_signal().await;
    tracing::info!("shutdown requested");
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &format!("shutdown: {e:#}")),
    }
}

/// Validates the file and loads every TLS source once, without binding anything.
async fn check(config: &Config) -> ExitCode {
    let metrics = TlsMetrics::default();
    for (i, listener) in config.listeners.iter().enumerate() {
        if let Err(e) = TlsProvider::start(listener, metrics.clone()).await {
            return fail(EXIT_BAD_INPUT, &format!("TLS error: listeners[{i}].{e}"));
        }
    }
    println!(
        "configuration is valid: {} listener(s)",
        config.listeners.len()
    );
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// An all-addresses bind address is reached on loopback.
fn loopback(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// `POST /drain`, then `GET /queue` every second, printing the depth when it changes,
/// until it is 0.
async fn drain(admin: std::net::SocketAddr, no_wait: bool) -> ExitCode {
    let (status, body) = match admin_client::request(admin, "POST", "/drain").await {
        Ok(answer) => answer,
        Err(e) => return fail(1, &format!("admin endpoint {admin}: {e}")),
    };
    if status != 202 {
        return fail(
            1,
            &format!("admin endpoint {admin} answered {status}: {}", body.trim()),
        );
    }
    let mut last = None;
    let mut body = body;
    loop {
        let queue: serde_json::Value = match serde_json::from_str(&body) {
            Ok(queue) => queue,
            Err(e) => {
                return fail(
                    1,
                    &format!("admin endpoint {admin}: bad /queue answer ({e})"),
                );
            }
        };
        let depth = queue["depth"].as_u64().unwrap_or(0);
        if last != Some(depth) {
            let sites: Vec<String> = queue["sites"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| format!("{} {}", s["site"].as_str().unwrap_or("?"), s["depth"]))
                .collect();
            if sites.is_empty() {
                println!("queue depth: {depth}");
            } else {
                println!("queue depth: {depth} ({})", sites.join(", "));
            }
            last = Some(depth);
        }
        if depth == 0 {
            println!("drained: nothing left to deliver");
            return ExitCode::SUCCESS;
        }
        if no_wait {
            println!("draining; run again without --no-wait to follow the queue");
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        body = match admin_client::request(admin, "GET", "/queue").await {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                return fail(
                    1,
                    &format!("admin endpoint {admin} answered {status}: {}", body.trim()),
                );
            }
            Err(e) => return fail(1, &format!("admin endpoint {admin}: {e}")),
        };
    }
}

fn list(spool: &Path) -> ExitCode {
    let entries = match postern_spool::list(spool) {
        Ok(entries) => entries,
        Err(e) => return fail(1, &format!("spool {}: {e}", spool.display())),
    };
    let mut out = std::io::stdout().lock();
    for entry in entries {
        match entry {
            Ok(envelope) => {
                let line = serde_json::to_string(&envelope).expect("envelopes serialize");
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => eprintln!("postern-listener: spool {}: {e}", spool.display()),
        }
    }
    ExitCode::SUCCESS
}

fn show(spool: &Path, id: &str) -> ExitCode {
    let Ok(id) = id.parse::<MessageId>() else {
        return fail(
            EXIT_BAD_INPUT,
            &format!("'{id}' is not a message id; expected 32 hex characters"),
        );
    };
    match postern_spool::show(spool, &id) {
        Ok(bytes) => {
            let _ = std::io::stdout().lock().write_all(&bytes);
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, &format!("spool {}: {e}", spool.display())),
    }
}

fn fail(code: u8, line: &str) -> ExitCode {
    eprintln!("postern-listener: {line}");
    ExitCode::from(code)
}
