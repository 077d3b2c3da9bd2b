//! Version 2: a 16-byte binary prefix (signature, version and command,
//! family and transport, length), the address block, then TLVs.

use super::{Addresses, IpPair, MAX_V2, ProxyHeader, Rejection, Stop, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const PREFIX: usize = 16;
/// Version 2 in the high nibble; the command in the low one.
const VERSION_2: u8 = 0x20;
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
/// Family (high nibble) and transport (low nibble).
const UNSPEC: u8 = 0x00;
const TCP4: u8 = 0x11;
const UDP4: u8 = 0x12;
const TCP6: u8 = 0x21;
const UDP6: u8 = 0x22;
const UNIX_STREAM: u8 = 0x31;
const UNIX_DGRAM: u8 = 0x32;
/// Address block sizes: two addresses and two ports; two 108-byte paths.
const INET_LEN: usize = 2 * 4 + 2 * 2;
const INET6_LEN: usize = 2 * 16 + 2 * 2;
const UNIX_LEN: usize = 2 * 108;
/// A TLV's type and length.
const TLV_HEADER: usize = 3;

fn bad(why: &'static str) -> Stop {
    Stop::Reject(Rejection::BadV2(why))
}

/// What the address block holds.
#[derive(Clone, Copy)]
enum Block {
    /// LOCAL, or PROXY with UNSPEC: nothing to read, TLVs not walked (the
    /// spec says to ignore the block).
    Ignored,
    Inet,
    Inet6,
    Unix,
}

impl Block {
    fn of(command: u8, family: u8) -> Result<Block, Stop> {
        if command == CMD_LOCAL {
            return Ok(Block::Ignored);
        }
        match family {
            UNSPEC => Ok(Block::Ignored),
            TCP4 => Ok(Block::Inet),
            TCP6 => Ok(Block::Inet6),
            UNIX_STREAM | UNIX_DGRAM => Ok(Block::Unix),
            UDP4 | UDP6 => Err(bad("UDP is not supported by a TCP proxy")),
            _ => Err(bad("undefined address family or transport")),
        }
    }

    fn len(self) -> usize {
        match self {
            Block::Ignored => 0,
            Block::Inet => INET_LEN,
            Block::Inet6 => INET6_LEN,
            Block::Unix => UNIX_LEN,
        }
    }
}

/// Parses a buffer starting with CR.
pub(super) fn parse(buf: &[u8]) -> Result<(ProxyHeader, usize), Stop> {
    let sig = buf.get(..SIGNATURE.len()).unwrap_or(buf);
    if !SIGNATURE.starts_with(sig) {
        return Err(Stop::Reject(Rejection::NotProxy));
    }
    // Each byte of the prefix is judged as soon as it is there.
    let Some(&version_command) = buf.get(12) else {
        return Err(Stop::Need(PREFIX));
    };
    if version_command & 0xf0 != VERSION_2 {
        return Err(bad("version is not 2"));
    }
    let command = version_command & 0x0f;
    if command != CMD_LOCAL && command != CMD_PROXY {
        return Err(bad("command is neither LOCAL nor PROXY"));
    }
    let Some(&family) = buf.get(13) else {
        return Err(Stop::Need(PREFIX));
    };
    let block = Block::of(command, family)?;
    let Some(&[hi, lo]) = buf.get(14..PREFIX) else {
        return Err(Stop::Need(PREFIX));
    };
    let len = PREFIX + usize::from(u16::from_be_bytes([hi, lo]));
    if len > MAX_V2 {
        return Err(Stop::Reject(Rejection::TooLong));
    }
    if len - PREFIX < block.len() {
        return Err(bad("length is shorter than the address block"));
    }
    let Some(body) = buf.get(PREFIX..len) else {
        return Err(Stop::Need(len));
    };
    let addresses = match block {
        Block::Ignored => None,
        Block::Unix => {
            tlvs(body.get(UNIX_LEN..).unwrap_or_default())?;
            None
        }
        Block::Inet => Some(inet(body, |ip: [u8; 4]| Ipv4Addr::from(ip).into())?),
        Block::Inet6 => Some(inet(body, |ip: [u8; 16]| Ipv6Addr::from(ip).into())?),
    };
    let header = ProxyHeader {
        version: Version::V2,
        addresses,
    };
    Ok((header, len))
}

/// Source and destination addresses of `N` bytes, then the ports, then TLVs.
fn inet<const N: usize>(body: &[u8], ip: impl Fn([u8; N]) -> IpAddr) -> Result<Addresses, Stop> {
    let short = || bad("length is shorter than the address block");
    let (src, rest) = body.split_first_chunk::<N>().ok_or_else(short)?;
    let (dst, rest) = rest.split_first_chunk::<N>().ok_or_else(short)?;
    let (sport, rest) = rest.split_first_chunk::<2>().ok_or_else(short)?;
    let (dport, rest) = rest.split_first_chunk::<2>().ok_or_else(short)?;
    tlvs(rest)?;
    Ok(Addresses {
        source: SocketAddr::new(ip(*src), u16::from_be_bytes(*sport)),
        destination: SocketAddr::new(ip(*dst), u16::from_be_bytes(*dport)),
    })
}

/// Walks the TLVs: none is read, but together they must fill the rest of
/// the header exactly (a sender whose lengths disagree is broken).
fn tlvs(mut rest: &[u8]) -> Result<(), Stop> {
    while !rest.is_empty() {
        let Some((&[_, hi, lo], value)) = rest.split_first_chunk::<TLV_HEADER>() else {
            return Err(bad("truncated TLV header"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        rest = value
            .get(len..)
            .ok_or_else(|| bad("TLV runs past the header's end"))?;
    }
    Ok(())
}

pub(super) fn encode(ips: IpPair, (sport, dport): (u16, u16)) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX + INET6_LEN);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2 | CMD_PROXY);
    match ips {
        IpPair::V4(s, d) => {
            out.push(TCP4);
            out.extend_from_slice(&(INET_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        IpPair::V6(s, d) => {
            out.push(TCP6);
            out.extend_from_slice(&(INET6_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
    }
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}
