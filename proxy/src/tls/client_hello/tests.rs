use super::*;
use proptest::prelude::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};
use std::sync::{Arc, OnceLock};

// ---- real ClientHellos from rustls ----

fn config(versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> ClientConfig {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// The client's first flight: the handshake never completes.
fn first_flight(config: ClientConfig, name: ServerName<'static>) -> Vec<u8> {
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn shop_hello() -> Vec<u8> {
    first_flight(
        config(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"]),
        ServerName::try_from("Shop.Example.com").unwrap(),
    )
}

/// One real hello shared by the property tests (key generation is slow).
fn shared_hello() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(shop_hello)
}

fn done(buf: &[u8]) -> ClientHelloInfo {
    match peek(buf) {
        Peek::Done(info) => info,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// The handshake message inside single-record `hello`.
fn handshake_of(hello: &[u8]) -> &[u8] {
    let len = usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    &hello[5..5 + len]
}

/// `hs` in records cut at `cuts` (offsets into `hs`).
fn records(hs: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain([hs.len()].iter()) {
        let piece = &hs[start..end];
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(piece.len()).unwrap().to_be_bytes());
        out.extend_from_slice(piece);
        start = end;
    }
    out
}

/// Every prefix is Incomplete with a hint that is a true lower bound, and
/// feeding exactly the hint progresses.
fn check_prefixes(full: &[u8], expected: &ClientHelloInfo) {
    for n in 0..full.len() {
        let Peek::Incomplete(hint) = peek(&full[..n]) else {
            panic!("prefix {n}/{}: {:?}", full.len(), peek(&full[..n]));
        };
        assert!(hint > n && hint <= full.len(), "prefix {n}: hint {hint}");
        match peek(&full[..hint]) {
            Peek::Done(info) => {
                assert_eq!(hint, full.len());
                assert_eq!(&info, expected);
            }
            Peek::Incomplete(next) => assert!(next > hint, "prefix {n}: {hint} -> {next}"),
            other => panic!("prefix {n}: hint {hint}: {other:?}"),
        }
    }
    assert_eq!(peek(full), Peek::Done(expected.clone()));
}

#[test]
fn rustls_hello_with_sni_and_alpn() {
    let hello = shop_hello();
    let info = done(&hello);
    assert_eq!(info.server_name.as_deref(), Some("shop.example.com"));
    assert_eq!(info.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(info.legacy_version, 0x0303);
    assert!(info.supported_versions.contains(&0x0304));
    assert!(info.supported_versions.contains(&0x0303));
}

#[test]
fn rustls_hello_to_an_ip_address_has_no_sni() {
    let ip = std::net::IpAddr::from([192, 0, 2, 7]);
    let hello = first_flight(
        config(rustls::DEFAULT_VERSIONS, &[b"h2"]),
        ServerName::from(ip),
    );
    let info = done(&hello);
    assert_eq!(info.server_name, None);
    assert_eq!(info.alpn, vec![b"h2".to_vec()]);
}

#[test]
fn rustls_tls12_only_hello() {
    let hello = first_flight(
        config(&[&rustls::version::TLS12], &[]),
        ServerName::try_from("legacy.example.org.").unwrap(),
    );
    let info = done(&hello);
    assert_eq!(info.server_name.as_deref(), Some("legacy.example.org"));
    assert_eq!(info.legacy_version, 0x0303);
    assert!(info.alpn.is_empty());
    assert!(!info.supported_versions.contains(&0x0304));
}

#[test]
fn postgres_direct_tls_hello() {
    let hello = first_flight(
        config(rustls::DEFAULT_VERSIONS, &[b"postgresql"]),
        ServerName::try_from("db.example.com").unwrap(),
    );
    let info = done(&hello);
    assert_eq!(info.server_name.as_deref(), Some("db.example.com"));
    assert_eq!(info.alpn, vec![b"postgresql".to_vec()]);
}

#[test]
fn rustls_fragmenting_its_own_records() {
    let mut config = config(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"]);
    config.max_fragment_size = Some(64);
    let hello = first_flight(config, ServerName::try_from("frag.example.com").unwrap());
    let first_record = 5 + usize::from(u16::from_be_bytes([hello[3], hello[4]]));
    assert!(first_record < hello.len(), "rustls sent several records");
    let info = done(&hello);
    assert_eq!(info.server_name.as_deref(), Some("frag.example.com"));
    check_prefixes(&hello, &info);
}

#[test]
fn every_prefix_is_incomplete_and_hints_progress() {
    let hello = shop_hello();
    check_prefixes(&hello, &done(&hello));
}

#[test]
fn refragmented_hello_parses_identically() {
    let hello = shop_hello();
    let expected = done(&hello);
    let hs = handshake_of(&hello);
    assert_eq!(hello.len(), hs.len() + 5, "rustls sent one record");
    for cut in 1..hs.len() {
        assert_eq!(done(&records(hs, &[cut])), expected, "cut at {cut}");
    }
    for (a, b) in [
        (1, 2),
        (3, 4),
        (2, 100),
        (40, hs.len() - 1),
        (4, hs.len() / 2),
    ] {
        let split = records(hs, &[a, b]);
        assert_eq!(done(&split), expected, "cuts {a} {b}");
    }
    check_prefixes(&records(hs, &[2, 50, 51]), &expected);
}

#[test]
fn records_after_the_hello_are_not_looked_at() {
    let mut hello = shop_hello();
    let expected = done(&hello);
    // A middlebox-compatibility ChangeCipherSpec, then whatever follows.
    hello.extend_from_slice(&[20, 3, 3, 0, 1, 1, 23, 3, 3, 0xff, 0xff]);
    assert_eq!(done(&hello), expected);
}

// ---- hand-built hellos ----

struct Hello {
    record_type: u8,
    record_version: u16,
    handshake_type: u8,
    legacy_version: u16,
    session_id: Vec<u8>,
    suites: Vec<u8>,
    compression: Vec<u8>,
    /// The extensions block after its length; `None`: no block at all.
    extensions: Option<Vec<u8>>,
}

impl Default for Hello {
    fn default() -> Self {
        Hello {
            record_type: 22,
            record_version: 0x0301,
            handshake_type: 1,
            legacy_version: 0x0303,
            session_id: vec![7; 32],
            suites: vec![0x13, 0x01, 0x13, 0x02],
            compression: vec![0],
            extensions: Some(Vec::new()),
        }
    }
}

fn u16_prefixed(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut out = ty.to_be_bytes().to_vec();
    out.extend(u16_prefixed(data));
    out
}

fn sni(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend(u16_prefixed(name));
    ext(0, &u16_prefixed(&entry))
}

fn alpn_ext(protocols: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in protocols {
        list.push(u8::try_from(p.len()).unwrap());
        list.extend_from_slice(p);
    }
    ext(16, &u16_prefixed(&list))
}

impl Hello {
    fn with(extensions: &[Vec<u8>]) -> Self {
        Hello {
            extensions: Some(extensions.concat()),
            ..Hello::default()
        }
    }

    fn body(&self) -> Vec<u8> {
        let mut b = self.legacy_version.to_be_bytes().to_vec();
        b.extend_from_slice(&[0xab; 32]);
        b.push(u8::try_from(self.session_id.len()).unwrap());
        b.extend_from_slice(&self.session_id);
        b.extend(u16_prefixed(&self.suites));
        b.push(u8::try_from(self.compression.len()).unwrap());
        b.extend_from_slice(&self.compression);
        if let Some(exts) = &self.extensions {
            b.extend(u16_prefixed(exts));
        }
        b
    }

    fn handshake_with_body(&self, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut hs = vec![self.handshake_type, len[1], len[2], len[3]];
        hs.extend_from_slice(body);
        hs
    }

    fn record_with_handshake(&self, hs: &[u8]) -> Vec<u8> {
        let mut r = vec![self.record_type];
        r.extend_from_slice(&self.record_version.to_be_bytes());
        r.extend(u16_prefixed(hs));
        r
    }

    fn bytes(&self) -> Vec<u8> {
        self.record_with_handshake(&self.handshake_with_body(&self.body()))
    }
}

fn rejected(buf: &[u8]) -> Rejection {
    match peek(buf) {
        Peek::NotTls(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn malformed(buf: &[u8]) -> &'static str {
    match rejected(buf) {
        Rejection::Malformed(why) => why,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn minimal_hand_built_hellos() {
    let info = done(&Hello::with(&[sni(b"a.b"), alpn_ext(&[b"x"])]).bytes());
    assert_eq!(info.server_name.as_deref(), Some("a.b"));
    assert_eq!(info.alpn, vec![b"x".to_vec()]);
    assert!(info.supported_versions.is_empty());
    // No extensions block at all (SSLv3-era clients), SSLv3 framing.
    let bare = Hello {
        record_version: 0x0300,
        legacy_version: 0x0300,
        extensions: None,
        ..Hello::default()
    };
    assert_eq!(
        done(&bare.bytes()),
        ClientHelloInfo {
            legacy_version: 0x0300,
            ..ClientHelloInfo::default()
        }
    );
    let sv = ext(43, &[4, 0x0a, 0x0a, 0x03, 0x04]);
    assert_eq!(
        done(&Hello::with(&[sv]).bytes()).supported_versions,
        vec![0x0a0a, 0x0304]
    );
}

#[test]
fn other_protocols_are_refused_from_the_first_byte() {
    for (input, why) in [
        (&b"G"[..], "not a TLS handshake record"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a TLS handshake record"),
        // PostgreSQL SSLRequest (the non-direct negotiation).
        (&[0, 0, 0, 8, 4, 210, 22, 47], "not a TLS handshake record"),
        // SSLv2-compatible ClientHello.
        (&[0x80, 0x2e, 0x01, 0x03, 0x01], "SSLv2-style record"),
        // An alert, application data.
        (&[21, 3, 3, 0, 2, 2, 40], "not a TLS handshake record"),
        (&[23, 3, 3], "not a TLS handshake record"),
        (&[22, 2], "record version is not 3.x"),
        (&[22, 3, 5], "unknown record version"),
    ] {
        assert_eq!(rejected(input), Rejection::OtherProtocol(why), "{input:?}");
    }
    assert_eq!(peek(&[]), Peek::Incomplete(9));
    assert_eq!(peek(&[22, 3]), Peek::Incomplete(9));
}

#[test]
fn record_layer_violations() {
    let good = Hello::with(&[sni(b"x.example")]);
    let hs = good.handshake_with_body(&good.body());
    // Wrong content type on a later record of a fragmented hello.
    let mut split = records(&hs, &[10]);
    split[5 + 10] = 21;
    assert_eq!(malformed(&split), "not a TLS handshake record");
    // Empty record, over-long record.
    assert_eq!(malformed(&[22, 3, 1, 0, 0]), "empty handshake record");
    assert_eq!(
        malformed(&[22, 3, 1, 0x40, 0x01]),
        "record longer than 2^14 bytes"
    );
    // Not a ClientHello: known from its first byte.
    assert_eq!(
        malformed(&[22, 3, 1, 0, 50, 2]),
        "first handshake message is not a ClientHello"
    );
    // The record holds more than the hello.
    let mut trailing = hs.clone();
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        malformed(&good.record_with_handshake(&trailing)),
        "ClientHello does not end with its record"
    );
    // Refused as soon as the record header shows it, not after reading it.
    let mut early = good.record_with_handshake(&trailing);
    early.truncate(9);
    assert_eq!(
        malformed(&early),
        "ClientHello does not end with its record"
    );
}

#[test]
fn size_limits() {
    // A 16 MiB hello is refused from its first 9 bytes.
    assert_eq!(
        rejected(&[22, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff]),
        Rejection::TooLarge("handshake length exceeds the limit")
    );
    // A large but legal hello spans several records.
    let padding = ext(21, &vec![0; 40_000]);
    let big = Hello::with(&[sni(b"big.example"), padding]);
    let hs = big.handshake_with_body(&big.body());
    let bytes = records(&hs, &[16_384, 32_768]);
    assert_eq!(done(&bytes).server_name.as_deref(), Some("big.example"));
    assert_eq!(peek(&bytes[..100]), Peek::Incomplete(16_389));
    // The hint after the first record counts the headers still to come.
    assert_eq!(peek(&bytes[..16_389]), Peek::Incomplete(hs.len() + 15));
    // Just over the limit.
    let huge = Hello::with(&[ext(21, &vec![0; 65_000]), ext(22, &[0; 500])]);
    let hs = huge.handshake_with_body(&huge.body());
    assert!(matches!(
        rejected(&records(&hs, &[16_384])[..16_389]),
        Rejection::TooLarge(_)
    ));
    // Too many tiny records.
    let small = Hello::with(&[sni(b"s.example")]);
    let hs = small.handshake_with_body(&small.body());
    let cuts: Vec<usize> = (1..=MAX_RECORDS).collect();
    assert_eq!(
        rejected(&records(&hs, &cuts)),
        Rejection::TooLarge("split across too many records")
    );
    let cuts: Vec<usize> = (1..MAX_RECORDS).collect();
    assert_eq!(
        done(&records(&hs, &cuts)).server_name.as_deref(),
        Some("s.example")
    );
}

#[test]
fn malformed_hello_bodies() {
    let h = |hello: Hello| malformed(&hello.bytes());
    assert_eq!(
        h(Hello {
            handshake_type: 2,
            ..Hello::default()
        }),
        "first handshake message is not a ClientHello"
    );
    assert_eq!(
        h(Hello {
            legacy_version: 0x0200,
            ..Hello::default()
        }),
        "legacy_version is not 3.x"
    );
    assert_eq!(
        h(Hello {
            session_id: vec![0; 33],
            ..Hello::default()
        }),
        "session id longer than 32 bytes"
    );
    for suites in [vec![0x13, 0x01, 0x13], vec![]] {
        assert_eq!(
            h(Hello {
                suites,
                ..Hello::default()
            }),
            "cipher suites length is odd or zero"
        );
    }
    assert_eq!(
        h(Hello {
            compression: vec![],
            ..Hello::default()
        }),
        "no compression method"
    );
}

#[test]
fn inner_lengths_must_fit_their_containers() {
    let good = Hello::with(&[sni(b"x.example"), alpn_ext(&[b"h2"])]);
    let body = good.body();
    // The cipher suites length (after version, random and session id)
    // claims more than the whole hello.
    let mut b = body.clone();
    b[67] = 0xff;
    assert_eq!(
        malformed(&good.record_with_handshake(&good.handshake_with_body(&b))),
        "cipher suites"
    );
    // The extensions length claims more, or less, than there is.
    let ext_at = 2 + 32 + 1 + 32 + 2 + 4 + 1 + 1;
    for (delta, why) in [(1i32, "extensions"), (-1, "bytes after the extensions")] {
        let mut b = body.clone();
        let len = i32::from(u16::from_be_bytes([b[ext_at], b[ext_at + 1]])) + delta;
        b[ext_at..ext_at + 2].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        assert_eq!(
            malformed(&good.record_with_handshake(&good.handshake_with_body(&b))),
            why
        );
    }
    // Garbage after the last extension, inside the extensions block.
    let trailing = Hello::with(&[sni(b"x.example"), vec![0, 0, 0]]);
    assert_eq!(malformed(&trailing.bytes()), "extension length");
    // Garbage inside an extension after its list.
    let mut s = sni(b"x.example");
    s.push(0);
    s[3] += 1;
    assert_eq!(
        malformed(&Hello::with(&[s]).bytes()),
        "bytes after the server_name list"
    );
    let mut a = alpn_ext(&[b"h2"]);
    a.push(0);
    a[3] += 1;
    assert_eq!(
        malformed(&Hello::with(&[a]).bytes()),
        "bytes after the ALPN list"
    );
    // An extension running past the block.
    let mut over = ext(99, &[1, 2, 3]);
    over[3] = 200;
    assert_eq!(malformed(&Hello::with(&[over]).bytes()), "extension data");
    // The handshake claims less than the record holds: bytes after it.
    let hs = good.handshake_with_body(&body);
    let mut short = hs.clone();
    short[3] -= 1;
    assert_eq!(
        malformed(&good.record_with_handshake(&short)),
        "ClientHello does not end with its record"
    );
}

#[test]
fn inner_overrun_is_refused_before_the_bytes_arrive() {
    // The cipher suites overrun the declared hello: no need to wait.
    let good = Hello::default();
    let mut b = good.body();
    b[67] = 0xff;
    let bytes = good.record_with_handshake(&good.handshake_with_body(&b));
    assert_eq!(malformed(&bytes[..9 + 69]), "cipher suites");
    // A shortfall the outer lengths promise is only Incomplete.
    assert_eq!(
        peek(&good.bytes()[..9 + 69]),
        Peek::Incomplete(good.bytes().len())
    );
}

#[test]
fn duplicate_extensions() {
    let dup = Hello::with(&[sni(b"a.example"), alpn_ext(&[b"h2"]), sni(b"b.example")]);
    assert_eq!(malformed(&dup.bytes()), "duplicate extension");
    let dup = Hello::with(&[ext(0xfafa, &[]), ext(0xfafa, &[1])]);
    assert_eq!(malformed(&dup.bytes()), "duplicate extension");
    let distinct = Hello::with(&[ext(0x0a0a, &[]), ext(0xfafa, &[1]), ext(0xffff, &[])]);
    assert_eq!(
        done(&distinct.bytes()),
        ClientHelloInfo {
            legacy_version: 0x0303,
            ..ClientHelloInfo::default()
        }
    );
}

#[test]
fn server_name_rules() {
    let name = |n: &[u8]| peek(&Hello::with(&[sni(n)]).bytes());
    let ok = |n: &[u8]| match name(n) {
        Peek::Done(info) => info.server_name,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(n)),
    };
    let bad = |n: &[u8]| match name(n) {
        Peek::NotTls(Rejection::Malformed(why)) => why,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(n)),
    };
    assert_eq!(ok(b"WWW.Example.COM.").as_deref(), Some("www.example.com"));
    assert_eq!(
        ok(b"_srv.my-host.example").as_deref(),
        Some("_srv.my-host.example")
    );
    assert_eq!(ok(b"localhost").as_deref(), Some("localhost"));
    let label63 = [b'a'; 63];
    assert_eq!(ok(&label63).map(|s| s.len()), Some(63));
    // 253 bytes: three labels of 63 and one of 61.
    let long = [&label63[..], &label63, &label63, &label63[..61]].join(&b'.');
    assert_eq!(long.len(), 253);
    assert_eq!(ok(&long).map(|s| s.len()), Some(253));
    let mut too_long = long.clone();
    too_long.push(b'z');
    assert_eq!(bad(&too_long), "host_name length is not 1..=253");
    // IP literals are treated as no SNI.
    assert_eq!(ok(b"192.0.2.1"), None);
    assert_eq!(ok(b"2001:db8::1"), None);
    assert_eq!(ok(b"[::1]"), None);
    assert_eq!(bad(b""), "empty host_name");
    assert_eq!(bad(b"."), "host_name length is not 1..=253");
    assert_eq!(bad(b"a..b"), "host_name label length is not 1..=63");
    assert_eq!(bad(b"a.b.."), "host_name label length is not 1..=63");
    assert_eq!(bad(b".a"), "host_name label length is not 1..=63");
    let mut label64 = vec![b'a'; 64];
    label64.extend_from_slice(b".com");
    assert_eq!(bad(&label64), "host_name label length is not 1..=63");
    for n in [
        &b"a b.com"[..],
        b"a\0.evil.com",
        b"caf\xc3\xa9.fr",
        b"a/b",
        b"a:8443",
        b"*.example",
    ] {
        assert_eq!(
            bad(n),
            "host_name has a character not allowed in DNS names",
            "{n:?}"
        );
    }
    // Other name types, several names, an empty list.
    let mut other_type = vec![1];
    other_type.extend(u16_prefixed(b"x.example"));
    let other = Hello::with(&[ext(0, &u16_prefixed(&other_type))]);
    assert_eq!(malformed(&other.bytes()), "server_name is not a host_name");
    let mut two = vec![0];
    two.extend(u16_prefixed(b"a.example"));
    two.push(0);
    two.extend(u16_prefixed(b"b.example"));
    assert_eq!(
        malformed(&Hello::with(&[ext(0, &u16_prefixed(&two))]).bytes()),
        "more than one server_name"
    );
    assert_eq!(
        malformed(&Hello::with(&[ext(0, &[0, 0])]).bytes()),
        "empty server_name list"
    );
    assert_eq!(
        malformed(&Hello::with(&[ext(0, &[])]).bytes()),
        "server_name list length"
    );
    let mut overrun = vec![0];
    overrun.extend_from_slice(&[0, 20, b'a']);
    assert_eq!(
        malformed(&Hello::with(&[ext(0, &u16_prefixed(&overrun))]).bytes()),
        "host_name overruns the server_name list"
    );
}

#[test]
fn alpn_and_supported_versions_rules() {
    let m = |e: Vec<u8>| malformed(&Hello::with(&[e]).bytes());
    assert_eq!(m(alpn_ext(&[b"h2", b""])), "empty ALPN protocol name");
    assert_eq!(m(ext(16, &[0, 0])), "empty ALPN list");
    assert_eq!(m(ext(16, &[0, 3, 5, b'h', b'2'])), "ALPN protocol");
    assert_eq!(
        m(ext(43, &[3, 3, 4, 3])),
        "supported_versions length is odd or zero"
    );
    assert_eq!(m(ext(43, &[0])), "supported_versions length is odd or zero");
    assert_eq!(m(ext(43, &[4, 3, 4])), "supported_versions");
    assert_eq!(m(ext(43, &[2, 3, 4, 0])), "bytes after supported_versions");
    let info = done(&Hello::with(&[alpn_ext(&[b"postgresql", &[0xff; 255]])]).bytes());
    assert_eq!(info.alpn, vec![b"postgresql".to_vec(), vec![0xff; 255]]);
}

// ---- properties ----

fn assert_sane(buf: &[u8]) {
    match peek(buf) {
        Peek::Incomplete(n) => assert!(n > buf.len() && n <= MAX_CLIENT_HELLO, "{n}"),
        Peek::Done(info) => {
            if let Some(name) = info.server_name {
                assert!(!name.is_empty() && name.len() <= 253, "{name}");
                assert!(!name.ends_with('.'));
                for label in name.split('.') {
                    assert!((1..=63).contains(&label.len()), "{name}");
                    assert!(
                        label.bytes().all(|b| b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || b == b'-'
                            || b == b'_'),
                        "{name}"
                    );
                }
            }
            assert!(info.alpn.iter().all(|p| !p.is_empty()));
        }
        Peek::NotTls(r) => assert!(!r.to_string().is_empty()),
    }
}

/// Random bytes in a valid record and handshake envelope, so the parser
/// gets past the headers.
fn enveloped(body: &[u8]) -> Vec<u8> {
    let hello = Hello::default();
    hello.record_with_handshake(&hello.handshake_with_body(body))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        assert_sane(&bytes);
        let mut tls = vec![22, 3, 1];
        tls.extend_from_slice(&bytes);
        assert_sane(&tls);
        assert_sane(&enveloped(&bytes));
    }

    #[test]
    fn random_extensions_never_panic(
        exts in proptest::collection::vec(
            (prop_oneof![Just(0u16), Just(16), Just(43), any::<u16>()],
             proptest::collection::vec(any::<u8>(), 0..40)),
            0..6),
    ) {
        let exts: Vec<Vec<u8>> = exts.iter().map(|(ty, data)| ext(*ty, data)).collect();
        let bytes = Hello::with(&exts).bytes();
        assert_sane(&bytes);
    }

    #[test]
    fn mutated_real_hello_never_panics(
        index in any::<prop::sample::Index>(),
        value in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut hello = shared_hello().to_vec();
        let i = index.index(hello.len());
        hello[i] = value;
        assert_sane(&hello);
        hello.truncate(cut.index(hello.len() + 1));
        assert_sane(&hello);
        assert_sane(&shared_hello()[..cut.index(shared_hello().len() + 1)]);
    }
}
