#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn addrs(source: &str, destination: &str) -> Option<Addresses> {
    Some(Addresses {
        source: sa(source),
        destination: sa(destination),
    })
}

fn done(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf) {
        Parsed::Done { header, len } => (header, len),
        other => panic!(
            "{:?}: expected Done, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn rejected(buf: &[u8]) -> Rejection {
    match parse(buf) {
        Parsed::Invalid(why) => why,
        other => panic!(
            "{:?}: expected Invalid, got {other:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

fn bad_v1(line: &str) -> &'static str {
    match rejected(line.as_bytes()) {
        Rejection::BadV1(why) => why,
        other => panic!("{line:?}: expected BadV1, got {other:?}"),
    }
}

fn bad_v2(buf: &[u8]) -> &'static str {
    match rejected(buf) {
        Rejection::BadV2(why) => why,
        other => panic!("{buf:?}: expected BadV2, got {other:?}"),
    }
}

/// A v2 header: `version_command`, `family`, then `body` (length from it).
fn v2(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.push(version_command);
    out.push(family);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A v2 PROXY TCP4 body for 192.0.2.1:56324 -> 198.51.100.7:443.
fn inet_body() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 1, 198, 51, 100, 7];
    b.extend_from_slice(&56324u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

fn tlv(ty: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![ty];
    out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    out.extend_from_slice(value);
    out
}

// ---- v1 ----

#[test]
fn v1_examples_from_the_spec() {
    let mut buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec();
    let header_len = buf.len();
    buf.extend_from_slice(b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n");
    assert_eq!(
        done(&buf),
        (
            ProxyHeader {
                version: Version::V1,
                addresses: addrs("192.168.0.1:56324", "192.168.0.11:443"),
            },
            header_len
        )
    );
    // The worst cases the spec lists: 56 bytes for TCP4, 104 for TCP6.
    let tcp4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(tcp4.len(), 56);
    assert_eq!(
        done(tcp4.as_bytes()).0.addresses,
        addrs("255.255.255.255:65535", "255.255.255.255:65535")
    );
    let ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let tcp6 = format!("PROXY TCP6 {ffff} {ffff} 65535 65535\r\n");
    assert_eq!(tcp6.len(), 104);
    let (header, len) = done(tcp6.as_bytes());
    assert_eq!(len, 104);
    let any = format!("[{ffff}]:65535");
    assert_eq!(header.addresses, addrs(&any, &any));
    // UNKNOWN: alone, or followed by anything up to the CRLF (107 bytes).
    assert_eq!(
        done(b"PROXY UNKNOWN\r\n"),
        (
            ProxyHeader {
                version: Version::V1,
                addresses: None
            },
            15
        )
    );
    let unknown = format!("PROXY UNKNOWN {ffff} {ffff} 65535 65535\r\n");
    assert_eq!(unknown.len(), MAX_V1);
    assert_eq!(
        done(unknown.as_bytes()),
        (done(b"PROXY UNKNOWN\r\n").0, 107)
    );
    assert_eq!(done(b"PROXY UNKNOWN \x00\xff\t garbage\r\nx").1, 27);
}

#[test]
fn v1_accepted_address_forms() {
    let line = |l: &str| done(l.as_bytes()).0.addresses.unwrap();
    let a = line("PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n");
    assert_eq!(
        (a.source, a.destination),
        (sa("0.0.0.0:0"), sa("10.0.0.1:1"))
    );
    let a = line("PROXY TCP6 ::1 2001:DB8::A 1 65535\r\n");
    assert_eq!(
        (a.source, a.destination),
        (sa("[::1]:1"), sa("[2001:db8::a]:65535"))
    );
    // IPv4-mapped IPv6 is IPv6 text, and stays IPv6.
    let a = line("PROXY TCP6 ::ffff:192.0.2.1 ::1 80 443\r\n");
    assert_eq!(a.source, sa("[::ffff:192.0.2.1]:80"));
    assert_eq!(a.source.ip().to_canonical(), sa("192.0.2.1:80").ip());
}

#[test]
fn v1_signature() {
    for input in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PRO\n",
        b"PROXYTCP4",
        b"proxy TCP4",
        b"\x16\x03\x01\x02\x00",
        b"\0",
        b" PROXY",
    ] {
        assert_eq!(rejected(input), Rejection::NotProxy, "{input:?}");
    }
    // A prefix of the signature waits: no header is shorter than 15 bytes.
    assert_eq!(parse(b""), Parsed::Incomplete(15));
    assert_eq!(parse(b"P"), Parsed::Incomplete(15));
    assert_eq!(parse(b"PROXY "), Parsed::Incomplete(15));
    assert_eq!(parse(b"PROXY UNKNOWN\r"), Parsed::Incomplete(15));
}

#[test]
fn v1_rejections() {
    let tcp4_src = "source address is not dotted IPv4";
    let tcp4_dst = "destination address is not dotted IPv4";
    let tcp6_src = "source address is not IPv6";
    let tcp6_dst = "destination address is not IPv6";
    let sport = "source port is not a number in 0..=65535";
    let dport = "destination port is not a number in 0..=65535";
    let protocol = "protocol is not TCP4, TCP6 or UNKNOWN";
    let empty = "empty field: fields are separated by exactly one space";
    for (line, why) in [
        ("PROXY UNKNOWN\n", "line ends with LF without CR"),
        (
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            "line ends with LF without CR",
        ),
        ("PROXY UNKNOWN\rx", "CR not followed by LF"),
        ("PROXY UNKNOWN\r\r\n", "CR not followed by LF"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "more than 5 fields"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", empty),
        (
            "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            "TCP4 and TCP6 need two addresses and two ports",
        ),
        (
            "PROXY TCP6\r\n",
            "TCP4 and TCP6 need two addresses and two ports",
        ),
        ("PROXY \r\n", empty),
        ("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", empty),
        ("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", empty),
        ("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", protocol),
        ("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", protocol),
        ("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", protocol),
        ("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", protocol),
        ("PROXY UNKNOW\r\n", protocol),
        ("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 256.0.0.1 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 1.2.3.4x 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 +1.2.3.4 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", tcp4_src),
        ("PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n", tcp4_dst),
        ("PROXY TCP4 1.2.3.4 ::ffff:5.6.7.8 1 2\r\n", tcp4_dst),
        ("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", tcp6_src),
        ("PROXY TCP6 [::1] ::1 1 2\r\n", tcp6_src),
        ("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", tcp6_src),
        ("PROXY TCP6 ::g ::1 1 2\r\n", tcp6_src),
        ("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", tcp6_src),
        ("PROXY TCP6 ::1 ::1::2 1 2\r\n", tcp6_dst),
        ("PROXY TCP6 ::1 5.6.7.8 1 2\r\n", tcp6_dst),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", sport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", sport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", sport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", sport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n", sport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", sport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", dport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", dport),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", dport),
    ] {
        assert_eq!(bad_v1(line), why, "{line:?}");
    }
}

#[test]
fn v1_is_refused_as_soon_as_no_byte_can_fix_it() {
    for (partial, why) in [
        ("PROXY X", "protocol is not TCP4, TCP6 or UNKNOWN"),
        ("PROXY TCP4x", "protocol is not TCP4, TCP6 or UNKNOWN"),
        ("PROXY TCP4 1.2.3.4x", "source address is not dotted IPv4"),
        ("PROXY TCP4 300", "source address is not dotted IPv4"),
        ("PROXY TCP4 1..", "source address is not dotted IPv4"),
        ("PROXY TCP4 1.2.3.4.", "source address is not dotted IPv4"),
        (
            "PROXY TCP4 1.2.3.4 5.6.7.8 99999",
            "source port is not a number in 0..=65535",
        ),
        ("PROXY TCP6 ::1 z", "destination address is not IPv6"),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", "more than 5 fields"),
        (
            "PROXY TCP4  ",
            "empty field: fields are separated by exactly one space",
        ),
    ] {
        assert_eq!(bad_v1(partial), why, "{partial:?}");
    }
    // A whole line is judged at its CR, before the LF arrives.
    assert_eq!(
        bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r"),
        "TCP4 and TCP6 need two addresses and two ports"
    );
    let line = "PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r";
    assert_eq!(parse(line.as_bytes()), Parsed::Incomplete(line.len() + 1));
    // Completable prefixes wait.
    for partial in [
        "PROXY UNK",
        "PROXY TCP",
        "PROXY TCP4 1.",
        "PROXY TCP4 1.2.3.",
        "PROXY TCP4 1.2.3.4 ",
        "PROXY TCP6 ::ffff:1.2.",
        "PROXY TCP4 1.2.3.4 5.6.7.8 6553",
    ] {
        assert_eq!(
            parse(partial.as_bytes()),
            Parsed::Incomplete((partial.len() + 1).max(15)),
            "{partial:?}"
        );
    }
}

#[test]
fn v1_line_length_limit() {
    let line = |len: usize| {
        let mut l = b"PROXY UNKNOWN ".to_vec();
        l.resize(len, b'x');
        l
    };
    // Up to 106 bytes without CRLF the line may still end in time.
    assert_eq!(parse(&line(106)), Parsed::Incomplete(107));
    assert_eq!(rejected(&line(107)), Rejection::TooLong);
    assert_eq!(rejected(&line(500)), Rejection::TooLong);
    // CRLF must end by byte 107.
    let mut ok = line(105);
    ok.extend_from_slice(b"\r\n");
    assert_eq!(done(&ok).1, 107);
    let mut late = line(106);
    late.extend_from_slice(b"\r\n");
    assert_eq!(rejected(&late), Rejection::TooLong);
    assert_eq!(rejected(&late[..107]), Rejection::TooLong);
}

// ---- v2 ----

#[test]
fn v2_examples() {
    // PROXY, TCP over IPv4, no TLVs.
    let header = v2(0x21, 0x11, &inet_body());
    let mut buf = header.clone();
    buf.extend_from_slice(b"client data");
    assert_eq!(
        done(&buf),
        (
            ProxyHeader {
                version: Version::V2,
                addresses: addrs("192.0.2.1:56324", "198.51.100.7:443"),
            },
            28
        )
    );
    // PROXY, TCP over IPv6.
    let mut body = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&[0x1f, 0x90, 0x01, 0xbb]);
    assert_eq!(
        done(&v2(0x21, 0x21, &body)),
        (
            ProxyHeader {
                version: Version::V2,
                addresses: addrs("[2001:db8::1]:8080", "[2001:db8::2]:443"),
            },
            52
        )
    );
    // TLVs after the addresses (ALPN, authority, NOOP, an SSL TLV with
    // sub-TLVs, a custom one) are skipped.
    let mut with_tlvs = inet_body();
    with_tlvs.extend(tlv(0x01, b"h2"));
    with_tlvs.extend(tlv(0x02, b"example.com"));
    with_tlvs.extend(tlv(0x04, &[0; 7]));
    let mut ssl = vec![0x07, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    with_tlvs.extend(tlv(0x20, &ssl));
    with_tlvs.extend(tlv(0xea, &[]));
    let (header, len) = done(&v2(0x21, 0x11, &with_tlvs));
    assert_eq!(
        header.addresses,
        addrs("192.0.2.1:56324", "198.51.100.7:443")
    );
    assert_eq!(len, 16 + with_tlvs.len());
}

#[test]
fn v2_without_addresses() {
    let none = |buf: &[u8]| {
        let (header, len) = done(buf);
        assert_eq!(header.version, Version::V2);
        assert_eq!(header.addresses, None, "{buf:?}");
        assert_eq!(len, buf.len());
    };
    // LOCAL: a load balancer's health check, family ignored, even UDP or
    // undefined ones, and the block unread.
    none(&v2(0x20, 0x00, &[]));
    none(&v2(0x20, 0x11, &inet_body()));
    for family in [0x12, 0x22, 0x13, 0x41, 0xff] {
        none(&v2(0x20, family, &[1, 2, 3]));
    }
    // PROXY with UNSPEC: the block is ignored, whatever it holds.
    none(&v2(0x21, 0x00, &[]));
    none(&v2(0x21, 0x00, &[9; 20]));
    // AF_UNIX: two 108-byte paths, then TLVs.
    none(&v2(0x21, 0x31, &[0; 216]));
    let mut unix = vec![0; 216];
    unix.extend(tlv(0x05, b"id"));
    none(&v2(0x21, 0x32, &unix));
}

#[test]
fn v2_prefix_is_judged_byte_by_byte() {
    let header = v2(0x21, 0x11, &inet_body());
    for cut in 0..16 {
        let need = if cut == 0 { 15 } else { 16 };
        assert_eq!(parse(&header[..cut]), Parsed::Incomplete(need));
    }
    // Once the length is in, the exact total.
    for cut in 16..header.len() {
        assert_eq!(parse(&header[..cut]), Parsed::Incomplete(28));
    }
}

#[test]
fn v2_rejections() {
    // Every signature byte matters.
    let good = v2(0x21, 0x11, &inet_body());
    for i in 0..12 {
        let mut b = good.clone();
        b[i] ^= 0x40;
        assert_eq!(rejected(&b), Rejection::NotProxy, "byte {i}");
        assert_eq!(rejected(&b[..=i]), Rejection::NotProxy, "byte {i}, alone");
    }
    let prefix = |version_command: u8, family: u8, len: u16| {
        let mut p = V2_SIG.to_vec();
        p.extend_from_slice(&[version_command, family]);
        p.extend_from_slice(&len.to_be_bytes());
        p
    };
    // Each is judged from the prefix alone, and from its first bad byte.
    for (bytes, first_bad, why) in [
        (prefix(0x11, 0x11, 12), 13, "version is not 2"),
        (prefix(0x31, 0x11, 12), 13, "version is not 2"),
        (prefix(0x01, 0x11, 12), 13, "version is not 2"),
        (
            prefix(0x22, 0x11, 12),
            13,
            "command is neither LOCAL nor PROXY",
        ),
        (
            prefix(0x2f, 0x11, 12),
            13,
            "command is neither LOCAL nor PROXY",
        ),
        (
            prefix(0x21, 0x12, 12),
            14,
            "UDP is not supported by a TCP proxy",
        ),
        (
            prefix(0x21, 0x22, 36),
            14,
            "UDP is not supported by a TCP proxy",
        ),
        (
            prefix(0x21, 0x10, 12),
            14,
            "undefined address family or transport",
        ),
        (
            prefix(0x21, 0x01, 0),
            14,
            "undefined address family or transport",
        ),
        (
            prefix(0x21, 0x13, 12),
            14,
            "undefined address family or transport",
        ),
        (
            prefix(0x21, 0x33, 216),
            14,
            "undefined address family or transport",
        ),
        (
            prefix(0x21, 0x41, 12),
            14,
            "undefined address family or transport",
        ),
        (
            prefix(0x21, 0x11, 11),
            16,
            "length is shorter than the address block",
        ),
        (
            prefix(0x21, 0x21, 35),
            16,
            "length is shorter than the address block",
        ),
        (
            prefix(0x21, 0x21, 12),
            16,
            "length is shorter than the address block",
        ),
        (
            prefix(0x21, 0x31, 215),
            16,
            "length is shorter than the address block",
        ),
    ] {
        assert_eq!(bad_v2(&bytes), why, "{bytes:?}");
        assert_eq!(bad_v2(&bytes[..first_bad]), why, "{bytes:?}");
        assert_eq!(parse(&bytes[..first_bad - 1]), Parsed::Incomplete(16));
    }
    // Too long: refused from the prefix; the longest allowed is accepted.
    assert_eq!(rejected(&prefix(0x21, 0x11, 4097)), Rejection::TooLong);
    assert_eq!(rejected(&prefix(0x20, 0x00, 0xffff)), Rejection::TooLong);
    let mut longest = inet_body();
    longest.extend(tlv(0xe0, &vec![7; 4096 - 12 - 3]));
    let (_, len) = done(&v2(0x21, 0x11, &longest));
    assert_eq!(len, MAX_V2);
    // TLVs must tile the rest of the header.
    let mut short_tlv = inet_body();
    short_tlv.extend_from_slice(&[0x01, 0x00]);
    assert_eq!(bad_v2(&v2(0x21, 0x11, &short_tlv)), "truncated TLV header");
    let mut over = inet_body();
    over.extend_from_slice(&[0x01, 0x00, 0x0a, 1, 2, 3, 4, 5]);
    assert_eq!(
        bad_v2(&v2(0x21, 0x11, &over)),
        "TLV runs past the header's end"
    );
    let mut unix = vec![0; 216];
    unix.push(0x01);
    assert_eq!(bad_v2(&v2(0x21, 0x31, &unix)), "truncated TLV header");
}

// ---- encode ----

#[test]
fn encode_writes_what_the_spec_shows() {
    assert_eq!(
        encode(Version::V1, sa("192.168.0.1:56324"), sa("192.168.0.11:443")),
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    );
    assert_eq!(
        encode(Version::V1, sa("[2001:db8::1]:1"), sa("[::1]:2")),
        b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    );
    assert_eq!(
        encode(Version::V1, sa("10.0.0.1:1"), sa("[::1]:2")),
        b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n"
    );
    assert_eq!(
        encode(Version::V2, sa("192.0.2.1:56324"), sa("198.51.100.7:443")),
        v2(0x21, 0x11, &inet_body())
    );
    let v6 = encode(Version::V2, sa("[2001:db8::1]:1"), sa("198.51.100.7:2"));
    assert_eq!(&v6[..16], &v2(0x21, 0x21, &[0; 36])[..16]);
    assert_eq!(v6.len(), 52);
}

#[test]
fn round_trips() {
    let cases = [
        (
            "192.0.2.1:1234",
            "198.51.100.7:443",
            "192.0.2.1:1234",
            "198.51.100.7:443",
        ),
        (
            "[2001:db8::1]:0",
            "[2001:db8::2]:65535",
            "[2001:db8::1]:0",
            "[2001:db8::2]:65535",
        ),
        (
            "192.0.2.1:1",
            "[2001:db8::2]:2",
            "[::ffff:192.0.2.1]:1",
            "[2001:db8::2]:2",
        ),
        (
            "[2001:db8::1]:1",
            "192.0.2.1:2",
            "[2001:db8::1]:1",
            "[::ffff:192.0.2.1]:2",
        ),
    ];
    for version in [Version::V1, Version::V2] {
        for (s, d, want_s, want_d) in cases {
            let bytes = encode(version, sa(s), sa(d));
            let (header, len) = done(&bytes);
            assert_eq!(len, bytes.len());
            assert_eq!(header.version, version);
            assert_eq!(header.addresses, addrs(want_s, want_d), "{version} {s} {d}");
        }
    }
}

// ---- read_header ----

fn header_v1() -> Vec<u8> {
    encode(Version::V1, sa("192.0.2.1:56324"), sa("198.51.100.7:443"))
}

fn header_v2() -> Vec<u8> {
    let mut body = inet_body();
    body.extend(tlv(0x02, b"example.com"));
    v2(0x21, 0x11, &body)
}

#[tokio::test]
async fn reads_a_header_arriving_byte_by_byte() {
    for header in [header_v1(), header_v2()] {
        // A one-byte pipe: every read gets one byte.
        let (mut client, mut server) = tokio::io::duplex(1);
        let mut sent = header.clone();
        sent.extend_from_slice(b"hello");
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let (got, mut leftover) = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got, done(&header).0);
        server.read_to_end(&mut leftover).await.unwrap();
        assert_eq!(leftover, b"hello");
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn bytes_after_the_header_are_returned_or_left_unread() {
    // v1 has no length: what was read past the CRLF comes back.
    let (mut client, mut server) = tokio::io::duplex(4096);
    let mut sent = header_v1();
    sent.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    client.write_all(&sent).await.unwrap();
    let (header, leftover) = read_header(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        header.addresses,
        addrs("192.0.2.1:56324", "198.51.100.7:443")
    );
    assert_eq!(leftover, b"GET / HTTP/1.1\r\n\r\n");
    // v2 is read exactly: the client's data stays in the stream.
    let (mut client, mut server) = tokio::io::duplex(8192);
    let mut sent = header_v2();
    sent.extend_from_slice(&[0xaa; 3000]);
    client.write_all(&sent).await.unwrap();
    drop(client);
    let (header, leftover) = read_header(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(header.version, Version::V2);
    assert!(leftover.is_empty(), "{} bytes read past", leftover.len());
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, vec![0xaa; 3000]);
}

#[tokio::test]
async fn reads_the_longest_v2_header() {
    let mut body = inet_body();
    body.extend(tlv(0xe0, &vec![7; 4096 - 12 - 3]));
    let header = v2(0x21, 0x11, &body);
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    client.write_all(&header).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let (got, leftover) = read_header(&mut server, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got.addresses, addrs("192.0.2.1:56324", "198.51.100.7:443"));
    assert!(leftover.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_header_that_does_not_finish_in_time_times_out() {
    for partial in [&header_v1()[..20], &header_v2()[..20], &b""[..]] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(partial).await.unwrap();
        let start = tokio::time::Instant::now();
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ReadError::Timeout(d) if d == Duration::from_secs(5)),
            "{err}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // The client is still connected: it was the timer, not an EOF.
        drop(client);
    }
}

#[tokio::test]
async fn eof_before_a_whole_header_is_closed() {
    for partial in [
        &header_v1()[..20],
        &header_v2()[..20],
        &header_v2()[..10],
        &b""[..],
    ] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(partial).await.unwrap();
        drop(client);
        let err = read_header(&mut server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Closed), "{err}");
    }
}

#[tokio::test]
async fn invalid_headers_and_io_errors() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let err = read_header(&mut server, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReadError::Invalid(Rejection::NotProxy)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "no PROXY protocol header (neither the v1 nor the v2 signature)"
    );

    struct Failing;
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()))
        }
    }
    let err = read_header(&mut Failing, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ReadError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{err}"
    );
}

// ---- properties ----

/// What `parse` promises about any buffer.
fn assert_sane(buf: &[u8]) -> Parsed {
    let parsed = parse(buf);
    let max = if buf.first() == Some(&b'P') {
        MAX_V1
    } else {
        MAX_V2
    };
    match &parsed {
        Parsed::Incomplete(n) => assert!(*n > buf.len() && *n <= max, "{n} for {buf:?}"),
        Parsed::Done { header, len } => {
            assert!(*len <= buf.len() && *len >= 15 && *len <= max, "{len}");
            let version = if buf.first() == Some(&b'P') {
                Version::V1
            } else {
                Version::V2
            };
            assert_eq!(header.version, version);
            // The header alone gives the same answer: nothing after it counts.
            assert_eq!(parse(&buf[..*len]), parsed);
        }
        Parsed::Invalid(why) => assert!(!why.to_string().is_empty()),
    }
    parsed
}

/// The addresses a header from `encode` carries: one family, IPv4 mapped
/// when the two differ; no flow info or scope id.
fn encoded_addresses(s: SocketAddr, d: SocketAddr) -> Addresses {
    let both_v4 = s.is_ipv4() && d.is_ipv4();
    let plain = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) if !both_v4 => SocketAddr::new(ip.to_ipv6_mapped().into(), a.port()),
        ip => SocketAddr::new(ip, a.port()),
    };
    Addresses {
        source: plain(s),
        destination: plain(d),
    }
}

/// Valid headers of every kind, with what they say.
fn valid_header() -> impl Strategy<Value = (Vec<u8>, ProxyHeader)> {
    let encoded =
        (any::<SocketAddr>(), any::<SocketAddr>(), any::<bool>()).prop_map(|(s, d, v2)| {
            let version = if v2 { Version::V2 } else { Version::V1 };
            let header = ProxyHeader {
                version,
                addresses: Some(encoded_addresses(s, d)),
            };
            (encode(version, s, d), header)
        });
    let unknown = proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..=92,
    )
    .prop_map(|junk| {
        let mut line = b"PROXY UNKNOWN".to_vec();
        line.extend_from_slice(&junk);
        line.extend_from_slice(b"\r\n");
        (
            line,
            ProxyHeader {
                version: Version::V1,
                addresses: None,
            },
        )
    });
    let tlvs = proptest::collection::vec(
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)),
        0..5,
    );
    let binary = (
        prop_oneof![
            Just((0x21u8, 0x11u8)),
            Just((0x21, 0x21)),
            Just((0x21, 0x00)),
            Just((0x21, 0x31)),
            Just((0x21, 0x32)),
            any::<u8>().prop_map(|f| (0x20, f))
        ],
        proptest::collection::vec(any::<u8>(), 216),
        0..50usize,
        tlvs,
    )
        .prop_map(|((command, family), block, ignored_len, tlvs)| {
            let block_len = match (command, family) {
                (0x21, 0x11) => 12,
                (0x21, 0x21) => 36,
                (0x21, 0x31 | 0x32) => 216,
                // LOCAL and UNSPEC: the block is ignored, so any length.
                _ => ignored_len,
            };
            let mut body = block[..block_len].to_vec();
            for (ty, value) in &tlvs {
                body.extend(tlv(*ty, value));
            }
            let addresses = match (command, family) {
                (0x21, 0x11) => Some(Addresses {
                    source: SocketAddr::new(
                        Ipv4Addr::new(body[0], body[1], body[2], body[3]).into(),
                        u16::from_be_bytes([body[8], body[9]]),
                    ),
                    destination: SocketAddr::new(
                        Ipv4Addr::new(body[4], body[5], body[6], body[7]).into(),
                        u16::from_be_bytes([body[10], body[11]]),
                    ),
                }),
                (0x21, 0x21) => Some(Addresses {
                    source: SocketAddr::new(
                        Ipv6Addr::from(<[u8; 16]>::try_from(&body[..16]).unwrap()).into(),
                        u16::from_be_bytes([body[32], body[33]]),
                    ),
                    destination: SocketAddr::new(
                        Ipv6Addr::from(<[u8; 16]>::try_from(&body[16..32]).unwrap()).into(),
                        u16::from_be_bytes([body[34], body[35]]),
                    ),
                }),
                _ => None,
            };
            (
                v2(command, family, &body),
                ProxyHeader {
                    version: Version::V2,
                    addresses,
                },
            )
        });
    prop_oneof![encoded, unknown, binary]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        assert_sane(&bytes);
        // Past the signatures, so the field and block parsers get garbage.
        let v2_tcp4 = [V2_SIG, &[0x21, 0x11]].concat();
        for start in [&b"PROXY "[..], b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY TCP4 1.2.3.4 ", V2_SIG, &v2_tcp4] {
            let mut buf = start.to_vec();
            buf.extend_from_slice(&bytes);
            assert_sane(&buf);
        }
    }

    #[test]
    fn v1_text_fields_never_panic(
        fields in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(b'.'), Just(b':'), Just(b' '), Just(b'0'), Just(b'9'), Just(b'f'), Just(b'\r'), Just(b'\n'), any::<u8>()], 0..20),
            0..7),
    ) {
        let mut line = b"PROXY TCP4".to_vec();
        for f in &fields {
            line.push(b' ');
            line.extend_from_slice(f);
        }
        assert_sane(&line);
        line[9] = b'6';
        assert_sane(&line);
    }

    #[test]
    fn socket_addresses_round_trip(s in any::<SocketAddr>(), d in any::<SocketAddr>()) {
        for version in [Version::V1, Version::V2] {
            let bytes = encode(version, s, d);
            let (header, len) = done(&bytes);
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(header, ProxyHeader { version, addresses: Some(encoded_addresses(s, d)) });
        }
    }

    #[test]
    fn valid_headers_parse_and_their_prefixes_wait((bytes, header) in valid_header()) {
        prop_assert_eq!(parse(&bytes), Parsed::Done { header, len: bytes.len() });
        for cut in 0..bytes.len() {
            match parse(&bytes[..cut]) {
                // At least one more byte, and no more than the header takes.
                Parsed::Incomplete(n) => prop_assert!(n > cut && n <= bytes.len(), "{} at {}", n, cut),
                other => prop_assert!(false, "{:?} at {}", other, cut),
            }
        }
    }

    #[test]
    fn prefixes_with_garbage_after_them(
        (bytes, header) in valid_header(),
        cut in any::<prop::sample::Index>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let cut = cut.index(bytes.len() + 1);
        let mut buf = bytes[..cut].to_vec();
        buf.extend_from_slice(&garbage);
        let parsed = assert_sane(&buf);
        if cut == bytes.len() {
            prop_assert_eq!(parsed, Parsed::Done { header, len: bytes.len() });
        }
    }

    #[test]
    fn a_changed_v2_signature_byte_is_invalid(
        (bytes, _) in valid_header().prop_filter("v2", |(b, _)| b[0] == b'\r'),
        index in 0..12usize,
        value in any::<u8>(),
    ) {
        prop_assume!(bytes[index] != value);
        let mut changed = bytes.clone();
        changed[index] = value;
        prop_assert!(matches!(parse(&changed), Parsed::Invalid(_)), "{:?}", parse(&changed));
        // (A `P` first is the start of a v1 signature.)
        if !(index == 0 && value == b'P') {
            prop_assert!(matches!(parse(&changed[..=index]), Parsed::Invalid(_)));
        }
    }
}
