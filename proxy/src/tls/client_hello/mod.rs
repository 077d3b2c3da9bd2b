//! Peeks at a TLS ClientHello for its SNI and ALPN without terminating TLS:
//! TLS passthrough and SNI routing of TCP listeners (PostgreSQL 17's
//! `sslnegotiation=direct` is a plain ClientHello with ALPN `postgresql`).
//!
//! [`peek`] is pure: call it with everything read so far; it answers
//! [`Peek::Incomplete`] (read until the buffer holds at least that many bytes,
//! then call again), [`Peek::Done`] or [`Peek::NotTls`]. The bytes are not
//! consumed: the caller forwards the whole buffer to the chosen backend.
//!
//! What is accepted, and why:
//! - Records: content type 22 (handshake), record version 0x0300..=0x0304.
//!   The record version of a ClientHello "MUST be ignored" (RFC 8446 §5.1) and
//!   clients send 0x0301 or 0x0303; 0x0300 (SSLv3 framing) is tolerated since
//!   the hello inside has the same format and refusing it is the backend's
//!   call. Major version 3 is what tells TLS from other protocols. Each
//!   record is 1..=2^14 bytes (RFC 8446 §5.1: no longer records, no empty
//!   handshake fragments).
//! - Fragmentation: the ClientHello may span several records (large hellos,
//!   or clients splitting it on purpose), up to [`MAX_RECORDS`] records and
//!   [`MAX_CLIENT_HELLO`] bytes in all, so a caller buffers at most that. No
//!   other record type may come in between, and the hello must end at a record
//!   boundary (nothing else may share its records: RFC 8446 §5.1, it precedes
//!   a key change). Records after it (ChangeCipherSpec, 0-RTT data) are not
//!   looked at.
//! - SSLv2-compatible hellos are not TLS here: no current client sends them.
//! - The hello is checked structurally: every length against its container
//!   (an inner length overrunning its container is malformed at once, a
//!   shortfall the outer lengths still promise is `Incomplete`), a session id
//!   of at most 32 bytes, a non-empty even cipher suite list, at least one
//!   compression method, extensions filling the rest of the hello exactly, no
//!   extension type twice (RFC 8446 §4.2). Other extensions are skipped
//!   unread.
//! - server_name (RFC 6066): exactly one entry, of type host_name; it may not
//!   repeat a type and no other type was ever defined. The name is lower-cased
//!   and loses one trailing dot, then must be a DNS name: ASCII letters,
//!   digits, `-` and `_`, labels of 1..=63 bytes, at most 253 bytes. An IP
//!   literal is not permitted by RFC 6066 but some clients send one: it is
//!   reported as no SNI (`None`), so the connection takes the default route
//!   rather than being refused.
//! - ALPN (RFC 7301): a non-empty list of non-empty names.
//! - supported_versions (RFC 8446 §4.2.1): a non-empty list of u16s, GREASE
//!   values included as sent.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The most bytes (record headers included) a ClientHello may take: four
/// full records. Real hellos are well under 2 KiB, even with post-quantum key
/// shares; large ones (many PSK identities) stay far below this, and it bounds
/// what a caller buffers per connection.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// The most records a ClientHello may be split into. Each [`peek`] call parses
/// everything buffered again, so this bounds the work a client dribbling tiny
/// records can cause.
pub const MAX_RECORDS: usize = 32;

/// The largest TLSPlaintext fragment (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;
const RECORD_HEADER: usize = 5;
const HANDSHAKE_HEADER: usize = 4;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// What routing needs from a ClientHello.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloInfo {
    /// The SNI host name: lower-case, no trailing dot, a valid DNS name.
    /// `None` without SNI or when it is an IP literal.
    pub server_name: Option<String>,
    /// ALPN protocol names in the client's order; empty without ALPN.
    pub alpn: Vec<Vec<u8>>,
    /// `legacy_version` of the hello (0x0303 from TLS 1.3 clients).
    pub legacy_version: u16,
    /// The supported_versions extension as sent; empty without it.
    pub supported_versions: Vec<u16>,
}

/// The answer of [`peek`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Need more bytes: at least this many in total. Always more than the
    /// buffer held and at most [`MAX_CLIENT_HELLO`].
    Incomplete(usize),
    /// The whole ClientHello was there and is well formed.
    Done(ClientHelloInfo),
    /// Not a ClientHello this parser accepts; more bytes will not change that.
    NotTls(Rejection),
}

/// Why the bytes are not an acceptable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The first bytes are not a TLS handshake record: another protocol
    /// (plain HTTP, a PostgreSQL SSLRequest...) or SSLv2.
    #[error("not TLS: {0}")]
    OtherProtocol(&'static str),
    /// A TLS handshake record whose ClientHello breaks the wire format.
    #[error("malformed TLS ClientHello: {0}")]
    Malformed(&'static str),
    /// Beyond [`MAX_CLIENT_HELLO`] or [`MAX_RECORDS`].
    #[error("TLS ClientHello too large: {0}")]
    TooLarge(&'static str),
}

/// Parses the ClientHello at the start of `buf`; see the module docs.
pub fn peek(buf: &[u8]) -> Peek {
    match peek_inner(buf) {
        Ok(info) => Peek::Done(info),
        Err(Stop::Need(n)) => Peek::Incomplete(n),
        Err(Stop::Reject(r)) => Peek::NotTls(r),
    }
}

enum Stop {
    Need(usize),
    Reject(Rejection),
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Self {
        Stop::Reject(r)
    }
}

/// Where the record walk stopped.
enum Walked {
    /// The whole handshake message is there.
    Complete,
    /// Inside a record whose end is at this offset.
    InRecord(usize),
    /// At a record boundary (this offset) with more of the message to come.
    AtBoundary(usize),
}

fn peek_inner(buf: &[u8]) -> Result<ClientHelloInfo, Stop> {
    // The handshake message reassembled from its records: borrowed while it
    // sits in one record (the usual case), copied once it spans several.
    let mut hs: Cow<'_, [u8]> = Cow::Borrowed(&[]);
    let mut total: Option<usize> = None;
    let mut pos = 0;
    let mut records = 0;
    let walked = loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let header = rest.get(..RECORD_HEADER).unwrap_or(rest);
        check_record_header(header, records == 0)?;
        let [_, _, _, hi, lo] = *header else {
            break Walked::AtBoundary(pos);
        };
        records += 1;
        if records > MAX_RECORDS {
            return Err(Rejection::TooLarge("split across too many records").into());
        }
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            return Err(Rejection::Malformed("empty handshake record").into());
        }
        if len > MAX_RECORD {
            return Err(Rejection::Malformed("record longer than 2^14 bytes").into());
        }
        let start = pos + RECORD_HEADER;
        let end = start + len;
        if end > MAX_CLIENT_HELLO {
            return Err(Rejection::TooLarge("records exceed the limit").into());
        }
        let before = hs.len();
        append(
            &mut hs,
            buf.get(start..end.min(buf.len())).unwrap_or_default(),
        );
        if total.is_none() {
            total = handshake_total(&hs)?;
        }
        if let Some(t) = total
            && before + len > t
        {
            return Err(Rejection::Malformed("ClientHello does not end with its record").into());
        }
        if buf.len() < end {
            break Walked::InRecord(end);
        }
        pos = end;
        if total == Some(hs.len()) {
            break Walked::Complete;
        }
    };
    // Parse even a partial message: garbage is refused as soon as it shows.
    let parsed = parse_hello(&hs);
    let need = match walked {
        Walked::Complete => {
            return parsed.map_err(|stop| match stop {
                ParseStop::Bad(why) => Rejection::Malformed(why).into(),
                // Unreachable (the message is whole); an error, not a panic.
                ParseStop::Short => Rejection::Malformed("truncated").into(),
            });
        }
        Walked::InRecord(end) => end,
        Walked::AtBoundary(at) => {
            let missing = match total {
                Some(t) => t.saturating_sub(hs.len()),
                None => HANDSHAKE_HEADER.saturating_sub(hs.len()),
            }
            .max(1);
            // Fewest bytes that can bring it: in full-size records.
            at + missing + RECORD_HEADER * missing.div_ceil(MAX_RECORD)
        }
    };
    match parsed {
        Err(ParseStop::Bad(why)) => Err(Rejection::Malformed(why).into()),
        _ if need > MAX_CLIENT_HELLO => {
            Err(Rejection::TooLarge("ClientHello exceeds the limit").into())
        }
        _ => Err(Stop::Need(need)),
    }
}

/// Checks the (possibly partial) header of a record; `first` tells another
/// protocol from a broken hello.
fn check_record_header(header: &[u8], first: bool) -> Result<(), Rejection> {
    let reject = |why| {
        if first {
            Rejection::OtherProtocol(why)
        } else {
            Rejection::Malformed(why)
        }
    };
    match *header {
        [] => Ok(()),
        [b, ..] if first && b & 0x80 != 0 => Err(reject("SSLv2-style record")),
        [b, ..] if b != CONTENT_HANDSHAKE => Err(reject("not a TLS handshake record")),
        [_, major, ..] if major != 3 => Err(reject("record version is not 3.x")),
        [_, _, minor, ..] if minor > 4 => Err(reject("unknown record version")),
        _ => Ok(()),
    }
}

fn append<'a>(hs: &mut Cow<'a, [u8]>, fragment: &'a [u8]) {
    if hs.is_empty() {
        *hs = Cow::Borrowed(fragment);
    } else {
        hs.to_mut().extend_from_slice(fragment);
    }
}

/// The handshake message's total length once its header is in, after
/// checking its type and that it can fit the limit at all.
fn handshake_total(hs: &[u8]) -> Result<Option<usize>, Rejection> {
    match *hs {
        [t, ..] if t != HANDSHAKE_CLIENT_HELLO => Err(Rejection::Malformed(
            "first handshake message is not a ClientHello",
        )),
        [_, a, b, c, ..] => {
            let total = HANDSHAKE_HEADER + u24(a, b, c);
            if total + RECORD_HEADER * total.div_ceil(MAX_RECORD) > MAX_CLIENT_HELLO {
                return Err(Rejection::TooLarge("handshake length exceeds the limit"));
            }
            Ok(Some(total))
        }
        _ => Ok(None),
    }
}

fn u24(a: u8, b: u8, c: u8) -> usize {
    usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)
}

enum ParseStop {
    /// The bytes end before a field the outer lengths promise.
    Short,
    /// A length or value is wrong: no more bytes can fix it.
    Bad(&'static str),
}

/// Reads fields inside a container of declared length `end` of which only
/// `data` may have arrived yet: overrunning the container is `Bad`, running
/// out of data inside it is `Short`.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseStop> {
        if n > self.remaining() {
            return Err(ParseStop::Bad(what));
        }
        let bytes = self
            .data
            .get(self.pos..self.pos + n)
            .ok_or(ParseStop::Short)?;
        self.pos += n;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ParseStop> {
        match *self.take(1, what)? {
            [b] => Ok(b),
            _ => Err(ParseStop::Bad(what)),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ParseStop> {
        match *self.take(2, what)? {
            [a, b] => Ok(u16::from_be_bytes([a, b])),
            _ => Err(ParseStop::Bad(what)),
        }
    }

    /// The next `n` bytes as a nested container; `self` moves past them
    /// whether or not they have arrived.
    fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, ParseStop> {
        if n > self.remaining() {
            return Err(ParseStop::Bad(what));
        }
        let inner = Reader {
            data: self.data,
            pos: self.pos,
            end: self.pos + n,
        };
        self.pos += n;
        Ok(inner)
    }

    fn finish(&self, what: &'static str) -> Result<(), ParseStop> {
        if self.pos == self.end {
            Ok(())
        } else {
            Err(ParseStop::Bad(what))
        }
    }
}

/// Parses the handshake message `hs` (header included), possibly partial.
fn parse_hello(hs: &[u8]) -> Result<ClientHelloInfo, ParseStop> {
    let [_, a, b, c, ..] = *hs else {
        return Err(ParseStop::Short);
    };
    let len = u24(a, b, c);
    let body = hs.get(HANDSHAKE_HEADER..).unwrap_or_default();
    let mut r = Reader {
        data: body.get(..len).unwrap_or(body),
        pos: 0,
        end: len,
    };
    let mut info = ClientHelloInfo {
        legacy_version: r.u16("legacy_version")?,
        ..ClientHelloInfo::default()
    };
    if info.legacy_version >> 8 != 3 {
        return Err(ParseStop::Bad("legacy_version is not 3.x"));
    }
    r.take(32, "random")?;
    let session_id = r.u8("session id length")?;
    if session_id > 32 {
        return Err(ParseStop::Bad("session id longer than 32 bytes"));
    }
    r.take(usize::from(session_id), "session id")?;
    let suites = r.u16("cipher suites length")?;
    if suites < 2 || suites % 2 != 0 {
        return Err(ParseStop::Bad("cipher suites length is odd or zero"));
    }
    r.take(usize::from(suites), "cipher suites")?;
    let compression = r.u8("compression methods length")?;
    if compression == 0 {
        return Err(ParseStop::Bad("no compression method"));
    }
    r.take(usize::from(compression), "compression methods")?;
    if r.at_end() {
        // Pre-TLS-1.3 hellos may carry no extensions block at all.
        return Ok(info);
    }
    let ext_len = r.u16("extensions length")?;
    let mut exts = r.sub(usize::from(ext_len), "extensions")?;
    r.finish("bytes after the extensions")?;
    // One bit per extension type: linear in the extension count, whatever a
    // hostile hello holds.
    let mut seen = [0u64; 1024];
    while !exts.at_end() {
        let ty = exts.u16("extension type")?;
        let len = exts.u16("extension length")?;
        let mut data = exts.sub(usize::from(len), "extension data")?;
        // `ty >> 6` < 1024, always in range.
        let slot = &mut seen[usize::from(ty >> 6)];
        let bit = 1u64 << (ty & 63);
        if *slot & bit != 0 {
            return Err(ParseStop::Bad("duplicate extension"));
        }
        *slot |= bit;
        match ty {
            EXT_SERVER_NAME => info.server_name = server_name(&mut data)?,
            EXT_ALPN => info.alpn = alpn(&mut data)?,
            EXT_SUPPORTED_VERSIONS => info.supported_versions = supported_versions(&mut data)?,
            _ => {}
        }
    }
    Ok(info)
}

fn server_name(data: &mut Reader<'_>) -> Result<Option<String>, ParseStop> {
    let list_len = data.u16("server_name list length")?;
    let mut list = data.sub(usize::from(list_len), "server_name list")?;
    data.finish("bytes after the server_name list")?;
    if list.at_end() {
        return Err(ParseStop::Bad("empty server_name list"));
    }
    if list.u8("server_name name_type")? != 0 {
        return Err(ParseStop::Bad("server_name is not a host_name"));
    }
    let name_len = usize::from(list.u16("host_name length")?);
    // Judged on the declared lengths, before the name arrives.
    if name_len > list.remaining() {
        return Err(ParseStop::Bad("host_name overruns the server_name list"));
    }
    if name_len < list.remaining() {
        return Err(ParseStop::Bad("more than one server_name"));
    }
    let name = list.take(name_len, "host_name")?;
    host_name(name).map_err(ParseStop::Bad)
}

/// Validates an SNI host name; `None` for an IP literal (see module docs).
fn host_name(raw: &[u8]) -> Result<Option<String>, &'static str> {
    if raw.is_empty() {
        return Err("empty host_name");
    }
    let name = raw.strip_suffix(b".").unwrap_or(raw);
    if is_ip_literal(name) {
        return Ok(None);
    }
    if name.is_empty() || name.len() > 253 {
        return Err("host_name length is not 1..=253");
    }
    for label in name.split(|b| *b == b'.') {
        if label.is_empty() || label.len() > 63 {
            return Err("host_name label length is not 1..=63");
        }
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err("host_name has a character not allowed in DNS names");
        }
    }
    Ok(Some(
        name.iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect(),
    ))
}

fn is_ip_literal(name: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(name) else {
        return false;
    };
    let v6 = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<Ipv4Addr>().is_ok() || v6.parse::<Ipv6Addr>().is_ok()
}

fn alpn(data: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, ParseStop> {
    let list_len = data.u16("ALPN list length")?;
    let mut list = data.sub(usize::from(list_len), "ALPN list")?;
    data.finish("bytes after the ALPN list")?;
    if list.at_end() {
        return Err(ParseStop::Bad("empty ALPN list"));
    }
    let mut protocols = Vec::new();
    while !list.at_end() {
        let len = list.u8("ALPN protocol length")?;
        if len == 0 {
            return Err(ParseStop::Bad("empty ALPN protocol name"));
        }
        protocols.push(list.take(usize::from(len), "ALPN protocol")?.to_vec());
    }
    Ok(protocols)
}

fn supported_versions(data: &mut Reader<'_>) -> Result<Vec<u16>, ParseStop> {
    let len = data.u8("supported_versions length")?;
    if len < 2 || len % 2 != 0 {
        return Err(ParseStop::Bad("supported_versions length is odd or zero"));
    }
    let mut list = data.sub(usize::from(len), "supported_versions")?;
    data.finish("bytes after supported_versions")?;
    let mut versions = Vec::with_capacity(usize::from(len / 2));
    while !list.at_end() {
        versions.push(list.u16("supported version")?);
    }
    Ok(versions)
}

#[cfg(test)]
mod tests;
