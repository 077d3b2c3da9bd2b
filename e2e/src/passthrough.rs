//! Test support for TLS passthrough: backends that terminate TLS themselves
//! with their own rcgen certificates, and clients that can send their
//! ClientHello in pieces.
//!
//! A [`TlsEcho`] backend completes the handshake, writes its name and a newline,
//! then echoes every byte until the client closes its side, and closes too.

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A self-signed certificate: PEM for tables and servers, DER to compare.
pub struct TestCert {
    pub chain: String,
    pub key: String,
    pub der: Vec<u8>,
    /// PKCS#8.
    pub key_der: Vec<u8>,
}

pub fn test_cert(names: &[&str]) -> TestCert {
    let made = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    TestCert {
        chain: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
        der: made.cert.der().to_vec(),
        key_der: made.signing_key.serialize_der(),
    }
}

/// `certificates:` entries for a table.
pub fn certificates_yaml(certs: &[(&str, &TestCert)]) -> String {
    let indent = |text: &str| {
        text.lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    };
    let mut yaml = String::from("certificates:\n");
    for (id, cert) in certs {
        yaml.push_str(&format!(
            "  {id}:\n    chain_pem: |\n{}    private_key: |\n{}",
            indent(&cert.chain),
            indent(&cert.key)
        ));
    }
    yaml
}

/// A TLS echo server with its own certificate (see the module docs).
pub struct TlsEcho {
    pub addr: SocketAddr,
    pub der: Vec<u8>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsEcho {
    pub async fn start(name: &str, hosts: &[&str]) -> Self {
        let cert = test_cert(hosts);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![CertificateDer::from(cert.der.clone())], key)
                .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let greeting = format!("{name}\n");
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            // Owned here, so aborting the server ends its connections too.
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (acceptor, greeting) = (acceptor.clone(), greeting.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let (mut r, mut w) = tokio::io::split(tls);
                    if w.write_all(greeting.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            der: cert.der,
            accepted,
            task,
        }
    }

    /// TCP connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client that accepts any certificate, offers `alpn`, and splits its
/// records (the ClientHello included) at `max_fragment` bytes when given.
pub fn connector(alpn: &[&str], max_fragment: Option<usize>) -> TlsConnector {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(crate::tls_client::any_server_cert())
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.max_fragment_size = max_fragment;
    TlsConnector::from(Arc::new(config))
}

/// A handshake over `stream` with `sni` (an IP address sends no SNI), bounded
/// so a proxy that never answers fails the test rather than hanging it.
pub async fn handshake<S>(connector: &TlsConnector, stream: S, sni: &str) -> Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(sni.to_owned())?;
    let connect = connector.connect(name, stream);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("no TLS handshake with {sni} within 10 s"),
    }
}

/// The DER of the certificate the server sent.
pub fn leaf<S>(stream: &TlsStream<S>) -> Option<Vec<u8>> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
}

/// The first line a [`TlsEcho`] sends: its name.
pub async fn greeting<S: AsyncRead + Unpin>(stream: &mut S) -> Result<String> {
    let mut line = Vec::new();
    let read = async {
        loop {
            let mut byte = [0];
            if stream.read(&mut byte).await? == 0 || byte[0] == b'\n' {
                return Ok::<_, io::Error>(());
            }
            line.push(byte[0]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("no greeting within 10 s")??;
    Ok(String::from_utf8(line)?)
}

/// Writes at most `chunk` bytes at a time with a pause after each, for the
/// first `slow_for` bytes (a ClientHello dribbling in), and records them.
pub struct Dribble<S> {
    inner: S,
    chunk: usize,
    slow_for: usize,
    pause: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    pub written: Arc<Mutex<Vec<u8>>>,
}

impl<S> Dribble<S> {
    pub fn new(inner: S, chunk: usize, slow_for: usize, pause: Duration) -> Self {
        Self {
            inner,
            chunk,
            slow_for,
            pause,
            sleep: None,
            written: Arc::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Dribble<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Dribble<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let done = this.written.lock().unwrap().len();
        if done >= this.slow_for {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if let Some(sleep) = &mut this.sleep {
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        let take = buf.len().min(this.chunk);
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..take]))?;
        this.written.lock().unwrap().extend_from_slice(&buf[..n]);
        this.sleep = Some(Box::pin(tokio::time::sleep(this.pause)));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `len` pseudo-random bytes (xorshift), different per `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
