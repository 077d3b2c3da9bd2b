//! Stops and restarts only the kube-apiserver that `shared/k8s/up` started (etcd
//! keeps running), for the outage test.
//!
//! `up` records the pid in `$CLUSTER_RUN_DIR/kube-apiserver.pid`; the command line
//! is read from /proc before stopping, and the server is started again with exactly
//! those arguments, in its own process group, appending to the same log, with the
//! new pid in the pid file, so `shared/k8s/down` still stops it. If a test fails
//! while the server is stopped, dropping [`ApiServer`] starts it again.

use crate::cluster::notice;
use anyhow::{Context, Result, bail};
use kube::Client;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const RUN_DIR_ENV: &str = "CLUSTER_RUN_DIR";

pub struct ApiServer {
    run_dir: PathBuf,
    pid: u32,
    /// argv of the running server: the binary, then its flags.
    argv: Vec<OsString>,
    stopped: bool,
}

impl ApiServer {
    /// The API server of the cluster `up` started in `run_dir`.
    pub fn of_run_dir(run_dir: &Path) -> Result<Self> {
        let pid_file = run_dir.join("kube-apiserver.pid");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("cannot read {}", pid_file.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} holds no pid", pid_file.display()))?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .with_context(|| format!("kube-apiserver pid {pid} is not running"))?;
        let argv: Vec<OsString> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
            .collect();
        // As `down` does: never signal a process that is not this run dir's server.
        let run_dir_text = run_dir.display().to_string();
        let ours = argv.len() > 1
            && argv
                .iter()
                .any(|a| a.to_string_lossy().contains(&run_dir_text))
            && argv[0].to_string_lossy().contains("kube-apiserver");
        if !ours {
            bail!("pid {pid} does not look like the kube-apiserver of {run_dir_text}: {argv:?}");
        }
        Ok(Self {
            run_dir: run_dir.to_owned(),
            pid,
            argv,
            stopped: false,
        })
    }

    /// SIGTERM, then waits (up to 30 s, then SIGKILL) until the process is gone.
    pub async fn stop(&mut self) -> Result<()> {
        signal(self.pid, "TERM")?;
        self.stopped = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(self.pid) {
            if Instant::now() >= deadline {
                signal(self.pid, "KILL")?;
            }
            if Instant::now() >= deadline + Duration::from_secs(5) {
                bail!("kube-apiserver pid {} survives SIGKILL", self.pid);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts the server again with the same arguments (see the module docs).
    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.run_dir.join("kube-apiserver.log"))?;
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Out of the test's process group, like `up`'s setsid: it outlives the test.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {:?}", self.argv[0]))?;
        self.pid = child.id();
        self.stopped = false;
        std::fs::write(
            self.run_dir.join("kube-apiserver.pid"),
            format!("{}\n", self.pid),
        )?;
        Ok(())
    }

    /// Waits until `/readyz` answers `ok` to `client`, up to `timeout`.
    pub async fn wait_ready(&self, client: &Client, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let request = http::Request::get("/readyz").body(Vec::new())?;
            if let Ok(Ok(body)) =
                tokio::time::timeout(Duration::from_secs(2), client.request_text(request)).await
                && body.trim() == "ok"
            {
                return Ok(started.elapsed());
            }
            if !alive(self.pid) {
                bail!(
                    "kube-apiserver (pid {}) exited; see {}",
                    self.pid,
                    self.run_dir.join("kube-apiserver.log").display()
                );
            }
            if started.elapsed() > timeout {
                bail!("kube-apiserver not ready {timeout:?} after its restart");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if self.stopped {
            notice("restarting the kube-apiserver the failed test stopped");
            if let Err(e) = self.start() {
                notice(&format!("cannot restart kube-apiserver: {e:#}"));
            }
        }
    }
}

/// kill(1): the workspace forbids `unsafe`, which rules out libc.
fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    if !status.success() && alive(pid) {
        bail!("kill -s {name} {pid} failed: {status}");
    }
    Ok(())
}

/// Running, i.e. neither gone nor a zombie (nobody may reap a server `up` started).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
