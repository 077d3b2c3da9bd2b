//! The real `sluice-controller` binary as a child process, running with the
//! restricted identity against the test cluster.

use crate::binary::controller_binary;
use crate::cluster::Cluster;
use crate::k8s::Namespace;
use crate::process::{raw_get, strip_ansi};
use crate::util::{TempDir, free_addr};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Start-up includes the first list of every watched kind.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to launch the controller. [`ControllerOptions::new`] watches the test's
/// namespace only, so parallel tests do not see each other's Ingresses.
#[derive(Clone)]
pub struct ControllerOptions {
    pub identity: String,
    pub watch_namespaces: Vec<String>,
    /// `--publish-address` or `--publish-service NS/NAME`, as flag and value.
    pub publish: Option<(&'static str, String)>,
    /// `--leader-elect` with the Lease `(namespace, name)`.
    pub lease: Option<(String, String)>,
    pub extra_args: Vec<String>,
}

impl ControllerOptions {
    pub fn new(namespace: &Namespace, identity: &str) -> Self {
        Self {
            identity: identity.to_owned(),
            watch_namespaces: vec![namespace.name().to_owned()],
            publish: None,
            lease: None,
            extra_args: Vec::new(),
        }
    }

    pub fn publish_address(mut self, address: &str) -> Self {
        self.publish = Some(("--publish-address", address.to_owned()));
        self
    }

    pub fn publish_service(mut self, namespace: &str, name: &str) -> Self {
        self.publish = Some(("--publish-service", format!("{namespace}/{name}")));
        self
    }

    pub fn leader_elect(mut self, namespace: &str, lease: &str) -> Self {
        self.lease = Some((namespace.to_owned(), lease.to_owned()));
        self
    }
}

pub struct ControllerProcess {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    identity: String,
    log: PathBuf,
    // Last, so the directory outlives the child's open log file.
    _dir: TempDir,
}

impl ControllerProcess {
    /// Starts the controller; returns once `/readyz` answers 200 (every watch has
    /// synced and the first table is published).
    pub async fn start(cluster: &Cluster, options: ControllerOptions) -> Result<Self> {
        let mut controller = Self::spawn(cluster, options)?;
        controller.wait_ready().await?;
        Ok(controller)
    }

    pub fn spawn(cluster: &Cluster, options: ControllerOptions) -> Result<Self> {
        let binary = controller_binary()?;
        let dir = TempDir::new("controller")?;
        let http = free_addr()?;
        let https = free_addr()?;
        let admin = free_addr()?;
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            cluster.restricted_kubeconfig().display().to_string(),
            "--http-bind".into(),
            http.to_string(),
            "--https-bind".into(),
            https.to_string(),
            "--admin-bind".into(),
            admin.to_string(),
            "--identity".into(),
            options.identity.clone(),
        ];
        for ns in &options.watch_namespaces {
            args.extend(["--watch-namespace".into(), ns.clone()]);
        }
        if let Some((flag, value)) = &options.publish {
            args.extend([(*flag).to_owned(), value.clone()]);
        }
        if let Some((namespace, lease)) = &options.lease {
            args.extend([
                "--leader-elect".into(),
                "--lease-namespace".into(),
                namespace.clone(),
                "--lease-name".into(),
                lease.clone(),
            ]);
        }
        args.extend(options.extra_args);
        let log = dir.path().join("stderr.log");
        let child = Command::new(&binary)
            .args(&args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .env_remove("SLUICE_KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child,
            http,
            https,
            admin,
            identity: options.identity,
            log,
            _dir: dir,
        })
    }

    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sluice-controller {} exited during start-up ({status}); log:\n{}",
                    self.identity,
                    self.logs()
                );
            }
            if let Ok((200, _)) = raw_get(self.admin, "/readyz").await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "sluice-controller {} not ready within {READY_TIMEOUT:?}; log:\n{}",
                    self.identity,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where it serves the Ingresses (`--http-bind`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Where it serves the Ingresses over TLS (`--https-bind`).
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The field manager its status writes carry.
    pub fn field_manager(&self) -> String {
        format!("sluice-controller/{}", self.identity)
    }

    /// Fails when the process has exited.
    pub fn assert_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "sluice-controller {} exited ({status}); log:\n{}",
                self.identity,
                self.logs()
            );
        }
        Ok(())
    }

    /// Everything it logged so far (stderr).
    pub fn logs(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &std::fs::read(&self.log).unwrap_or_default(),
        ))
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.logs()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- sluice-controller {} log ({}) ----\n{}",
                self.identity,
                self.log.display(),
                self.logs()
            );
        }
    }
}
