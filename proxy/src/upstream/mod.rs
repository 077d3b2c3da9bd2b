//! Pooled keep-alive connections to backends.
//!
//! Pools are keyed by their settings, not by backend, and live in a registry that
//! outlives compiled tables: a table swap, a renamed or retargeted backend keeps
//! its warm connections (hyper's pool is itself keyed by scheme and endpoint
//! address). TLS backends are keyed by their whole TLS settings (and the client
//! certificate's content), so two backends that verify differently, or present
//! different certificates, never share a connection.

mod client_config;
mod connector;
mod h1_pool;

pub use client_config::client_config;
pub use connector::{TlsConnector, TlsIo};

use crate::http::body::RequestBody;
use crate::table::{BackendProtocol, BackendTimeouts, BackendTls, Certificate};
use h1_pool::H1Pool;
use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A backend's client: plain HTTP/1.1 (our pool), h2c, or HTTPS with its TLS
/// settings (hyper-util's pooled client).
#[derive(Clone)]
pub enum Upstream {
    Http1(Arc<H1Pool>),
    Plain(Client<HttpConnector, RequestBody>),
    Tls(Client<TlsConnector, RequestBody>),
}

impl Upstream {
    /// Sends `req`, whose URI is the path and query, to the endpoint at `authority`.
    pub async fn request(
        &self,
        authority: &Authority,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, Error> {
        match self {
            Self::Http1(pool) => pool.send(authority, req).await.map_err(Error::Pool),
            Self::Plain(client) => client
                .request(absolute(req, Scheme::HTTP, authority)?)
                .await
                .map_err(Error::Client),
            Self::Tls(client) => client
                .request(absolute(req, Scheme::HTTPS, authority)?)
                .await
                .map_err(Error::Client),
        }
    }

    /// The scheme of request URIs: TLS clients connect only `https` ones.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Http1(_) | Self::Plain(_) => Scheme::HTTP,
            Self::Tls(_) => Scheme::HTTPS,
        }
    }

    /// A client that fails every connection with `reason`: for a backend whose
    /// TLS settings could not be built, so nothing is ever sent in the clear.
    pub fn refusing(reason: &str) -> Self {
        Self::Tls(
            builder(BackendProtocol::Http1, &BackendTimeouts::default())
                .build(TlsConnector::refusing(reason)),
        )
    }
}

/// hyper-util's client routes by the URI's scheme and authority.
fn absolute(
    mut req: Request<RequestBody>,
    scheme: Scheme,
    authority: &Authority,
) -> Result<Request<RequestBody>, Error> {
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority.clone());
    *req.uri_mut() = Uri::from_parts(parts).map_err(Error::Uri)?;
    Ok(req)
}

/// Why a request got no response from the backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(hyper_util::client::legacy::Error),
    #[error(transparent)]
    Pool(h1_pool::Error),
    #[error("cannot build the upstream URI: {0}")]
    Uri(http::uri::InvalidUriParts),
}

impl Error {
    /// The connection could not be made: nothing reached the backend.
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Client(e) => e.is_connect(),
            Self::Pool(e) => e.is_connect(),
            Self::Uri(_) => false,
        }
    }
}

/// What two backends must have in common to share connections.
#[derive(PartialEq, Eq, Hash)]
struct PoolKey {
    protocol: BackendProtocol,
    connect_ms: u64,
    idle_ms: u64,
    tls: Option<TlsKey>,
}

#[derive(PartialEq, Eq, Hash)]
struct TlsKey {
    settings: BackendTls,
    /// SHA-256 of the client certificate's chain and key: the id alone could
    /// name other content after a reload.
    client_certificate: Option<[u8; 32]>,
}

#[derive(Default)]
pub struct Upstreams {
    clients: Mutex<HashMap<PoolKey, Upstream>>,
    system_roots: OnceLock<Result<Arc<RootCertStore>, String>>,
}

impl Upstreams {
    /// The plain-HTTP client for these settings.
    pub fn get(&self, protocol: BackendProtocol, timeouts: &BackendTimeouts) -> Upstream {
        let key = key(protocol, timeouts, None);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| match protocol {
                BackendProtocol::Http1 => Upstream::Http1(Arc::new(H1Pool::new(
                    http(timeouts),
                    timeouts.pool_idle.to_std(),
                ))),
                BackendProtocol::H2c => {
                    Upstream::Plain(builder(protocol, timeouts).build(http(timeouts)))
                }
            })
            .clone()
    }

    /// The TLS client for these settings; `Err` when they cannot be built
    /// (the caller makes the backend unusable).
    pub fn get_tls(
        &self,
        protocol: BackendProtocol,
        timeouts: &BackendTimeouts,
        tls: &BackendTls,
        client_certificate: Option<&Certificate>,
    ) -> Result<Upstream, String> {
        let tls_key = TlsKey {
            settings: tls.clone(),
            client_certificate: client_certificate.map(digest),
        };
        let key = key(protocol, timeouts, Some(tls_key));
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let config = client_config(tls, client_certificate, || {
            self.system_roots
                .get_or_init(client_config::load_system_roots)
                .clone()
        })?;
        let server_name = match &tls.server_name {
            Some(name) => {
                Some(crate::table::server_name(name).map_err(|e| format!("server_name: {e}"))?)
            }
            None => None,
        };
        let connector = TlsConnector::new(
            http(timeouts),
            config,
            server_name,
            timeouts.connect.to_std(),
        );
        let mut builder = builder(protocol, timeouts);
        // HTTP/2 when ALPN chooses it; only HTTP/2 when it is all we offer.
        builder.timer(TokioTimer::new());
        if tls.alpn == [crate::table::AlpnProtocol::H2] {
            builder.http2_only(true);
        }
        let client = Upstream::Tls(builder.build(connector));
        clients.insert(key, client.clone());
        Ok(client)
    }
}

#[cfg(test)]
impl Upstreams {
    /// How many distinct pools exist.
    pub fn pools(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn key(protocol: BackendProtocol, timeouts: &BackendTimeouts, tls: Option<TlsKey>) -> PoolKey {
    PoolKey {
        protocol,
        connect_ms: timeouts.connect.as_millis(),
        idle_ms: timeouts.pool_idle.as_millis(),
        tls,
    }
}

fn digest(cert: &Certificate) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [
        cert.chain_pem.as_bytes(),
        cert.private_key.expose().as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn http(timeouts: &BackendTimeouts) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeouts.connect.to_std()));
    connector.enforce_http(true);
    connector
}

fn builder(protocol: BackendProtocol, timeouts: &BackendTimeouts) -> Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(timeouts.pool_idle.to_std());
    if protocol == BackendProtocol::H2c {
        builder.http2_only(true).timer(TokioTimer::new());
    }
    builder
}
