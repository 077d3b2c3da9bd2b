//! `sluice-proxy`: run from a YAML table file, check one, or run the demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_proxy::process::{self, Terminate};
use sluice_proxy::server::Proxy;
use sluice_proxy::{admin, compile, demo, reload, table, upstream};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "sluice-proxy",
    version,
    about = "Sluice reverse proxy and load balancer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve from a routing-table file; reload it on change and on SIGHUP.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Address of the admin listener (/healthz, /readyz, /debug/table).
        #[arg(long, env = "SLUICE_ADMIN")]
        admin: Option<SocketAddr>,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Validate a routing-table file and exit non-zero if it is invalid (like `haproxy -c`).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start two demo backends and a proxy in front of them.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
}

#[derive(clap::Args)]
struct RuntimeArgs {
    /// Worker threads (default: one per CPU). 1 runs everything on one thread.
    #[arg(long, env = "SLUICE_THREADS")]
    threads: Option<usize>,
    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "30s")]
    drain_timeout: table::Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::init_logging();
    let result = match cli.command {
        Command::Check { config } => return check(&config),
        Command::Run {
            config,
            admin,
            runtime,
        } => runtime.block_on(run(config, admin, runtime.drain_timeout)),
        Command::Demo {
            listen,
            admin,
            runtime,
        } => runtime.block_on(run_demo(listen, admin, runtime.drain_timeout)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

impl RuntimeArgs {
    fn block_on<F: Future<Output = anyhow::Result<()>>>(&self, f: F) -> anyhow::Result<()> {
        process::runtime(self.threads)
            .context("cannot start the async runtime")?
            .block_on(f)
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    let parsed = match table::from_yaml_file(config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match compile::compile(parsed, &upstream::Upstreams::default()) {
        Ok(compiled) => {
            for w in &compiled.warnings {
                eprintln!("{}: warning: {w}", config.display());
            }
            println!(
                "{}: valid ({} listeners, {} backends, {} warnings)",
                config.display(),
                compiled.listeners.len(),
                compiled.backends.len(),
                compiled.warnings.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: PathBuf,
    admin: Option<SocketAddr>,
    drain: table::Duration,
) -> anyhow::Result<()> {
    let terminate = Terminate::register().context("cannot handle SIGTERM/SIGINT")?;
    let proxy = Proxy::new();
    if let Some(addr) = admin {
        admin::start(proxy.clone(), addr)
            .await
            .with_context(|| format!("cannot bind the admin listener {addr}"))?;
    }
    // Watch before the first read, so no change or SIGHUP during start-up is lost.
    let reloader = reload::Reloader::start(config);
    // At start there is no last good table to fall back to: refuse to run.
    let (bytes, parsed) = reloader.read()?;
    apply_initial(&proxy, parsed).await?;
    tokio::spawn(reloader.run(proxy.clone(), bytes));
    terminate.wait_and_drain(&proxy, drain).await;
    Ok(())
}

async fn run_demo(
    listen: SocketAddr,
    admin_addr: SocketAddr,
    drain: table::Duration,
) -> anyhow::Result<()> {
    let terminate = Terminate::register().context("cannot handle SIGTERM/SIGINT")?;
    let proxy = Proxy::new();
    let admin = admin::start(proxy.clone(), admin_addr)
        .await
        .with_context(|| format!("cannot bind the admin listener {admin_addr} (use --admin)"))?;
    let blue = demo::start_backend("blue").await.context("demo backend")?;
    let green = demo::start_backend("green").await.context("demo backend")?;
    apply_initial(&proxy, demo::table(listen, blue, green))
        .await
        .context("use --listen to pick another address")?;
    println!(
        "Sluice demo is running. Try:\n\
         \x20 curl http://{listen}/                                # blue and green, weighted 3:1\n\
         \x20 curl http://{listen}/blue/anything                   # Prefix /blue -> blue\n\
         \x20 curl http://{listen}/green                           # Exact /green -> green\n\
         \x20 curl -H 'Host: blue.localhost' http://{listen}/green # host rule beats paths of other hosts\n\
         \x20 curl http://{admin}/debug/table                      # the live routing table\n\
         \x20 curl http://{admin}/readyz\n\
         Backends: blue={blue} green={green}. Ctrl-C to stop."
    );
    terminate.wait_and_drain(&proxy, drain).await;
    Ok(())
}

async fn apply_initial(proxy: &Arc<Proxy>, parsed: table::RoutingTable) -> anyhow::Result<()> {
    let applied = proxy.apply(parsed).await?;
    for w in &applied.warnings {
        warn!("{w}");
    }
    if let Some(first) = applied.bind_errors.first() {
        anyhow::bail!("{first}");
    }
    info!("table loaded; serving");
    Ok(())
}
