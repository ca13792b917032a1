//! Postfix's `smtp-sink` as a next hop: every transaction appended to one dump file,
//! and the message markers ([`super::message`]'s `body {marker}` lines) counted in it.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{WAIT, Workdir, is_listening, require_tool};

/// `smtp-sink` on one address; killed when dropped.
pub struct Sink {
    child: Child,
    dump: PathBuf,
}

impl Sink {
    /// Accepts everything at `addr`; `None` (after a loud skip) without Postfix.
    pub fn start(work: &Workdir, addr: SocketAddr) -> Option<Self> {
        Self::start_with(work, addr, &[])
    }

    /// The same with more `smtp-sink` options, e.g. `["-r", "RCPT", "-b", "451 4.3.0
    /// later"]` to refuse every recipient with that 4xx reply. The dump file is shared
    /// by every sink of `work`, so a later sink on the same address appends to it.
    pub fn start_with(work: &Workdir, addr: SocketAddr, options: &[&str]) -> Option<Self> {
        let bin = require_tool("/usr/sbin/smtp-sink")?;
        let dump = work.path().join("sink.dump");
        if !dump.exists() {
            std::fs::File::create(&dump).expect("create the sink's dump file");
        }
        let child = Command::new(bin)
            .args(["-u", "root", "-D"])
            .arg(&dump)
            .args(options)
            .arg(addr.to_string())
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let start = Instant::now();
        while !is_listening(addr) {
            assert!(start.elapsed() < WAIT, "smtp-sink did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, dump })
    }

    /// Everything dumped so far.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.dump).unwrap_or_default()).into_owned()
    }

    /// How many times each marker arrived.
    pub fn markers(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for line in self.received().lines() {
            if let Some(marker) = line.trim_end_matches('\r').strip_prefix("body ") {
                *counts.entry(marker.to_owned()).or_default() += 1;
            }
        }
        counts
    }

    /// Stops it now.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}
