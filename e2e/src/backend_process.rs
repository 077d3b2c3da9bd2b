//! A test backend in its own OS process (`src/bin/backend.rs`), so a test can
//! SIGKILL it: the kernel then closes its sockets as it does a crashed server's,
//! with requests in flight unanswered. It counts nothing the test can read;
//! replies say who answered (`x-backend`).

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// The backend binary of this package. Cargo names it only to integration tests
/// (`CARGO_BIN_EXE_*` is unknown while the library compiles), so a test passes
/// `env!("CARGO_BIN_EXE_sluice-e2e-backend")` to [`BackendProcess::start`].
pub const BINARY_NAME: &str = "sluice-e2e-backend";

pub struct BackendProcess {
    pub addr: SocketAddr,
    name: String,
    child: Child,
    /// Held open: the backend exits when it closes (e.g. the test process died).
    _stdin: Option<ChildStdin>,
}

impl BackendProcess {
    /// Starts `binary NAME` on a free loopback port; returns once it listens.
    pub async fn start(binary: &str, name: &str) -> Result<Self> {
        let mut child = Command::new(binary)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {binary}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let first_line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(Duration::from_secs(10), first_line).await {
            Ok(joined) => joined??,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("backend {name} printed no address within 10 s");
            }
        };
        let addr = match line.trim().parse() {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                bail!("backend {name} printed {line:?} instead of its address ({status})");
            }
        };
        Ok(Self {
            addr,
            name: name.to_owned(),
            child,
            _stdin: stdin,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP` freezes the process: the kernel still
    /// accepts connections for it, nothing answers; `CONT` thaws it), with
    /// kill(1), since the workspace forbids `unsafe`.
    pub fn signal(&self, name: &str) -> Result<()> {
        crate::process::send_signal(self.pid(), name)
    }

    /// SIGKILL, and waits until the process is gone (reaped), so every one of its
    /// sockets is closed when this returns.
    pub fn kill(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("backend {} had already exited", self.name);
        }
        // std's Child::kill sends SIGKILL.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
