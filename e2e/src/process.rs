//! The real `sluice-proxy` binary as a child process.

use crate::binary::proxy_binary;
use crate::config_file::{ConfigFile, Layout};
use crate::util::{TempDir, eventually, free_addr};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the proxy may take to become ready (first start includes nothing but
/// process start-up; the binary is built before the clock starts).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How to launch `run`.
#[derive(Default, Clone)]
pub struct Options {
    /// Passed after `run --config F --admin A`, e.g. `["--drain-timeout", "5s"]`.
    pub extra_args: Vec<String>,
    /// How the table file sits on disk.
    pub layout: Layout,
}

pub struct ProxyProcess {
    child: Child,
    admin: SocketAddr,
    /// The table file (`run` only).
    config: Option<ConfigFile>,
    log: PathBuf,
    stdout: PathBuf,
    // Last, so the directory outlives the child's open log files.
    dir: TempDir,
}

impl ProxyProcess {
    /// `run` with `yaml` as the table; returns once `/readyz` answers 200.
    pub async fn start(yaml: &str) -> Result<Self> {
        Self::start_with(yaml, Options::default()).await
    }

    pub async fn start_with(yaml: &str, options: Options) -> Result<Self> {
        let mut proxy = Self::spawn_run(yaml, options)?;
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    /// `run` without waiting for readiness (for start-up failures).
    pub fn spawn_run(yaml: &str, options: Options) -> Result<Self> {
        let binary = proxy_binary()?;
        let dir = TempDir::new("run")?;
        let config = ConfigFile::create(dir.path(), options.layout, yaml)?;
        let admin = free_addr()?;
        let mut args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            config.path().display().to_string(),
            "--admin".into(),
            admin.to_string(),
        ];
        args.extend(options.extra_args);
        let mut proxy = Self::spawn(&binary, &args, dir, admin)?;
        proxy.config = Some(config);
        Ok(proxy)
    }

    /// `demo --listen L --admin A`; returns once `/readyz` answers 200.
    pub async fn demo(listen: SocketAddr, admin: SocketAddr) -> Result<Self> {
        let binary = proxy_binary()?;
        let dir = TempDir::new("demo")?;
        let args = [
            "demo".to_owned(),
            "--listen".into(),
            listen.to_string(),
            "--admin".into(),
            admin.to_string(),
        ];
        let mut proxy = Self::spawn(&binary, &args, dir, admin)?;
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    fn spawn(binary: &Path, args: &[String], dir: TempDir, admin: SocketAddr) -> Result<Self> {
        let log = dir.path().join("stderr.log");
        let stdout = dir.path().join("stdout.log");
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "info")
            // Plain log lines, so tests can search them.
            .env("NO_COLOR", "1")
            .env_remove("SLUICE_ADMIN")
            .env_remove("SLUICE_THREADS")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child,
            admin,
            config: None,
            log,
            stdout,
            dir,
        })
    }

    /// Waits until `/readyz` answers 200; fails early if the process exits.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sluice-proxy exited during start-up ({status}); log:\n{}",
                    self.logs()
                );
            }
            if let Ok((200, _)) = self.admin_get("/readyz").await {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "sluice-proxy not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The `--config` path exactly as the proxy was given it.
    pub fn config_path(&self) -> &Path {
        self.config.as_ref().expect("started with `run`").path()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the table file atomically, as its layout is updated in life.
    pub fn rewrite(&self, yaml: &str) -> Result<()> {
        self.config
            .as_ref()
            .context("started with `run`")?
            .rewrite(yaml)
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with kill(1): the workspace
    /// forbids `unsafe`, which rules out calling libc directly.
    pub fn signal(&self, name: &str) -> Result<()> {
        send_signal(self.pid(), name)
    }

    /// Everything the proxy logged so far (stderr), escape sequences removed.
    pub fn logs(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &std::fs::read(&self.log).unwrap_or_default(),
        ))
    }

    /// Everything the proxy printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout).unwrap_or_default()).into_owned()
    }

    /// Waits until the log has at least `count` lines containing `needle`; returns them.
    pub async fn wait_for_log(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        let what = format!("{count} log line(s) containing {needle:?}");
        eventually(&what, timeout, || async {
            let lines = self.log_lines(needle);
            (lines.len() >= count).then_some(lines)
        })
        .await
        .with_context(|| format!("log so far:\n{}", self.logs()))
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.logs()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    /// Bytes the process has read so far (`rchar` in /proc/PID/io): tells a test
    /// that the proxy has read its table file, before it has parsed it.
    pub fn bytes_read(&self) -> Result<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid()))?;
        io.lines()
            .find_map(|l| l.strip_prefix("rchar:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no rchar in /proc/PID/io")
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "sluice-proxy still running {timeout:?} later; log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// GET on the admin listener: status and body.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        raw_get(self.admin, path).await
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The test failed: the proxy's own account is usually the best clue.
            eprintln!(
                "---- sluice-proxy log ({}) ----\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}

/// Sends signal `name` (`TERM`, `STOP`, …) to `pid` with kill(1).
pub fn send_signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -s {name} {pid} failed: {status}");
    }
    Ok(())
}

/// Current resident set size of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmRSS")
}

/// Peak resident set size of `pid` in KiB (`VmHWM`): catches a spike that falls
/// between two samples of `rss_kib`.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    proc_status_kib(pid, "VmHWM")
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// A one-shot HTTP/1.1 GET on a fresh connection (no pool to outlive a restart).
pub async fn raw_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("admin request timed out")?
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), in case colours slip through.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `sluice-proxy check --config <file>` on `yaml` written to a temporary file.
pub fn check(yaml: &str) -> Result<CheckOutput> {
    with_table_file("check", yaml, &[])
}

/// Runs `sluice-proxy route --config <file> <args>` (the route tester).
pub fn route(yaml: &str, args: &[&str]) -> Result<CheckOutput> {
    with_table_file("route", yaml, args)
}

fn with_table_file(command: &str, yaml: &str, args: &[&str]) -> Result<CheckOutput> {
    let binary = proxy_binary()?;
    let dir = TempDir::new(command)?;
    let path = dir.path().join("table.yaml");
    std::fs::write(&path, yaml)?;
    let output = Command::new(binary)
        .args([command, "--config"])
        .arg(&path)
        .args(args)
        .env("NO_COLOR", "1")
        .output()?;
    Ok(CheckOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
        path,
        _dir: dir,
    })
}

pub struct CheckOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The checked file, as named on the command line.
    pub path: PathBuf,
    _dir: TempDir,
}
