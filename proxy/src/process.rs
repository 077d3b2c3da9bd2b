//! What every Sluice binary does around its work: logging, the async runtime,
//! and draining on SIGTERM/SIGINT.

use crate::server::Proxy;
use crate::table::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::info;

/// Plain text logs on stderr, filtered by `RUST_LOG` (default `info`); colours only
/// on a terminal.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// A runtime with `threads` workers (default: one per CPU); one thread runs a
/// current-thread runtime, with no cross-thread wake-ups.
pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// SIGTERM and SIGINT, registered before serving so a signal during start-up
/// drains too rather than killing the process.
pub struct Terminate {
    term: Signal,
    int: Signal,
}

impl Terminate {
    /// Must run inside the runtime.
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for a signal, then stops accepting and drains for up to `drain`.
    pub async fn wait_and_drain(mut self, proxy: &Proxy, drain: Duration) {
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        info!("{name}: no longer accepting; draining in-flight requests for up to {drain}");
        if proxy.shutdown(drain.to_std()).await {
            info!("drained; exiting");
        }
    }
}
