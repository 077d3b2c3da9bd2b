//! The connector of TLS backends: hyper-util's `HttpConnector` for TCP (DNS,
//! happy eyeballs, nodelay), then a rustls handshake, both within the
//! backend's connect timeout. Our own rather than hyper-rustls's so that the
//! handshake has a deadline (a backend that accepts TCP and never answers the
//! ClientHello is a connect failure, retried elsewhere, not a response
//! timeout), only `https` is ever connected, and no further dependency.

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::debug;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct TlsConnector {
    http: HttpConnector,
    /// `Err`: settings that could not be built; every connection fails.
    target: Result<Arc<Target>, Arc<str>>,
}

struct Target {
    tls: tokio_rustls::TlsConnector,
    /// The configured `server_name`; else the endpoint's host.
    server_name: Option<ServerName<'static>>,
    /// TCP connect and handshake together.
    timeout: std::time::Duration,
}

impl TlsConnector {
    pub fn new(
        mut http: HttpConnector,
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
        timeout: std::time::Duration,
    ) -> Self {
        // The scheme is `https`; `call` refuses anything else.
        http.enforce_http(false);
        Self {
            http,
            target: Ok(Arc::new(Target {
                tls: tokio_rustls::TlsConnector::from(config),
                server_name,
                timeout,
            })),
        }
    }

    /// A connector that never connects, for a backend whose TLS settings
    /// could not be built: it must fail rather than speak plaintext.
    pub fn refusing(reason: &str) -> Self {
        Self {
            http: HttpConnector::new(),
            target: Err(Arc::from(reason)),
        }
    }
}

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        Box::pin(connect(self.target.clone(), self.http.clone(), dst))
    }
}

async fn connect(
    target: Result<Arc<Target>, Arc<str>>,
    mut http: HttpConnector,
    dst: http::Uri,
) -> Result<TlsIo, BoxError> {
    let target = target.map_err(|reason| io::Error::other(reason.to_string()))?;
    if dst.scheme() != Some(&http::uri::Scheme::HTTPS) {
        return Err(io::Error::other("a TLS backend is only reached over https").into());
    }
    let endpoint = dst
        .authority()
        .map_or_else(String::new, ToString::to_string);
    let name = match &target.server_name {
        Some(name) => name.clone(),
        None => {
            crate::table::server_name(dst.host().unwrap_or_default()).map_err(io::Error::other)?
        }
    };
    let handshake = async {
        let tcp = tower_service::Service::call(&mut http, dst).await?;
        let tls = target.tls.connect(name.clone(), tcp.into_inner()).await;
        tls.map_err(|source| {
            let server_name = name.to_str().into_owned();
            debug!(%endpoint, server_name, "TLS handshake failed: {source}");
            BoxError::from(HandshakeError {
                endpoint: endpoint.clone(),
                server_name,
                source,
            })
        })
    };
    match tokio::time::timeout(target.timeout, handshake).await {
        Ok(stream) => Ok(TlsIo(TokioIo::new(stream?))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TCP connect and TLS handshake with {endpoint} timed out"),
        )
        .into()),
    }
}

/// A failed handshake (certificate not trusted, wrong name, no common
/// protocol): a connect failure of that endpoint.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {endpoint} (server name {server_name:?})")]
struct HandshakeError {
    endpoint: String,
    server_name: String,
    #[source]
    source: io::Error,
}

/// A TLS connection to an endpoint, telling hyper-util whether ALPN chose
/// HTTP/2.
pub struct TlsIo(TokioIo<TlsStream<TcpStream>>);

impl Connection for TlsIo {
    fn connected(&self) -> Connected {
        let (tcp, session) = self.0.inner().get_ref();
        let connected = tcp.connected();
        if session.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for TlsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for TlsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}
