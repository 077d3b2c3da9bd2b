//! Scripted peers for the probe tests: a loopback listener whose one
//! connection runs a script of exact reads and writes.

use super::{PhaseTracker, Report, Target, run};
use crate::table::Probe;
use std::future::Future;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Bounds every wait in these tests, so a broken probe fails instead of hanging.
const BOUND: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Peer {
    pub target: Target,
    handle: JoinHandle<()>,
}

/// A peer on 127.0.0.1 that runs `script` on the first connection it accepts.
pub async fn peer<F, Fut>(script: F) -> Peer
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await;
    });
    Peer {
        target: Target {
            host: "127.0.0.1".into(),
            port,
        },
        handle,
    }
}

impl Peer {
    /// Waits for the script to end, failing the test if one of its
    /// assertions did.
    pub async fn finish(self) {
        tokio::time::timeout(BOUND, self.handle)
            .await
            .expect("the peer's script did not end")
            .expect("the peer's script failed");
    }
}

/// Runs the probe as the scheduler would (minus the check's own timeout).
pub async fn check(probe: &Probe, target: &Target) -> Report {
    let phase = PhaseTracker::default();
    tokio::time::timeout(BOUND, run(probe, target, &phase))
        .await
        .expect("the probe did not finish")
}

/// Reads until `end` has arrived (returning everything read), or EOF.
pub async fn read_until(stream: &mut (impl AsyncReadExt + Unpin), end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Reads until the peer closes.
pub async fn read_to_end(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got).await;
    got
}

/// A port nothing listens on (bound, then released).
pub async fn refused_target() -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    Target {
        host: "127.0.0.1".into(),
        port,
    }
}

/// A TLS server with a fresh self-signed certificate for `localhost`.
pub fn tls_acceptor(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsAcceptor {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], private)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
