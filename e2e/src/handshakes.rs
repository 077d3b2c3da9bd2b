//! Full TLS handshakes at a steady pace, each recorded (name, when, the leaf
//! received or why it failed), so a test can change the proxy underneath and
//! then judge every handshake. Clients verify the server against a test CA and
//! never resume a session: each handshake is a full one.

use anyhow::{Context, Result, bail};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// How long one handshake may take before it counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client trusting only `ca`, with `versions`, and session resumption off.
pub fn connector(
    ca: &CertificateDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One handshake with `name`, verified; the leaf received. The connection is
/// closed with close_notify, as a well-behaved client does.
pub async fn handshake(connector: &TlsConnector, addr: SocketAddr, name: &str) -> Result<Vec<u8>> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector
            .connect(ServerName::try_from(name.to_owned())?, tcp)
            .await?;
        let (_, conn) = tls.get_ref();
        if conn.handshake_kind() != Some(HandshakeKind::Full) {
            bail!("not a full handshake: {:?}", conn.handshake_kind());
        }
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .context("no certificate")?
            .to_vec();
        let _ = tls.shutdown().await;
        Ok(leaf)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .context("handshake timed out")?
}

/// One recorded handshake.
#[derive(Debug)]
pub struct Shot {
    pub name: String,
    pub started: Instant,
    pub finished: Instant,
    /// Wall-clock time of `finished`, to compare with the proxy's log.
    pub finished_at: SystemTime,
    /// The leaf received, or the error.
    pub outcome: Result<Vec<u8>, String>,
}

/// Handshakes started at `per_second`, cycling through `names` and `connectors`,
/// until [`Paced::stop`].
pub struct Paced {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<Shot>>,
    began: Instant,
}

impl Paced {
    pub fn start(
        addr: SocketAddr,
        connectors: Vec<TlsConnector>,
        names: Vec<String>,
        per_second: u32,
    ) -> Self {
        assert!(!connectors.is_empty() && !names.is_empty() && per_second > 0);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut running = tokio::task::JoinSet::new();
            // The default (burst) catch-up keeps the average rate when a tick is late.
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
            let mut n = 0usize;
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                let name = names[n % names.len()].clone();
                // Pairs of shots share a connector, so alternate names see each.
                let connector = connectors[(n / 2) % connectors.len()].clone();
                n += 1;
                running.spawn(async move {
                    let started = Instant::now();
                    let outcome = handshake(&connector, addr, &name)
                        .await
                        .map_err(|e| format!("{e:#}"));
                    Shot {
                        name,
                        started,
                        finished: Instant::now(),
                        finished_at: SystemTime::now(),
                        outcome,
                    }
                });
            }
            let mut shots = Vec::with_capacity(n);
            while let Some(shot) = running.join_next().await {
                shots.push(shot.expect("a handshake task panicked"));
            }
            shots.sort_by_key(|s| s.started);
            shots
        });
        Self {
            stop,
            task,
            began: Instant::now(),
        }
    }

    /// How long the handshakes have been going.
    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    /// Stops starting handshakes; every one started, once finished.
    pub async fn stop(self) -> Vec<Shot> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the pacing task panicked")
    }
}
