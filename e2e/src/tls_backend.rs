//! In-process HTTPS backends for backend-TLS tests: a test CA (rcgen) that
//! issues server and client certificates, and a TLS server (tokio-rustls, then
//! hyper's auto server: HTTP/1.1 or HTTP/2) that records what each connection
//! showed: the SNI, the ALPN protocol, the client certificate, the HTTP version
//! of each request. Every response carries `x-backend: <name>`.

use bytes::Bytes;
use http::{Response, Version};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate in PEM, for a backend's `tls.ca`.
    pub pem: String,
    der: CertificateDer<'static>,
}

/// A certificate and its key, in PEM (for the table) and DER (for rustls).
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Issued {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The `certificates` entry `id` of a table (two-space indented block).
    pub fn table_entry(&self, id: &str) -> String {
        format!(
            "  {id}:\n    chain_pem: |\n{}    private_key: |\n{}",
            indent(&self.chain_pem, 6),
            indent(&self.key_pem, 6)
        )
    }
}

/// `text` with every line indented by `by` spaces (YAML block scalars).
pub fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mutual TLS to a backend).
    pub fn client(&self, name: &str) -> Issued {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        Arc::new(roots)
    }
}

/// A self-signed server certificate for `names` (no CA vouches for it).
pub fn self_signed(names: &[&str]) -> Issued {
    let made = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    Issued {
        chain_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
        key_der: made.signing_key.serialize_der(),
    }
}

/// How a TLS backend is set up.
pub struct TlsBackendOptions<'a> {
    pub certificate: &'a Issued,
    /// Protocols the server accepts by ALPN (in its order of preference).
    pub alpn: &'a [&'a str],
    /// Require a client certificate issued by this CA.
    pub client_ca: Option<&'a TestCa>,
}

/// What one accepted TLS connection showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub sni: Option<String>,
    pub alpn: Option<String>,
    /// The leaf of the client's certificate chain, if it sent one.
    pub client_certificate: Option<Vec<u8>>,
}

#[derive(Default)]
struct Stats {
    accepted: AtomicUsize,
    failed: AtomicUsize,
    handshakes: Mutex<Vec<Handshake>>,
    versions: Mutex<Vec<Version>>,
}

pub struct TlsBackend {
    pub addr: SocketAddr,
    name: String,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

impl TlsBackend {
    pub async fn start(name: &str, options: TlsBackendOptions<'_>) -> TlsBackend {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match options.client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(ca.roots(), provider())
                    .build()
                    .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let cert = options.certificate;
        let mut config = builder
            .with_single_cert(vec![cert.der.clone()], cert.key())
            .unwrap();
        config.alpn_protocols = options.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            name.to_owned(),
            stats.clone(),
        ));
        TlsBackend {
            addr,
            name: name.to_owned(),
            stats,
            accept,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Handshakes that failed (the peer refused our certificate, or sent
    /// none when one is required, or spoke no TLS).
    pub fn failed(&self) -> usize {
        self.stats.failed.load(Ordering::SeqCst)
    }

    /// Completed handshakes, in order.
    pub fn handshakes(&self) -> Vec<Handshake> {
        self.stats.handshakes.lock().unwrap().clone()
    }

    /// The HTTP version of every request received, in order.
    pub fn versions(&self) -> Vec<Version> {
        self.stats.versions.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.stats.versions.lock().unwrap().len()
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, tls: TlsAcceptor, name: String, stats: Arc<Stats>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let (tls, name, stats) = (tls.clone(), name.clone(), stats.clone());
        connections.spawn(async move {
            let stream =
                match tokio::time::timeout(Duration::from_secs(5), tls.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    _ => {
                        stats.failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
            let (_, session) = stream.get_ref();
            stats.handshakes.lock().unwrap().push(Handshake {
                sni: session.server_name().map(str::to_owned),
                alpn: session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                client_certificate: session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec()),
            });
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                stats.versions.lock().unwrap().push(req.version());
                let response = Response::builder()
                    .header("x-backend", name.as_str())
                    .body(Full::new(Bytes::from(name.clone())))
                    .unwrap();
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
