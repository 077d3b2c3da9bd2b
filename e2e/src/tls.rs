//! TLS test material: a test CA issuing certificates of each key type the proxy
//! serves (RSA keys come from `openssl genpkey`: ring cannot generate them), the
//! `certificates:` YAML for them, and the time of a proxy log line. The external
//! programs (`openssl s_client`, scanners) are in `tools.rs`.

use crate::tools::require;
use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SignatureAlgorithm,
};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The leaf's key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa2048,
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From yesterday for 90 days (well under the one year browsers accept).
    Current,
    /// 2020-01-01 to 2021-01-01.
    Expired,
}

/// A certificate for the table: PEM chain (the leaf alone: clients hold the CA)
/// and key, and the leaf's DER to compare with what a client received.
#[derive(Clone, Debug)]
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// An ECDSA P-256 certificate authority of its own, for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new() -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "sluice e2e test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        valid_days(&mut params, -1, 365);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// A current certificate for `names` (the first is also the common name).
    pub fn issue(&self, names: &[&str], kind: KeyKind) -> Result<Issued> {
        self.issue_with(names, kind, Validity::Current)
    }

    pub fn issue_with(&self, names: &[&str], kind: KeyKind, validity: Validity) -> Result<Issued> {
        let key = match kind {
            KeyKind::Rsa2048 => KeyPair::from_pem(&openssl_rsa_key()?)?,
            KeyKind::EcdsaP256 => generate(&rcgen::PKCS_ECDSA_P256_SHA256)?,
            KeyKind::EcdsaP384 => generate(&rcgen::PKCS_ECDSA_P384_SHA384)?,
            KeyKind::Ed25519 => generate(&rcgen::PKCS_ED25519)?,
        };
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Strict validators (sslyze's, through cryptography) require it.
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        // Scanners rate a certificate naming no revocation source as a finding;
        // nothing fetches this one (testssl.sh only with --phone-out).
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec!["http://ca.invalid/crl.der".to_owned()],
        }];
        match validity {
            Validity::Current => valid_days(&mut params, -1, 90),
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

fn generate(alg: &'static SignatureAlgorithm) -> Result<KeyPair> {
    Ok(KeyPair::generate_for(alg)?)
}

/// A fresh RSA 2048 key (PKCS#8 PEM) from `openssl genpkey`.
fn openssl_rsa_key() -> Result<String> {
    let openssl = require(&["openssl"], "apt-get install openssl")?
        .context("openssl is needed for RSA keys")?;
    let out = std::process::Command::new(openssl)
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Valid from `today + from` to `today + to` days, at midnight UTC.
fn valid_days(params: &mut CertificateParams, from: i64, to: i64) {
    let today = unix_now() / 86_400;
    let day = |offset: i64| {
        let (y, m, d) = civil_from_days(today + offset);
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = day(from);
    params.not_after = day(to);
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The civil date of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

/// Days since 1970-01-01 of a civil date (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The time at the start of a log line (`2025-01-02T03:04:05.678901Z ...`, the
/// proxy's tracing format), so a test can tell when the proxy did something.
pub fn log_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':');
    let (h, min) = (
        hms.next()?.parse::<u64>().ok()?,
        hms.next()?.parse::<u64>().ok()?,
    );
    let secs: f64 = hms.next()?.parse().ok()?;
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    let whole = days * 86_400 + h * 3600 + min * 60;
    Some(UNIX_EPOCH + Duration::from_secs(whole) + Duration::from_secs_f64(secs))
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A table with one `https` listener forwarding everything to `backend`, its
/// `tls:` settings (flow YAML, `{}` for the defaults), and `certs` by id.
pub fn https_table(
    listen: SocketAddr,
    backend: SocketAddr,
    tls: &str,
    certs: &[(String, &Issued)],
) -> String {
    let route = "{name: all, action: {forward: app}}";
    https_table_with_route(listen, backend, tls, route, certs)
}

/// [`https_table`] with its one route written out (flow YAML), forwarding to `app`.
pub fn https_table_with_route(
    listen: SocketAddr,
    backend: SocketAddr,
    tls: &str,
    route: &str,
    certs: &[(String, &Issued)],
) -> String {
    let mut yaml = format!(
        "listeners:\n  - https:\n      name: web\n      bind: {listen}\n      tls: {tls}\n      \
         routes:\n        - {route}\n\
         backends:\n  app:\n    endpoints: [{{address: {backend}}}]\n\
         certificates:\n"
    );
    for (id, cert) in certs {
        yaml.push_str(&format!(
            "  {id}:\n    chain_pem: |\n{}    private_key: |\n{}",
            indent(&cert.chain_pem, 6),
            indent(&cert.key_pem, 6)
        ));
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1, 0, 59, 60, 365, 10_957, 19_782, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(i64::from(y), i64::from(m), i64::from(d)),
                days
            );
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = log_time("2000-02-29T00:00:01.500000Z  INFO table loaded").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_millis(11_016 * 86_400_000 + 1500)
        );
    }
}
