//! `sluice-proxy`: run from a YAML table file, check one, or run the demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_proxy::process::{self, Terminate};
use sluice_proxy::runtime::Runtime;
use sluice_proxy::server::Proxy;
use sluice_proxy::sticky::SessionKeys;
use sluice_proxy::{admin, compile, demo, reload, table};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Show which route a request would get from a table file, and why.
    Route {
        #[arg(long, short)]
        config: PathBuf,
        /// The request's Host (a port is ignored, as when serving).
        #[arg(long)]
        host: String,
        /// The path, optionally with `?query`.
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, `Name: value`; repeat for more.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// The client address.
        #[arg(long, default_value = "127.0.0.1")]
        src: String,
        /// The listener, by name (default: the first HTTP listener).
        #[arg(long)]
        listener: Option<String>,
        /// Print JSON (what the admin `/debug/route` answers) instead of text.
        #[arg(long)]
        json: bool,
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
    /// Keys for sticky-session cookies, one per line, the first signs (e.g.
    /// `openssl rand -base64 32`). Replicas and restarts sharing the file route a
    /// cookie alike. Without it, a random key per process.
    #[arg(long, env = "SLUICE_SESSION_KEY_FILE")]
    session_key_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    process::init_logging();
    let result = match cli.command {
        Command::Check { config } => return check(&config),
        Command::Route {
            config,
            host,
            path,
            method,
            headers,
            src,
            listener,
            json,
        } => {
            let mut probe = compile::explain::Probe::new(host);
            probe.path_and_query = path;
            probe.listener = listener;
            let built = probe
                .method(&method)
                .and_then(|()| probe.client(&src))
                .and_then(|()| headers.iter().try_for_each(|h| probe.header(h)));
            if let Err(e) = built {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            return route(&config, &probe, json);
        }
        Command::Run {
            config,
            admin,
            runtime,
        } => runtime.block_on(|proxy| run(proxy, config, admin, runtime.drain_timeout)),
        Command::Demo {
            listen,
            admin,
            runtime,
        } => runtime.block_on(|proxy| run_demo(proxy, listen, admin, runtime.drain_timeout)),
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
    /// Runs `serve` on a proxy with these settings.
    fn block_on<F: Future<Output = anyhow::Result<()>>>(
        &self,
        serve: impl FnOnce(Arc<Proxy>) -> F,
    ) -> anyhow::Result<()> {
        let keys = match &self.session_key_file {
            Some(path) => SessionKeys::from_file(path).map_err(anyhow::Error::msg)?,
            None => SessionKeys::generate(),
        };
        let rt = process::runtime(self.threads).context("cannot start the async runtime")?;
        rt.block_on(async {
            let proxy = Proxy::with_runtime(Runtime::with_session_keys(keys));
            serve(proxy).await
        })
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    let parsed = match table::from_yaml_file(config) {
        Ok(t) => t,
        // Every inconsistency at once, one per line, so one run fixes them all.
        Err(table::LoadError::Invalid { origin, errors }) => {
            for e in errors {
                eprintln!("{origin}: {e}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match compile::compile(parsed, &sluice_proxy::runtime::Runtime::default()) {
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

/// `route`: exit 0 when a route (or the default backend) answers, 1 when none
/// does or the table is invalid, 2 for bad arguments.
fn route(config: &std::path::Path, probe: &compile::explain::Probe, json: bool) -> ExitCode {
    let compiled = match table::from_yaml_file(config)
        .map_err(|e| e.to_string())
        .and_then(|t| {
            compile::compile(t, &sluice_proxy::runtime::Runtime::default())
                .map_err(|e| format!("{}: {e}", config.display()))
        }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match compile::explain::explain(&compiled, probe) {
        Ok(explanation) => {
            if json {
                match serde_json::to_string_pretty(&explanation) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("cannot render: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{explanation}");
            }
            if explanation.route.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    proxy: Arc<Proxy>,
    config: PathBuf,
    admin: Option<SocketAddr>,
    drain: table::Duration,
) -> anyhow::Result<()> {
    let terminate = Terminate::register().context("cannot handle SIGTERM/SIGINT")?;
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
    proxy: Arc<Proxy>,
    listen: SocketAddr,
    admin_addr: SocketAddr,
    drain: table::Duration,
) -> anyhow::Result<()> {
    let terminate = Terminate::register().context("cannot handle SIGTERM/SIGINT")?;
    let admin = admin::start(proxy.clone(), admin_addr)
        .await
        .with_context(|| format!("cannot bind the admin listener {admin_addr} (use --admin)"))?;
    let blue = demo::start_backend("blue").await.context("demo backend")?;
    let green = demo::start_backend("green").await.context("demo backend")?;
    let table = demo::table(listen, blue, green).map_err(anyhow::Error::msg)?;
    apply_initial(&proxy, table)
        .await
        .context("use --listen to pick another address")?;
    println!(
        "Sluice demo is running. Try:\n\
         \x20 curl http://{listen}/                                # blue and green, weighted 3:1\n\
         \x20 curl http://{listen}/blue/anything                   # Prefix /blue -> blue\n\
         \x20 curl http://{listen}/green                           # Exact /green -> green\n\
         \x20 curl -H 'Host: blue.localhost' http://{listen}/green # host rule beats paths of other hosts\n\
         \x20 curl -i http://{listen}/old/page?x=1                # 301 to /green/page?x=1\n\
         \x20 curl -i http://{listen}/maintenance                 # a fixed 503 page\n\
         \x20 curl -i -H 'X-Canary: 1' http://{listen}/           # header rule -> green, x-canary response header\n\
         \x20 curl 'http://{admin}/debug/route?host=localhost&path=/old/x' # which route answers, and why\n\
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
