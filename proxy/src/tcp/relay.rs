//! Copying bytes both ways between two TCP sockets, for `tcp` listeners.
//!
//! Buffers are borrowed for one read and write from a per-thread free list,
//! so an idle connection holds none (10,000 idle database connections cost
//! sockets and a task each, not 10,000 × 2 buffers). A half-close is passed
//! on as a half-close; a reset is passed on as a reset (`SO_LINGER 0`).

use socket2::SockRef;
use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Bytes per read: large, so bulk transfers take few system calls.
const BUF_SIZE: usize = 64 * 1024;
/// Free buffers kept per thread; more are given back to the allocator.
const FREE_KEPT: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer on loan; it goes back to the free list when dropped.
struct Loan(Option<Box<[u8]>>);

impl Loan {
    fn take() -> Self {
        let buf = FREE
            .with(|free| free.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; BUF_SIZE].into_boxed_slice());
        Self(Some(buf))
    }

    fn bytes(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            FREE.with(|free| {
                let mut free = free.borrow_mut();
                if free.len() < FREE_KEPT {
                    free.push(buf);
                }
            });
        }
    }
}

/// When a connection is closed for silence (HAProxy's `timeout client`,
/// `timeout server`, `timeout tunnel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// Each side on its own: closed when the client sent nothing for the first
    /// or the server nothing for the second.
    PerSide { client: Duration, server: Duration },
    /// Closed when nothing moved either way.
    Either(Duration),
}

/// Totals shared with whoever counts (the listener's counters).
pub trait Meter {
    fn client_to_server(&self, bytes: u64);
    fn server_to_client(&self, bytes: u64);
}

/// How a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed their sending side.
    Closed,
    /// One side reset or failed; the other was reset too.
    Reset,
    /// Silence beyond the idle timeout.
    Idle,
    /// The proxy's drain deadline passed.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes from the client to the server, and back.
    pub up: u64,
    pub down: u64,
    pub ended: Ended,
}

/// Copies `client` ⇄ `server` until both directions are closed, one fails,
/// `idle` passes without bytes, or `stop`. `first` is sent to the server
/// before anything: the proxy's own `preamble` bytes (a PROXY header, not
/// counted as the client's), then bytes already read from the client.
pub async fn relay(
    client: &TcpStream,
    server: &TcpStream,
    first: &[u8],
    preamble: usize,
    idle: Idle,
    meter: &(dyn Meter + Sync),
    stop: &CancellationToken,
) -> Relayed {
    let seen = Seen::new();
    let copying = async {
        if !first.is_empty() {
            write_all(server, first).await.map_err(Side::Server)?;
            let early = first.len().saturating_sub(preamble) as u64;
            seen.up.store(early, Ordering::Relaxed);
            meter.client_to_server(early);
        }
        let up = one_way(client, server, Direction::Up, &seen, meter);
        let down = one_way(server, client, Direction::Down, &seen, meter);
        tokio::try_join!(up, down).map(|_| ())
    };
    let ended = tokio::select! {
        copied = copying => match copied {
            Ok(()) => Ended::Closed,
            Err(side) => {
                // Pass the failure on: the other side gets a reset, not a
                // clean end it could take for a complete exchange.
                let other = match &side {
                    Side::Client(e) => {
                        debug!("client side failed: {e}; resetting the server side");
                        server
                    }
                    Side::Server(e) => {
                        debug!("server side failed: {e}; resetting the client side");
                        client
                    }
                };
                let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
                Ended::Reset
            }
        },
        () = watch_idle(&seen, idle) => Ended::Idle,
        () = stop.cancelled() => Ended::Stopped,
    };
    Relayed {
        up: seen.up.load(Ordering::Relaxed),
        down: seen.down.load(Ordering::Relaxed),
        ended,
    }
}

/// When each side last sent bytes (ms after `start`), and how many moved.
/// One task owns it; atomics only because the task moves between threads.
struct Seen {
    start: Instant,
    client_ms: AtomicU64,
    server_ms: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Seen {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            client_ms: AtomicU64::new(0),
            server_ms: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn client(&self) -> Instant {
        self.start + Duration::from_millis(self.client_ms.load(Ordering::Relaxed))
    }

    fn server(&self) -> Instant {
        self.start + Duration::from_millis(self.server_ms.load(Ordering::Relaxed))
    }
}

#[derive(Clone, Copy)]
enum Direction {
    /// Client to server.
    Up,
    Down,
}

/// Which socket failed, and how.
#[derive(Debug)]
enum Side {
    Client(io::Error),
    Server(io::Error),
}

async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    direction: Direction,
    seen: &Seen,
    meter: &(dyn Meter + Sync),
) -> Result<(), Side> {
    type Blame = fn(io::Error) -> Side;
    let (read_side, write_side): (Blame, Blame) = match direction {
        Direction::Up => (Side::Client, Side::Server),
        Direction::Down => (Side::Server, Side::Client),
    };
    loop {
        from.readable().await.map_err(read_side)?;
        let mut loan = Loan::take();
        let buf = loan.bytes();
        let n = match from.try_read(buf) {
            Ok(0) => {
                // The sender is done: tell the receiver, keep the other way open.
                return match SockRef::from(to).shutdown(Shutdown::Write) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                    Err(e) => Err(write_side(e)),
                };
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(read_side(e)),
        };
        let now = seen.now_ms();
        let bytes = n as u64;
        match direction {
            Direction::Up => {
                seen.client_ms.store(now, Ordering::Relaxed);
                seen.up.fetch_add(bytes, Ordering::Relaxed);
                meter.client_to_server(bytes);
            }
            Direction::Down => {
                seen.server_ms.store(now, Ordering::Relaxed);
                seen.down.fetch_add(bytes, Ordering::Relaxed);
                meter.server_to_client(bytes);
            }
        }
        write_all(to, &buf[..n]).await.map_err(write_side)?;
    }
}

async fn write_all(to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match to.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Returns once the connection has been silent for longer than allowed. One
/// timer per connection, re-armed only when it fires.
async fn watch_idle(seen: &Seen, idle: Idle) {
    let deadline = || match idle {
        Idle::PerSide { client, server } => {
            std::cmp::min(seen.client() + client, seen.server() + server)
        }
        Idle::Either(limit) => std::cmp::max(seen.client(), seen.server()) + limit,
    };
    loop {
        let at = deadline();
        tokio::time::sleep_until(at).await;
        if Instant::now() >= deadline() {
            return;
        }
    }
}
