//! `sluice-controller`: watch the cluster, serve its Ingresses.

use anyhow::Context;
use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_lease_manager::LeaseManagerBuilder;
use sluice_controller::publish::{self, Debounce};
use sluice_controller::snapshot::ObjectKey;
use sluice_controller::sources::Sources;
use sluice_controller::status::{PublishTarget, StatusWriter};
use sluice_controller::translate::{DEFAULT_CONTROLLER_NAME, Options};
use sluice_proxy::admin;
use sluice_proxy::process::{self, Terminate};
use sluice_proxy::runtime::Runtime;
use sluice_proxy::server::Proxy;
use sluice_proxy::sticky::SessionKeys;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::watch;
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "sluice-controller",
    version,
    about = "Sluice Kubernetes ingress controller"
)]
struct Cli {
    /// Kubeconfig file; without it, $KUBECONFIG, ~/.kube/config or the in-cluster
    /// service account are used.
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// IngressClass name served even without an IngressClass object.
    #[arg(long, default_value = "sluice")]
    ingress_class: String,
    /// `spec.controller` of the IngressClasses that are ours.
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
    /// Namespace to watch (repeatable). Default: all namespaces.
    #[arg(long = "watch-namespace")]
    watch_namespaces: Vec<String>,
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_bind: SocketAddr,
    /// Where Ingresses are served over TLS (certificates from `spec.tls`).
    #[arg(long, default_value = "0.0.0.0:8443")]
    https_bind: SocketAddr,
    /// Serve plain HTTP only (no `--https-bind` listener).
    #[arg(long)]
    no_https: bool,
    /// The port clients use for HTTPS, for `ssl-redirect` Locations (443 is left
    /// out of the URL). Behind a Service mapping 443 to `--https-bind`, keep 443.
    #[arg(long, default_value_t = 443)]
    https_redirect_port: u16,
    /// /healthz, /readyz, /debug/table.
    #[arg(long, default_value = "0.0.0.0:9090")]
    admin_bind: SocketAddr,
    /// Publish this Service's address in Ingress status (NAMESPACE/NAME).
    #[arg(long, conflicts_with = "publish_address")]
    publish_service: Option<ObjectKey>,
    /// Publish this IP or host name in Ingress status.
    #[arg(long)]
    publish_address: Option<String>,
    /// Serves requests that match no Ingress (NAMESPACE/NAME; its first port).
    #[arg(long)]
    default_backend_service: Option<ObjectKey>,
    /// Elect one replica (Lease) to write status; without it this replica writes.
    #[arg(long)]
    leader_elect: bool,
    #[arg(long, default_value = "sluice-controller")]
    lease_name: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's name in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "30s")]
    drain_timeout: sluice_proxy::table::Duration,
    /// Keys for sticky-session cookies, one per line, the first signs (e.g.
    /// `openssl rand -base64 32`); an Ingress can name its own in a
    /// `sluice.dev/session-key` Secret. Replicas sharing the file route a cookie
    /// alike. Without it, a random key per process.
    #[arg(long, env = "SLUICE_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::init_logging();
    // Read before anything starts, so a bad file stops the process at once.
    let keys = match &cli.session_key_file {
        Some(path) => match SessionKeys::from_file(path) {
            Ok(keys) => keys,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => SessionKeys::generate(),
    };
    let result = match process::runtime(cli.threads) {
        Ok(rt) => rt.block_on(run(cli, keys)),
        Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, keys: SessionKeys) -> anyhow::Result<()> {
    let terminate = Terminate::register().context("cannot handle SIGTERM/SIGINT")?;
    let client = client(cli.kubeconfig.as_deref()).await?;
    let identity = cli
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));

    let proxy = Proxy::with_runtime(Runtime::with_session_keys(keys));
    admin::start(proxy.clone(), cli.admin_bind)
        .await
        .with_context(|| format!("cannot bind the admin listener {}", cli.admin_bind))?;

    let options = Options {
        ingress_class: cli.ingress_class.clone(),
        controller_name: cli.controller_name.clone(),
        http_bind: cli.http_bind,
        https_bind: (!cli.no_https).then_some(cli.https_bind),
        https_redirect_port: cli.https_redirect_port,
        default_backend_service: cli.default_backend_service.clone(),
    };
    let sources = Sources::start(client.clone(), &cli.watch_namespaces)
        .await
        .context("cannot start watching the cluster")?;
    let (statuses_tx, statuses_rx) = watch::channel(None);
    let publisher_proxy = proxy.clone();
    tokio::spawn(async move {
        publish::run(
            &sources,
            &publisher_proxy,
            &options,
            Debounce::default(),
            &statuses_tx,
        )
        .await;
    });

    // Without leader election this replica always leads; the sender lives as long
    // as `run`, so the writer never sees the channel close.
    let (always_leader, leads_alone) = watch::channel(true);
    let leader = if cli.leader_elect {
        let manager = LeaseManagerBuilder::new(client.clone(), &cli.lease_name)
            .with_namespace(&cli.lease_namespace)
            .with_identity(&identity)
            .build()
            .await
            .context("cannot set up leader election")?;
        let (leader, _task) = manager.watch().await;
        leader
    } else {
        leads_alone
    };
    let target = match (&cli.publish_service, &cli.publish_address) {
        (Some(service), _) => PublishTarget::Service(service.clone()),
        (None, Some(address)) => PublishTarget::Address(address.clone()),
        (None, None) => PublishTarget::None,
    };
    let writer = StatusWriter::new(client, target, &identity);
    tokio::spawn(writer.run(leader, statuses_rx));
    info!(%identity, http = %cli.http_bind, https = ?(!cli.no_https).then_some(cli.https_bind), admin = %cli.admin_bind, "sluice-controller started");

    terminate.wait_and_drain(&proxy, cli.drain_timeout).await;
    drop(always_leader);
    Ok(())
}

async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Client::try_from(config).context("cannot build the Kubernetes client")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "sluice".into())
}
