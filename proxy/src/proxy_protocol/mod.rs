//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the
//! header a load balancer in front of us sends first on a connection to say
//! who the client really is (`accept-proxy`), and the one we send first to an
//! endpoint for the same reason (`send-proxy`, `send-proxy-v2`).
//!
//! [`parse`] is pure: call it with everything read so far; it answers
//! [`Parsed::Incomplete`] (read until the buffer holds at least that many
//! bytes, then call again), [`Parsed::Done`] (the header is the first `len`
//! bytes; what follows is the client's data) or [`Parsed::Invalid`]. It never
//! looks past the header. [`read_header`] does the reading, bounded in time
//! and size. [`encode`] writes a header.
//!
//! A header is only believed from sources the operator trusts: anyone else
//! could claim any address. That check is the caller's.
//!
//! What is accepted, and why:
//! - The first byte picks the version (`P` for v1, CR for v2); bytes that
//!   already disagree with both signatures are refused at once rather than
//!   waited on, so a client speaking its own protocol straight away is told
//!   apart without a timeout.
//! - v1 is held to the letter of the spec, since every real sender prints it
//!   the same way: `PROXY TCP4|TCP6 src dst sport dport\r\n`, single spaces,
//!   within [`MAX_V1`] bytes. TCP4 addresses are dotted quads without leading
//!   zeros (`010.0.0.1` could be octal to some readers); TCP6 addresses are
//!   IPv6 text (an IPv4-mapped `::ffff:a.b.c.d` included); ports are decimal
//!   0..=65535 without sign or leading zeros. `UNKNOWN` may be followed by
//!   anything up to the CRLF, which is ignored (the spec says so). The line
//!   must end with CRLF: a lone CR or LF is refused rather than waited past,
//!   so a broken sender's line ending cannot make us swallow client data as
//!   part of the header. Fields are checked as they arrive: a prefix that no
//!   byte can complete is refused without waiting for the CRLF.
//! - v2: the 12-byte signature, version 2, command LOCAL or PROXY. LOCAL (a
//!   load balancer's own health check) ignores the address block whatever its
//!   family. PROXY with TCP over IPv4 or IPv6 gives the addresses; `UNSPEC`
//!   and `AF_UNIX` give none (the connection's own addresses are used); UDP
//!   is refused (this is a TCP proxy), as are the families and transports
//!   the spec leaves undefined. The length must cover the family's address
//!   block, and is checked from the 16-byte prefix before the rest arrives.
//!   TLVs after the addresses are skipped unread, but must tile the rest of
//!   the header exactly. At most 4096 bytes may follow the prefix
//!   ([`MAX_V2`]): real headers carry a few small TLVs, and this bounds what
//!   a connection makes us buffer.
//! - Addresses are reported as sent: an IPv4-mapped IPv6 address stays IPv6
//!   (use [`std::net::IpAddr::to_canonical`] to match it against IPv4
//!   ranges).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

mod read;
mod v1;
mod v2;

pub use read::{ReadError, read_header};

/// The longest v1 header, CRLF included (the spec's worst case,
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const MAX_V1: usize = 107;

/// The longest v2 header this parser accepts: the 16-byte prefix and 4096
/// bytes of addresses and TLVs.
pub const MAX_V2: usize = 16 + 4096;

/// The shortest header of either version: `PROXY UNKNOWN\r\n` (a v2 header
/// takes at least its 16-byte prefix).
const MIN_HEADER: usize = 15;

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text line (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: Version,
    /// `None` for v2 LOCAL (health checks from the load balancer itself), v1
    /// `UNKNOWN`, and v2 families other than TCP over IPv4/IPv6 (`UNSPEC`,
    /// `AF_UNIX`): then the connection's own addresses are used.
    pub addresses: Option<Addresses>,
}

/// The client's connection as the sender of the header saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client.
    pub source: SocketAddr,
    /// The address the client connected to (the load balancer's).
    pub destination: SocketAddr,
}

/// The answer of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header: the first `len` bytes of the buffer.
    Done { header: ProxyHeader, len: usize },
    /// Need more bytes: at least this many in total. Always more than the
    /// buffer held, at most [`MAX_V1`] for v1 and [`MAX_V2`] for v2. Exact
    /// for v2 once its 16-byte prefix is in; a lower bound for v1, which has
    /// no length field.
    Incomplete(usize),
    /// Not a header this parser accepts; more bytes will not change that.
    Invalid(Rejection),
}

/// Why the bytes are not an acceptable PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Neither the v1 (`PROXY `) nor the v2 signature: the peer is not
    /// sending a PROXY header at all.
    #[error("no PROXY protocol header (neither the v1 nor the v2 signature)")]
    NotProxy,
    /// A v1 line that breaks the format.
    #[error("invalid PROXY v1 header: {0}")]
    BadV1(&'static str),
    /// A v2 header that breaks the format or that a TCP proxy cannot use.
    #[error("invalid PROXY v2 header: {0}")]
    BadV2(&'static str),
    /// Over [`MAX_V1`] or [`MAX_V2`].
    #[error(
        "PROXY header too long (v1: no CRLF within 107 bytes; v2: more than 4096 bytes after the prefix)"
    )]
    TooLong,
}

/// Parses the PROXY header at the start of `buf`; see the module docs.
pub fn parse(buf: &[u8]) -> Parsed {
    let parsed = match buf.first() {
        None => Err(Stop::Need(MIN_HEADER)),
        Some(b'P') => v1::parse(buf),
        Some(b'\r') => v2::parse(buf),
        Some(_) => Err(Stop::Reject(Rejection::NotProxy)),
    };
    match parsed {
        Ok((header, len)) => Parsed::Done { header, len },
        Err(Stop::Need(n)) => Parsed::Incomplete(n),
        Err(Stop::Reject(why)) => Parsed::Invalid(why),
    }
}

/// A header saying `source` connected to `destination`, TCP: v1
/// `PROXY TCP4|TCP6 ...\r\n`, or v2 PROXY, STREAM over INET/INET6, no TLVs.
/// Both addresses are written in one family; if they differ, the IPv4 one is
/// mapped to IPv6 (`::ffff:a.b.c.d`). Flow info and scope ids are not sent.
pub fn encode(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let pair = IpPair::of(source.ip(), destination.ip());
    let ports = (source.port(), destination.port());
    match version {
        Version::V1 => v1::encode(pair, ports),
        Version::V2 => v2::encode(pair, ports),
    }
}

/// Why a parser stopped before a whole header.
enum Stop {
    Need(usize),
    Reject(Rejection),
}

/// Two addresses of one family, for the encoders.
#[derive(Clone, Copy)]
enum IpPair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl IpPair {
    fn of(source: IpAddr, destination: IpAddr) -> Self {
        let v6 = |ip: IpAddr| match ip {
            IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            IpAddr::V6(ip) => ip,
        };
        match (source, destination) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4(s, d),
            (s, d) => IpPair::V6(v6(s), v6(d)),
        }
    }
}

#[cfg(test)]
mod tests;
