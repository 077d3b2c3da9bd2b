//! Version 1: one text line, `PROXY TCP4|TCP6|UNKNOWN ...\r\n`.

use super::{Addresses, IpPair, MAX_V1, MIN_HEADER, ProxyHeader, Rejection, Stop, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const SIGNATURE: &[u8] = b"PROXY ";
const UNKNOWN: &[u8] = b"UNKNOWN";
const TCP4: &[u8] = b"TCP4";
const TCP6: &[u8] = b"TCP6";
/// The longest IPv6 text: six full groups and a dotted IPv4 tail.
const MAX_V6_TEXT: usize = 45;
/// Protocol, two addresses, two ports.
const FIELDS: usize = 5;

fn bad(why: &'static str) -> Stop {
    Stop::Reject(Rejection::BadV1(why))
}

/// Parses a buffer starting with `P`.
pub(super) fn parse(buf: &[u8]) -> Result<(ProxyHeader, usize), Stop> {
    let sig = buf.get(..SIGNATURE.len()).unwrap_or(buf);
    if !SIGNATURE.starts_with(sig) {
        return Err(Stop::Reject(Rejection::NotProxy));
    }
    let window = buf.get(..MAX_V1).unwrap_or(buf);
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = window
        .get(SIGNATURE.len()..end.unwrap_or(window.len()))
        .unwrap_or_default();
    let Some(cr) = end else {
        if window.len() >= MAX_V1 {
            return Err(Stop::Reject(Rejection::TooLong));
        }
        fields(line, false)?;
        return Err(Stop::Need((buf.len() + 1).max(MIN_HEADER)));
    };
    if window.get(cr) == Some(&b'\n') {
        return Err(bad("line ends with LF without CR"));
    }
    let len = cr + 2;
    if len > MAX_V1 {
        return Err(Stop::Reject(Rejection::TooLong));
    }
    match buf.get(cr + 1) {
        Some(b'\n') => {}
        Some(_) => return Err(bad("CR not followed by LF")),
        None => {
            // The line is whole: judge it now rather than after the LF.
            fields(line, true)?;
            return Err(Stop::Need(len));
        }
    }
    let addresses = fields(line, true)?;
    let header = ProxyHeader {
        version: Version::V1,
        addresses,
    };
    Ok((header, len))
}

/// Checks the line between `PROXY ` and CRLF; with `complete` false, its
/// last field may be cut short and only has to be completable. The addresses
/// come back only for a complete TCP line.
fn fields(line: &[u8], complete: bool) -> Result<Option<Addresses>, Stop> {
    if line.starts_with(UNKNOWN) {
        return Ok(None);
    }
    let count = line.split(|&b| b == b' ').count();
    let mut v6 = false;
    let mut ips = [None, None];
    let mut ports = [None, None];
    for (i, field) in line.split(|&b| b == b' ').enumerate() {
        let partial = !complete && i + 1 == count;
        if field.is_empty() && !partial {
            return Err(bad(
                "empty field: fields are separated by exactly one space",
            ));
        }
        match i {
            0 if field == TCP4 => {}
            0 if field == TCP6 => v6 = true,
            0 if partial && [TCP4, TCP6, UNKNOWN].iter().any(|p| p.starts_with(field)) => {}
            0 => return Err(bad("protocol is not TCP4, TCP6 or UNKNOWN")),
            1 | 2 => {
                let ip = if v6 {
                    ipv6(field, partial)
                } else {
                    ipv4(field, partial)
                };
                match (ip, i) {
                    (Ok(ip), _) => ips[i - 1] = ip,
                    (Err(()), 1) if v6 => return Err(bad("source address is not IPv6")),
                    (Err(()), 1) => return Err(bad("source address is not dotted IPv4")),
                    (Err(()), _) if v6 => return Err(bad("destination address is not IPv6")),
                    (Err(()), _) => return Err(bad("destination address is not dotted IPv4")),
                }
            }
            3 | 4 => match port(field, partial) {
                Ok(p) => ports[i - 3] = p,
                Err(()) if i == 3 => return Err(bad("source port is not a number in 0..=65535")),
                Err(()) => return Err(bad("destination port is not a number in 0..=65535")),
            },
            _ => return Err(bad("more than 5 fields")),
        }
    }
    if complete && count < FIELDS {
        return Err(bad("TCP4 and TCP6 need two addresses and two ports"));
    }
    let ([Some(src), Some(dst)], [Some(sport), Some(dport)]) = (ips, ports) else {
        return Ok(None);
    };
    Ok(Some(Addresses {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    }))
}

/// A dotted quad (`Some`), a prefix of one (`None` when `partial`), or not.
fn ipv4(field: &[u8], partial: bool) -> Result<Option<IpAddr>, ()> {
    let mut octets = [0u8; 4];
    let parts = field.split(|&b| b == b'.').count();
    for (i, part) in field.split(|&b| b == b'.').enumerate() {
        let slot = octets.get_mut(i).ok_or(())?;
        match decimal(part, 255) {
            Some(n) => *slot = u8::try_from(n).map_err(|_| ())?,
            // Only the last part of a prefix may be still empty.
            None if partial && i + 1 == parts && part.is_empty() => {}
            None => return Err(()),
        }
    }
    match (partial, parts) {
        (false, 4) => Ok(Some(IpAddr::V4(Ipv4Addr::from(octets)))),
        (false, _) => Err(()),
        // Checked as a whole once the field ends.
        (true, _) => Ok(None),
    }
}

/// IPv6 text, or a prefix of it (`None` when `partial`). The characters and
/// length are checked first, so any prefix of an accepted address passes.
fn ipv6(field: &[u8], partial: bool) -> Result<Option<IpAddr>, ()> {
    let plausible = field.len() <= MAX_V6_TEXT
        && field
            .iter()
            .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.');
    if !plausible {
        return Err(());
    }
    if partial {
        return Ok(None);
    }
    let text = std::str::from_utf8(field).map_err(|_| ())?;
    let ip: Ipv6Addr = text.parse().map_err(|_| ())?;
    Ok(Some(IpAddr::V6(ip)))
}

/// A port, or a prefix of one (`None` when `partial`).
fn port(field: &[u8], partial: bool) -> Result<Option<u16>, ()> {
    if partial && field.is_empty() {
        return Ok(None);
    }
    let n = decimal(field, u32::from(u16::MAX)).ok_or(())?;
    let port = u16::try_from(n).map_err(|_| ())?;
    Ok((!partial).then_some(port))
}

/// `digits` as a decimal number of at most `max`: ASCII digits only, no
/// sign, no leading zero. A prefix of such a number is one too (or empty),
/// which is what lets partial fields be judged early.
fn decimal(digits: &[u8], max: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 5 || (digits.len() > 1 && digits.first() == Some(&b'0'))
    {
        return None;
    }
    let mut n = 0u32;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(d - b'0');
    }
    (n <= max).then_some(n)
}

pub(super) fn encode(ips: IpPair, (sport, dport): (u16, u16)) -> Vec<u8> {
    let line = match ips {
        IpPair::V4(s, d) => format!("PROXY TCP4 {s} {d} {sport} {dport}\r\n"),
        IpPair::V6(s, d) => format!("PROXY TCP6 {s} {d} {sport} {dport}\r\n"),
    };
    line.into_bytes()
}
