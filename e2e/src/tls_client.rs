//! TLS clients towards the proxy, and certificates made for a test with rcgen:
//! a CA with the client certificates it signs, server certificates, and the
//! rustls client configurations (ring) that present them.

use crate::client::{Body, REQUEST_TIMEOUT, Reply};
use anyhow::{Context, Result};
use http::Request;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate authority for client certificates.
pub struct TestCa {
    /// Its certificate, PEM (what `client_auth.ca` takes).
    pub pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate (leaf only) with its key.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl ClientCert {
    pub fn der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// A client certificate with subject `O=<organization>, CN=<common_name>`
    /// (in that order, so RFC 4514 writes `CN=..,O=..`) and serial `serial`.
    pub fn client(&self, organization: &str, common_name: &str, serial: &[u8]) -> ClientCert {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &*self.issuer).unwrap();
        ClientCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }
}

/// A self-signed server certificate for `names`: PEM chain and key.
pub fn server_cert(names: &[&str]) -> (String, String) {
    let made = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem())
}

/// `text` indented by `spaces`, one line per line, for YAML block scalars.
pub fn indented(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

pub const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client accepting any server certificate (the tests are about the client's),
/// presenting `cert` when asked, speaking HTTP/1.1. Clones share one session
/// cache, so a second connection can resume.
pub fn client_config(
    cert: Option<&ClientCert>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)));
    let mut config = match cert {
        Some(c) => builder
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection with `sni` (an IP address sends none).
pub async fn connect(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
) -> Result<TlsStream<TcpStream>> {
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(sni.to_owned())?;
        anyhow::Ok(
            TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?,
        )
    };
    tokio::time::timeout(REQUEST_TIMEOUT, handshake)
        .await
        .context("no TLS handshake in time")?
}

/// Sends one HTTP/1.1 request on `stream` and reads the whole reply.
pub async fn send_on(stream: TlsStream<TcpStream>, req: Request<Body>) -> Result<Reply> {
    let exchange = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let response = match sender.send_request(req).await {
            Ok(response) => response,
            // The connection's own error says why (e.g. a TLS alert).
            Err(e) => match conn.await {
                Ok(Err(why)) => {
                    return Err(anyhow::Error::new(why).context(format!("request failed: {e}")));
                }
                _ => return Err(e.into()),
            },
        };
        Reply::read(response).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("no complete response in time")?
}

/// A GET of `path` with `Host: host` and `headers`, as a request for `send_on`.
pub fn get_with(host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path).header(http::header::HOST, host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(crate::client::empty()).unwrap()
}

/// Connects with `sni` and sends a GET for `host` and `path`.
pub async fn fetch_tls(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let stream = connect(config, addr, sni).await?;
    send_on(stream, get_with(host, path, headers)).await
}

/// A verifier that accepts any server certificate (tests compare the one sent
/// with the one expected), still checking handshake signatures.
pub fn any_server_cert() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyServerCert(Arc::new(
        rustls::crypto::ring::default_provider(),
    )))
}

/// Accepts any server certificate, still checking handshake signatures.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
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
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
