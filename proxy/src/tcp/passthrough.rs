//! TLS passthrough: read a connection's ClientHello (without answering it),
//! pick a backend by its SNI, and forward the connection raw, the hello first.
//! Serves `tls_passthrough` listeners, and the `tls.passthrough` routes an
//! `https` listener checks before terminating TLS itself.

use super::forward::{self, ConnTarget, Ended, LogContext};
use super::postgres::{self, Opening};
use super::prefixed::Prefixed;
use super::sni_router::SniRouter;
use crate::compile::{BackendIx, CompiledTable, ListenerKind};
use crate::table::ListenerTimeouts;
use crate::tls::client_hello::{ClientHelloInfo, MAX_CLIENT_HELLO, Peek, Rejection, peek};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Passthrough routes by SNI, compiled from the table.
pub type SniRoutes = SniRouter<ConnTarget>;

/// Why no ClientHello was read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    #[error("no complete ClientHello within {0:?}")]
    Timeout(Duration),
    #[error("the client closed the connection before its ClientHello was complete")]
    Closed,
    #[error(transparent)]
    NotTls(Rejection),
    #[error("reading the ClientHello failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads until `client`'s first bytes hold a whole ClientHello: never beyond
/// it (so nothing after it is read early), at most [`MAX_CLIENT_HELLO`], and
/// within `limit`. Returns the bytes read and what the hello says.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    client: &mut S,
    limit: Duration,
) -> Result<(Vec<u8>, ClientHelloInfo), HelloError> {
    read_client_hello_after(client, Vec::new(), limit).await
}

/// [`read_client_hello`] when its first bytes (`start`) were read already.
async fn read_client_hello_after<S: AsyncRead + Unpin>(
    client: &mut S,
    start: Vec<u8>,
    limit: Duration,
) -> Result<(Vec<u8>, ClientHelloInfo), HelloError> {
    let read = async {
        let mut buf = start;
        buf.reserve(1024);
        loop {
            let need = match peek(&buf) {
                Peek::Done(info) => return Ok((buf, info)),
                Peek::NotTls(why) => return Err(HelloError::NotTls(why)),
                Peek::Incomplete(need) => need,
            };
            let have = buf.len();
            // `peek` promises more than we have and at most the maximum; a
            // broken promise must not loop or grow the buffer.
            if need <= have || need > MAX_CLIENT_HELLO {
                return Err(HelloError::NotTls(Rejection::TooLarge("beyond the limit")));
            }
            buf.resize(need, 0);
            let n = client.read(&mut buf[have..]).await?;
            buf.truncate(have + n);
            if n == 0 {
                return Err(HelloError::Closed);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(HelloError::Timeout(limit)))
}

/// Serves one connection of the `tls_passthrough` listener at `bind` with
/// `table`, the table live when it was accepted.
pub async fn serve(
    table: Arc<CompiledTable>,
    bind: SocketAddr,
    mut client: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let Some(listener) = table.listener(bind) else {
        return;
    };
    let ListenerKind::Passthrough(settings) = &listener.kind else {
        return;
    };
    let timeouts = settings.timeouts;
    let limit = timeouts.client_hello.to_std();
    // PostgreSQL clients may ask for TLS first (`SSLRequest`); answered here.
    let opening = match tokio::time::timeout(limit, postgres::opening(&mut client)).await {
        Ok(Ok(opening)) => opening,
        Ok(Err(e)) => {
            debug!(listener = %listener.name, %peer, "closing: reading the first bytes: {e}");
            return;
        }
        Err(_) => {
            debug!(listener = %listener.name, %peer, "closing: nothing sent within {limit:?}");
            return;
        }
    };
    let (ssl_request, start) = match opening {
        Opening::SslRequest => (true, Vec::new()),
        Opening::Other(bytes) => (false, bytes),
    };
    let (hello, info) = match read_client_hello_after(&mut client, start, limit).await {
        Ok(read) => read,
        Err(e) => {
            debug!(listener = %listener.name, %peer, "closing: {e}");
            return;
        }
    };
    let Some(target) = settings.routes.lookup(info.server_name.as_deref()) else {
        debug!(listener = %listener.name, %peer, sni = ?info.server_name, "no route and no default backend; closing");
        return;
    };
    let chosen = Chosen::of(target, peer);
    let name = listener.name.clone();
    let hello = Hello {
        bytes: hello,
        info: &info,
        ssl_request,
    };
    let context = Forwarding {
        listener: &name,
        peer,
        local: client.local_addr().unwrap_or(bind),
        idle: timeouts.idle.to_std(),
        stop: &stop,
    };
    pass_on(client, hello, table, chosen, &context).await;
}

/// The passthrough routes of an `https` listener, with the table whose
/// backends they name (taken once, at accept).
pub struct SniSplit {
    pub table: Arc<CompiledTable>,
    pub bind: SocketAddr,
    /// The proxy's drain deadline: passed-through connections end there.
    pub stop: CancellationToken,
}

impl SniSplit {
    /// Reads the ClientHello (within the `request_header` timeout). A name with
    /// a passthrough route is forwarded raw, idle-limited by `client_idle`, and
    /// `None` is returned; so it is when no ClientHello came. Otherwise the
    /// stream goes back with the bytes read in front, for the TLS handshake.
    pub async fn run<S>(
        self,
        mut client: S,
        peer: SocketAddr,
        timeouts: &ListenerTimeouts,
    ) -> Option<Prefixed<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let SniSplit { table, bind, stop } = self;
        let listener = table.listener(bind)?;
        let ListenerKind::Http(http) = &listener.kind else {
            return None;
        };
        let routes = http.passthrough.as_ref()?;
        let (bytes, info) =
            match read_client_hello(&mut client, timeouts.request_header.to_std()).await {
                Ok(read) => read,
                Err(e) => {
                    debug!(listener = %listener.name, %peer, "closing: {e}");
                    return None;
                }
            };
        let Some(target) = routes.lookup(info.server_name.as_deref()) else {
            return Some(Prefixed::new(bytes, client));
        };
        let chosen = Chosen::of(target, peer);
        let name = listener.name.clone();
        let context = Forwarding {
            listener: &name,
            peer,
            local: bind,
            idle: timeouts.client_idle.to_std(),
            stop: &stop,
        };
        let hello = Hello {
            bytes,
            info: &info,
            ssl_request: false,
        };
        pass_on(client, hello, table, chosen, &context).await;
        None
    }
}

/// What a route decided, owned, so the table can be let go of later.
struct Chosen {
    route: Arc<str>,
    backend: Option<BackendIx>,
    hash: Option<u64>,
}

impl Chosen {
    fn of(target: &ConnTarget, peer: SocketAddr) -> Self {
        Self {
            route: target.route.clone(),
            backend: target.backend,
            hash: target.hash(peer),
        }
    }
}

struct Hello<'a> {
    bytes: Vec<u8>,
    info: &'a ClientHelloInfo,
    /// The client sent PostgreSQL's `SSLRequest` first (answered already):
    /// the server gets one too, before the hello.
    ssl_request: bool,
}

struct Forwarding<'a> {
    listener: &'a str,
    peer: SocketAddr,
    /// The address the client connected to (a PROXY header's destination).
    local: SocketAddr,
    idle: Duration,
    stop: &'a CancellationToken,
}

/// Connects `client` to the chosen backend of `table` and splices the two.
/// The table is dropped once connected, so a long connection does not keep an
/// old table alive (its lease holds only the endpoint's runtime state).
async fn pass_on<S>(
    client: S,
    hello: Hello<'_>,
    table: Arc<CompiledTable>,
    chosen: Chosen,
    context: &Forwarding<'_>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let log = LogContext {
        listener: context.listener,
        route: &chosen.route,
        peer: context.peer,
    };
    let sni = hello.info.server_name.as_deref().unwrap_or("");
    let Some(backend) = chosen.backend.and_then(|ix| table.backends.get(ix)) else {
        debug!(listener = log.listener, route = log.route, peer = %log.peer, sni,
               "the route's backend is not defined; closing");
        return;
    };
    let Some((lease, mut upstream)) = forward::connect(backend, chosen.hash, &log).await else {
        return;
    };
    let backend_id = backend.id.clone();
    let endpoint = lease.endpoint().address.clone();
    let route = log.route.to_owned();
    let preamble = backend
        .proxy_protocol
        .map(|version| crate::proxy_protocol::encode(version.into(), context.peer, context.local))
        .unwrap_or_default();
    let first = if hello.ssl_request {
        let limit = backend.timeouts.connect.to_std();
        if let Err(e) = postgres::request_ssl(&mut upstream, &preamble, limit).await {
            debug!(listener = context.listener, route, backend = %backend_id, %endpoint,
                   peer = %context.peer, sni, "closing: SSLRequest to the server: {e}");
            return;
        }
        hello.bytes
    } else {
        let mut first = preamble;
        first.extend_from_slice(&hello.bytes);
        first
    };
    drop(table);
    let spliced =
        forward::splice(client, &first, upstream, lease, context.idle, context.stop).await;
    let how = match spliced.ended {
        Ended::Closed => "closed",
        Ended::Idle => "idle timeout",
        Ended::Stopped => "drain deadline",
    };
    debug!(listener = context.listener, route, backend = %backend_id, %endpoint,
           peer = %context.peer, sni, up = spliced.up, down = spliced.down,
           "passthrough connection ended: {how}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A minimal ClientHello with SNI `name` (record, handshake header, body).
    fn hello(name: &str) -> Vec<u8> {
        let mut sni = Vec::new();
        let list_len = 3 + name.len();
        sni.extend_from_slice(&(list_len as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name.as_bytes());
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[tokio::test]
    async fn reads_exactly_the_hello_even_when_it_dribbles_in() {
        let (mut near, mut far) = tokio::io::duplex(4096);
        let bytes = hello("a.example.com");
        let sent = bytes.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(7) {
                far.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            far.write_all(b"after").await.unwrap();
            far
        });
        let (read, info) = read_client_hello(&mut near, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(read, bytes);
        assert_eq!(info.server_name.as_deref(), Some("a.example.com"));
        let _far = writer.await.unwrap();
        let mut after = [0; 5];
        near.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"after", "bytes after the hello stay in the stream");
    }

    #[tokio::test]
    async fn other_protocols_are_refused_at_once() {
        let (mut near, mut far) = tokio::io::duplex(4096);
        far.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = read_client_hello(&mut near, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HelloError::NotTls(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_partial_client_times_out_and_an_early_close_is_seen() {
        let (mut near, mut far) = tokio::io::duplex(4096);
        far.write_all(&hello("a.test")[..20]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = read_client_hello(&mut near, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HelloError::Timeout(_)), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(far);
        let err = read_client_hello(&mut near, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HelloError::Closed), "{err}");
    }
}
