//! What the backend learns of a client certificate, computed once per
//! connection: subject and issuer as RFC 4514 strings (what nginx's
//! `$ssl_client_s_dn` prints), the serial number in hex, and the SHA-256
//! fingerprint of the leaf.

use rustls::pki_types::CertificateDer;
use std::fmt::Write as _;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The leaf certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFacts {
    /// `None` when the certificate does not parse (the fingerprint still holds).
    pub subject_dn: Option<String>,
    pub issuer_dn: Option<String>,
    /// Upper-case hex, without leading zero bytes (nginx's `$ssl_client_serial`).
    pub serial: Option<String>,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub fingerprint: String,
}

impl LeafFacts {
    pub fn of(leaf: &CertificateDer<'_>) -> Self {
        let fingerprint = hex_lower(ring::digest::digest(&ring::digest::SHA256, leaf).as_ref());
        match X509Certificate::from_der(leaf.as_ref()) {
            Ok((_, cert)) => Self {
                subject_dn: Some(rfc4514(cert.subject())),
                issuer_dn: Some(rfc4514(cert.issuer())),
                serial: Some(serial_hex(cert.raw_serial())),
                fingerprint,
            },
            Err(_) => Self {
                subject_dn: None,
                issuer_dn: None,
                serial: None,
                fingerprint,
            },
        }
    }
}

/// A name as RFC 4514 writes it: the last RDN first, `,` between RDNs, `+`
/// between the attributes of one RDN, values escaped. Types without a short
/// name are dotted OIDs; values that are not strings are `#` and the hex of
/// their DER. Bytes outside printable ASCII are escaped as `\XX`, so the text
/// is always a valid header value.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            out.push_str(short_name(&oid).unwrap_or(&oid));
            out.push('=');
            match string_value(attr.attr_value()) {
                Some(text) => escape_value(&text, &mut out),
                None => {
                    out.push('#');
                    let der = attr.attr_value().to_der_vec().unwrap_or_default();
                    out.push_str(&hex_lower(&der));
                }
            }
        }
    }
    out
}

/// RFC 4514's names, and OpenSSL's for two types common in client certificates.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// The text of a directory string.
fn string_value(value: &Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // Teletex in practice carries Latin-1.
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            data.len()
                .is_multiple_of(2)
                .then(|| String::from_utf16(&units).ok())
                .flatten()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 §2.4, plus `\XX` for every byte outside printable ASCII.
fn escape_value(value: &str, out: &mut String) {
    let last = value.len().saturating_sub(1);
    for (i, b) in value.bytes().enumerate() {
        let special = matches!(b, b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\')
            || (i == 0 && (b == b' ' || b == b'#'))
            || (i == last && b == b' ');
        if special {
            out.push('\\');
            out.push(char::from(b));
        } else if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    let mut out = String::with_capacity(2 * raw.len());
    for b in &raw[start..] {
        let _ = write!(out, "{b:02X}");
    }
    out
}

fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SerialNumber};

    fn cert(dn: DistinguishedName, serial: &[u8]) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(serial));
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn names_are_written_last_rdn_first_and_escaped() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "DE");
        dn.push(DnType::OrganizationName, "Acme, Inc.");
        dn.push(DnType::CommonName, " #alice+bob <x>; \"q\" \\ ");
        dn.push(
            DnType::CustomDnType(vec![1, 2, 3, 4]),
            DnValue::Utf8String("grüß".into()),
        );
        let der = cert(dn, &[0x00, 0x0a, 0xbc]);
        let facts = LeafFacts::of(&der);
        let subject = facts.subject_dn.unwrap();
        assert_eq!(
            subject,
            r#"1.2.3.4=gr\C3\BC\C3\9F,CN=\ #alice\+bob \<x\>\; \"q\" \\\ ,O=Acme\, Inc.,C=DE"#
        );
        assert_eq!(facts.issuer_dn.unwrap(), subject, "self-signed");
        assert_eq!(facts.serial.unwrap(), "0ABC");
        let want = ring::digest::digest(&ring::digest::SHA256, &der);
        assert_eq!(facts.fingerprint, hex_lower(want.as_ref()));
        assert_eq!(facts.fingerprint.len(), 64);
    }

    #[test]
    fn only_leading_hashes_and_edge_spaces_are_escaped_by_position() {
        let escaped = |v: &str| {
            let mut out = String::new();
            escape_value(v, &mut out);
            out
        };
        assert_eq!(escaped("#a#b"), r"\#a#b");
        assert_eq!(escaped(" a b "), r"\ a b\ ");
        assert_eq!(escaped("a=b\0\n"), r"a=b\00\0A");
        assert_eq!(escaped(""), "");
    }

    #[test]
    fn other_string_types_and_non_strings() {
        let mut dn = DistinguishedName::new();
        let bmp = rcgen::string::BmpString::try_from("Zoë").unwrap();
        dn.push(DnType::CommonName, DnValue::BmpString(bmp));
        let t61 = rcgen::string::TeletexString::try_from("a=b").unwrap();
        dn.push(DnType::OrganizationalUnitName, DnValue::TeletexString(t61));
        let facts = LeafFacts::of(&cert(dn, &[7]));
        assert_eq!(facts.subject_dn.unwrap(), r"OU=a=b,CN=Zo\C3\AB");
        assert_eq!(facts.serial.unwrap(), "07");
        assert_eq!(serial_hex(&[0, 0]), "00");
        let junk = CertificateDer::from(vec![1, 2, 3]);
        let facts = LeafFacts::of(&junk);
        assert_eq!((facts.subject_dn, facts.serial), (None, None));
        assert_eq!(facts.fingerprint.len(), 64);
    }
}
