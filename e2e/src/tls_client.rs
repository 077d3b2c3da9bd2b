//! TLS clients for the tests: rustls (ring) connectors that accept any
//! certificate (tests compare the one sent with the one expected) or verify
//! against a test CA, handshakes by SNI, and one HTTP/1.1 request over TLS.

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Accepts any certificate, still checking handshake signatures.
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A connector that takes any server certificate, offering `http/1.1`.
pub fn any_cert_connector(versions: &[&'static SupportedProtocolVersion]) -> TlsConnector {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("ring supports these versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A connector that verifies the server against `ca_pem`, offering `http/1.1`.
pub fn verifying_connector(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem) {
        roots.add(cert).expect("a usable CA certificate");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the defaults")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A handshake with `sni` (an IP address sends none), within 5 s.
pub async fn handshake(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_owned())?;
    tokio::time::timeout(Duration::from_secs(5), async {
        let tcp = TcpStream::connect(addr).await?;
        Ok(connector.connect(name, tcp).await?)
    })
    .await
    .context("no TLS handshake within 5 s")?
}

/// The DER of the certificate the server sent first.
pub fn leaf(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
}

/// A certificate for `names`: its PEM chain and key, and its DER to compare.
pub struct Made {
    pub chain: String,
    pub key: String,
    pub der: Vec<u8>,
}

/// A self-signed ECDSA P-256 certificate for `names`.
pub fn self_signed(names: &[&str]) -> Made {
    let made = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .expect("rcgen makes a certificate");
    Made {
        chain: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
        der: made.cert.der().to_vec(),
    }
}

/// What came back for one HTTP/1.1 request.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Host: host` and `Connection: close` over `stream`, read to
/// the end (within 5 s).
pub async fn get_over<S>(mut stream: S, host: &str, path: &str) -> Result<RawReply>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(request.as_bytes()).await?;
        // A TLS peer may close without close_notify after the response.
        let _ = stream.read_to_end(&mut raw).await;
        Ok::<_, std::io::Error>(())
    })
    .await
    .context("no response within 5 s")??;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Result<RawReply> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no complete response head in {text:?}");
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(RawReply {
        status,
        headers,
        body: body.to_owned(),
    })
}
