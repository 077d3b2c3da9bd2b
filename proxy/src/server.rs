//! The proxy runtime: the live table (one `ArcSwap`), listeners opened and closed
//! as tables change, and graceful shutdown.

use crate::compile::{self, CompileError, CompiledTable, ListenerKind, Transport};
use crate::http::conn;
use crate::http::service::ConnInfo;
use crate::runtime::Runtime;
use crate::table::{ListenerTimeouts, RoutingTable};
use crate::tcp::{self, SniSplit};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub struct Proxy {
    table: ArcSwap<CompiledTable>,
    ready: AtomicBool,
    runtime: Runtime,
    listeners: Mutex<HashMap<SocketAddr, CancellationToken>>,
    shutdown: CancellationToken,
    /// Cancelled when the drain deadline passes: connections that cannot be
    /// asked to finish (passed-through TLS) end then.
    drain_deadline: CancellationToken,
    connections: TaskTracker,
}

/// How a connection just accepted is served, from the live table.
enum Accepting {
    Http {
        timeouts: ListenerTimeouts,
        tls: Option<Arc<crate::tls::scopes::ListenerTlsConfigs>>,
        /// An `https` listener's passthrough routes, looked at before the handshake.
        split: Option<SniSplit>,
    },
    Passthrough(Arc<CompiledTable>),
    /// A `tcp` listener's connection, counted open (`None`: over `max_conn`).
    Tcp(Arc<CompiledTable>, Option<tcp::counters::Open>),
    /// Never in the clear on an `https` port whose TLS settings are unusable.
    Closed,
}

/// What applying a table did, for logs and `check`.
#[derive(Debug, Default)]
pub struct Applied {
    pub warnings: Vec<String>,
    /// Listeners that could not be opened; the rest of the table is live.
    pub bind_errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("the proxy is shutting down")]
    ShuttingDown,
}

impl Proxy {
    pub fn new() -> Arc<Self> {
        Self::with_runtime(Runtime::default())
    }

    /// A proxy whose runtime was prepared by the caller (e.g. session keys).
    pub fn with_runtime(runtime: Runtime) -> Arc<Self> {
        Arc::new(Self {
            table: ArcSwap::from_pointee(CompiledTable::empty()),
            ready: AtomicBool::new(false),
            runtime,
            listeners: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            drain_deadline: CancellationToken::new(),
            connections: TaskTracker::new(),
        })
    }

    /// The live table. Callers load it once per request and keep that version.
    pub fn table(&self) -> Arc<CompiledTable> {
        self.table.load_full()
    }

    /// True once a first table is live.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Compiles `table` and makes it live: new listeners are bound first, then the
    /// table is swapped in one step, then listeners it no longer has stop accepting.
    pub async fn apply(self: &Arc<Self>, table: RoutingTable) -> Result<Applied, ApplyError> {
        if self.shutdown.is_cancelled() {
            return Err(ApplyError::ShuttingDown);
        }
        let compiled = compile::compile(table, &self.runtime)?;
        let mut applied = Applied {
            warnings: compiled.warnings.clone(),
            ..Applied::default()
        };
        let wanted: Vec<(SocketAddr, Arc<str>)> = compiled
            .listeners
            .iter()
            .map(|l| (l.bind, l.name.clone()))
            .collect();

        let mut opened = Vec::new();
        {
            let running = self.lock_listeners();
            for (bind, name) in &wanted {
                if running.contains_key(bind) {
                    continue;
                }
                match bind_listener(*bind) {
                    Ok(l) => opened.push((*bind, name.clone(), l)),
                    Err(e) => applied
                        .bind_errors
                        .push(format!("listener `{name}` cannot bind {bind}: {e}")),
                }
            }
        }

        crate::health::start_checks(&compiled, &self.runtime.checks);
        self.table.store(Arc::new(compiled));
        self.ready.store(true, Ordering::Release);

        let mut running = self.lock_listeners();
        for (bind, name, listener) in opened {
            let stop = self.shutdown.child_token();
            running.insert(bind, stop.clone());
            info!(listener = %name, %bind, "listening");
            tokio::spawn(accept_loop(self.clone(), listener, stop));
        }
        running.retain(|bind, stop| {
            let keep = wanted.iter().any(|(b, _)| b == bind);
            if !keep {
                info!(%bind, "listener removed; closing it");
                stop.cancel();
            }
            keep
        });
        Ok(applied)
    }

    /// Stops accepting at once (new connections are refused), lets in-flight
    /// requests finish for up to `deadline`, and returns whether all did.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.shutdown.cancel();
        self.lock_listeners().clear();
        self.connections.close();
        let drained = tokio::time::timeout(deadline, self.connections.wait())
            .await
            .is_ok();
        if !drained {
            warn!(
                remaining = self.connections.len(),
                "drain deadline reached; closing remaining connections"
            );
        }
        self.drain_deadline.cancel();
        drained
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, CancellationToken>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How to serve a connection to the listener at `bind`, from the live
    /// table: a new table's certificates apply to the next connection.
    /// A listener removed by the latest table still serves what it accepted
    /// (each request is answered that the listener is gone).
    fn accepting(&self, bind: SocketAddr) -> Accepting {
        let table = self.table();
        let Some(listener) = table.listener(bind) else {
            return Accepting::Http {
                timeouts: ListenerTimeouts::default(),
                tls: None,
                split: None,
            };
        };
        let http = match &listener.kind {
            ListenerKind::Http(http) => http,
            ListenerKind::Passthrough(_) => return Accepting::Passthrough(table),
            ListenerKind::Tcp(settings) => {
                let open = settings.counters.open(settings.max_conn);
                return Accepting::Tcp(table, open);
            }
        };
        let tls = match &listener.transport {
            Transport::Plain => None,
            Transport::Tls(config) => Some(config.clone()),
            Transport::Unusable => return Accepting::Closed,
        };
        let split = (tls.is_some() && http.passthrough.is_some()).then(|| SniSplit {
            table: table.clone(),
            bind,
            stop: self.drain_deadline.clone(),
        });
        Accepting::Http {
            timeouts: http.timeouts,
            tls,
            split,
        }
    }
}

fn bind_listener(bind: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if bind.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(bind)?;
    socket.listen(4096)
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener, stop: CancellationToken) {
    let Ok(bind) = listener.local_addr() else {
        error!("listener has no local address; not serving it");
        return;
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Accepted sockets do not inherit TCP_NODELAY on Linux.
                let _ = stream.set_nodelay(true);
                let (timeouts, tls, split) = match proxy.accepting(bind) {
                    Accepting::Http {
                        timeouts,
                        tls,
                        split,
                    } => (timeouts, tls, split),
                    Accepting::Passthrough(table) => {
                        let stop = proxy.drain_deadline.clone();
                        proxy
                            .connections
                            .spawn(tcp::passthrough::serve(table, bind, stream, peer, stop));
                        continue;
                    }
                    Accepting::Tcp(table, Some(open)) => {
                        let stop = proxy.drain_deadline.clone();
                        proxy.connections.spawn(tcp::tcp_listener::serve(
                            table, bind, stream, peer, open, stop,
                        ));
                        continue;
                    }
                    // Over the listener's limit: closed at once (counted).
                    Accepting::Tcp(_, None) | Accepting::Closed => continue,
                };
                let info = ConnInfo {
                    peer,
                    bind,
                    tls: tls.is_some(),
                    tls_session: None,
                };
                let stop = stop.clone();
                proxy.connections.spawn(conn::serve(
                    proxy.clone(),
                    stream,
                    info,
                    timeouts,
                    tls,
                    stop,
                    split,
                ));
            }
            Err(e) => {
                // Out of file descriptors and similar: back off rather than spin.
                warn!(%bind, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Dropping the listener closes the socket: new connections are refused.
    drop(listener);
    info!(%bind, "stopped accepting");
}
