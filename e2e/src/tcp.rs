//! Test support for plain TCP listeners (`tcp:` in the table): in-process
//! backends, clients that leave from a chosen loopback address, streams of
//! deterministic bytes hashed on both ends, PROXY protocol headers made by hand,
//! and the proxy's `/debug/listeners` counters.
//!
//! On Linux the whole of 127.0.0.0/8 is the loopback interface, so a client
//! bound to 127.0.0.2 reaches a listener on 127.0.0.1 without set-up and shows
//! the proxy a distinct source address.

use crate::ProxyProcess;
use anyhow::{Context, Result, bail, ensure};
use ring::digest::{Context as Sha, SHA256};
use serde_json::Value;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Bytes per read or write of the streaming helpers: memory stays flat
/// whatever the transfer's size.
const CHUNK: usize = 64 * 1024;

/// A backend on a free loopback port running `handle` for each connection.
/// It counts connections and keeps each one's peer address (the proxy's
/// outgoing socket). Dropping it stops accepting and ends its connections.
pub struct TcpServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl TcpServer {
    pub async fn start<F, Fut>(handle: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), peers.clone());
        let task = tokio::spawn(async move {
            // Owned here, so aborting the server ends its connections too.
            let mut connections = JoinSet::new();
            while let Ok((tcp, peer)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(peer);
                connections.spawn(handle(tcp));
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            accepted,
            peers,
            task,
        }
    }

    /// Echoes every byte until the client closes its side, then closes too.
    pub async fn echo() -> Self {
        Self::start(|tcp| async move {
            let (mut r, mut w) = tcp.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        })
        .await
    }

    /// Reads until the client's FIN, then answers `received <n> bytes` and
    /// closes: proves a half-close reaches the backend while its way back stays
    /// open.
    pub async fn reply_after_eof() -> Self {
        Self::start(|mut tcp| async move {
            let Ok((n, _)) = drain(&mut tcp).await else {
                return;
            };
            let _ = tcp
                .write_all(format!("received {n} bytes").as_bytes())
                .await;
            let _ = tcp.shutdown().await;
        })
        .await
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Peer addresses of the connections accepted so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP connection to `to` leaving from `source` (port chosen by the kernel).
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// Whether this machine routes `source` (a 127/8 address other than 127.0.0.1)
/// on loopback; `false` (with a notice) when binding it fails, so a test can
/// skip that part. Linux always can.
pub fn loopback_alias_works(source: IpAddr) -> bool {
    match std::net::TcpListener::bind(SocketAddr::new(source, 0)) {
        Ok(_) => true,
        Err(e) => {
            crate::cluster::notice(&format!(
                "SKIPPED part: cannot bind {source} ({e}); this system does not route all of \
                 127.0.0.0/8 on loopback"
            ));
            false
        }
    }
}

/// Writes `message` and reads back as many bytes, within `limit`: one echo
/// round trip.
pub async fn round_trip<S>(stream: &mut S, message: &[u8], limit: Duration) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        stream.write_all(message).await?;
        let mut back = vec![0; message.len()];
        stream.read_exact(&mut back).await?;
        anyhow::Ok(back)
    };
    let back = tokio::time::timeout(limit, exchange)
        .await
        .with_context(|| format!("no echo within {limit:?}"))??;
    ensure!(
        back == message,
        "echoed {:?} for {:?}",
        String::from_utf8_lossy(&back),
        String::from_utf8_lossy(message)
    );
    Ok(())
}

/// How the other side ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// A FIN: `read` returned 0.
    Eof,
    /// A RST: `read` failed with `ConnectionReset` (or `ConnectionAborted`).
    Reset,
}

/// Reads until the connection ends, within `limit`; fails if it is still open
/// then, or on any other error. Returns how it ended and the bytes before.
pub async fn wait_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<(Closed, Vec<u8>)> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0_u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(Closed::Eof),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(Closed::Reset);
                }
                Err(e) => return Err(e),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read)
        .await
        .with_context(|| format!("the connection was still open after {limit:?}"))??;
    Ok((closed, got))
}

/// A deterministic byte stream (splitmix64): both ends of a transfer can make
/// the same bytes from a seed without holding them.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes `total` bytes of [`Noise`] from `seed` in chunks, hashing them as
/// they go; returns their SHA-256. Does not close the stream.
pub async fn send_noise<W: AsyncWrite + Unpin>(
    w: &mut W,
    total: u64,
    seed: u64,
) -> io::Result<[u8; 32]> {
    let mut noise = Noise::new(seed);
    let mut sha = Sha::new(&SHA256);
    let mut buf = vec![0_u8; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        noise.fill(&mut buf[..n]);
        sha.update(&buf[..n]);
        w.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    w.flush().await?;
    Ok(digest(sha))
}

/// Reads to EOF in chunks, hashing; returns the byte count and SHA-256.
pub async fn drain<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(u64, [u8; 32])> {
    let mut sha = Sha::new(&SHA256);
    let mut buf = vec![0_u8; CHUNK];
    let mut total = 0_u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, digest(sha)));
        }
        sha.update(&buf[..n]);
        total += n as u64;
    }
}

fn digest(sha: Sha) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(sha.finish().as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`TransferServer`] saw of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// A backend for large transfers, told what to do by the client's first byte:
/// `D` + 8 bytes size (big-endian) + 8 bytes seed: it sends that much
/// [`Noise`], then closes; the SHA-256 it computed while sending is kept
/// ([`TransferServer::sent`]). `U`: it hashes everything up to the client's
/// FIN, keeps the result ([`TransferServer::uploads`]), answers with the
/// 8-byte count and the 32-byte digest, and closes.
pub struct TransferServer {
    pub server: TcpServer,
    sent: Arc<Mutex<Vec<[u8; 32]>>>,
    uploads: Arc<Mutex<Vec<Upload>>>,
}

impl TransferServer {
    pub async fn start() -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let (s, u) = (sent.clone(), uploads.clone());
        let server = TcpServer::start(move |tcp| {
            let (sent, uploads) = (s.clone(), u.clone());
            async move {
                if let Err(e) = transfer(tcp, sent, uploads).await {
                    eprintln!("transfer backend: {e:#}");
                }
            }
        })
        .await;
        Self {
            server,
            sent,
            uploads,
        }
    }

    pub fn sent(&self) -> Vec<[u8; 32]> {
        self.sent.lock().unwrap().clone()
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.uploads.lock().unwrap().clone()
    }
}

async fn transfer(
    mut tcp: TcpStream,
    sent: Arc<Mutex<Vec<[u8; 32]>>>,
    uploads: Arc<Mutex<Vec<Upload>>>,
) -> Result<()> {
    match tcp.read_u8().await? {
        b'D' => {
            let size = tcp.read_u64().await?;
            let seed = tcp.read_u64().await?;
            let sha = send_noise(&mut tcp, size, seed).await?;
            sent.lock().unwrap().push(sha);
            tcp.shutdown().await?;
        }
        b'U' => {
            let (bytes, sha256) = drain(&mut tcp).await?;
            uploads.lock().unwrap().push(Upload { bytes, sha256 });
            tcp.write_u64(bytes).await?;
            tcp.write_all(&sha256).await?;
            tcp.shutdown().await?;
        }
        other => bail!("unknown command byte {other:#04x}"),
    }
    Ok(())
}

/// A PROXY protocol v1 header (text) for a TCP connection `src` -> `dst`.
pub fn proxy_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// The 12-byte signature that starts every PROXY protocol v2 header.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY protocol v2 header (binary, command PROXY, TCP over IPv4 or IPv6)
/// for a connection `src` -> `dst`.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.push(0x21); // version 2, command PROXY
    let mut addresses = Vec::new();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            addresses.extend(s.octets());
            addresses.extend(d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(0x21); // AF_INET6, STREAM
            addresses.extend(s.octets());
            addresses.extend(d.octets());
        }
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
    addresses.extend(src.port().to_be_bytes());
    addresses.extend(dst.port().to_be_bytes());
    let len = u16::try_from(addresses.len()).unwrap();
    out.extend(len.to_be_bytes());
    out.extend(addresses);
    out
}

/// The `/debug/listeners` entry of listener `name`.
pub async fn listener_stats(proxy: &ProxyProcess, name: &str) -> Result<Value> {
    let (status, body) = proxy.admin_get("/debug/listeners").await?;
    ensure!(status == 200, "/debug/listeners answered {status}: {body}");
    let all: Value = serde_json::from_str(&body)
        .with_context(|| format!("/debug/listeners is not JSON: {body}"))?;
    all.as_array()
        .with_context(|| format!("/debug/listeners is not an array: {body}"))?
        .iter()
        .find(|l| l["name"] == name)
        .cloned()
        .with_context(|| format!("no listener {name:?} in /debug/listeners: {body}"))
}

/// One counter of listener `name` (`accepted`, `over_limit`, `denied`, ...).
pub async fn listener_counter(proxy: &ProxyProcess, name: &str, counter: &str) -> Result<u64> {
    let stats = listener_stats(proxy, name).await?;
    stats[counter]
        .as_u64()
        .with_context(|| format!("no counter {counter:?} in {stats}"))
}

/// Waits until counter `counter` of listener `name` is `want` (counters are
/// updated as connections end, a moment after the client sees the end).
pub async fn wait_counter(
    proxy: &ProxyProcess,
    name: &str,
    counter: &str,
    want: u64,
) -> Result<()> {
    let reached = crate::eventually(
        &format!("{name}.{counter} == {want}"),
        Duration::from_secs(5),
        || async {
            let got = listener_counter(proxy, name, counter).await.ok();
            (got == Some(want)).then_some(())
        },
    )
    .await;
    if reached.is_err() {
        let now = listener_stats(proxy, name).await?;
        bail!("{name}.{counter} is not {want} after 5 s: {now}");
    }
    Ok(())
}
