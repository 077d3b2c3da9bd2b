//! Many certificates on one https listener, as real clients see them: 50 hosts
//! with 50 certificates from a test CA, each checked with the `openssl s_client`
//! CLI (the leaf received, verified against the CA for that name), unknown names
//! getting the default; a certificate rotated by rewriting the table file while
//! clients make 200 full handshakes a second; RSA, ECDSA and Ed25519 keys; a key
//! that does not match its certificate, and an expired certificate.
//!
//! The tests run one at a time: the paced handshakes need both cores.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use serde_json::Value;
use sluice_e2e::cluster::notice;
use sluice_e2e::handshakes::{Paced, Shot, connector};
use sluice_e2e::tls::{Issued, KeyKind, TestCa, Validity, https_table, log_time};
use sluice_e2e::tools::{SClient, require, s_client};
use sluice_e2e::util::TempDir;
use sluice_e2e::{Backend, ProxyProcess, free_addr};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const HOSTS: usize = 50;
/// s_client processes at a time (two cores).
const PARALLEL: usize = 4;

fn host(i: usize) -> String {
    format!("host{i}.example.com")
}

/// The test CA written to a file, for `-CAfile`.
fn ca_file(ca: &TestCa, dir: &TempDir) -> PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    path
}

/// `s_client` for each name, `PARALLEL` at a time, in the order given.
async fn s_clients(
    openssl: &Path,
    listen: SocketAddr,
    ca: &Path,
    names: &[Option<String>],
    extra: &[&str],
) -> Vec<SClient> {
    let runs = names.iter().map(|name| async move {
        s_client(openssl, listen, name.as_deref(), ca, extra)
            .await
            .unwrap()
    });
    futures_util::stream::iter(runs)
        .buffered(PARALLEL)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hosts_get_their_own_certificates_and_unknown_names_the_default() {
    let _serial = SERIAL.lock().await;
    let Some(openssl) = require(&["openssl"], "apt-get install openssl").unwrap() else {
        return;
    };
    let ca = TestCa::new().unwrap();
    let dir = TempDir::new("tls-hosts").unwrap();
    let ca_path = ca_file(&ca, &dir);
    let certs: Vec<Issued> = (0..HOSTS)
        .map(|i| ca.issue(&[&host(i)], KeyKind::EcdsaP256).unwrap())
        .collect();
    let fallback = ca
        .issue(&["fallback.example.com"], KeyKind::EcdsaP256)
        .unwrap();
    let mut ids: Vec<(String, &Issued)> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("host{i}"), c))
        .collect();
    ids.push(("fallback".into(), &fallback));
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = https_table(
        listen,
        backend.addr,
        "{default_certificate: fallback}",
        &ids,
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let (_, warnings) = proxy.admin_get("/debug/warnings").await.unwrap();
    assert_eq!(warnings.trim(), "[]", "{warnings}");

    let started = std::time::Instant::now();
    let names: Vec<Option<String>> = (0..HOSTS).map(|i| Some(host(i))).collect();
    let seen = s_clients(&openssl, listen, &ca_path, &names, &[]).await;
    let mut right = 0;
    for (i, (run, cert)) in seen.iter().zip(&certs).enumerate() {
        assert_eq!(
            run.leaf.as_ref(),
            Some(&cert.der),
            "{} got another certificate:\n{}",
            host(i),
            run.output
        );
        assert_eq!(run.verify_code(), Some("0 (ok)"), "{}", run.output);
        right += 1;
    }
    notice(&format!(
        "tls_hosts: {right} of {HOSTS} hosts got their own certificate from openssl s_client \
         ({PARALLEL} at a time, {:?})",
        started.elapsed()
    ));
    assert_eq!(right, HOSTS);

    // An unknown name, and no name at all, get the default certificate.
    let others = [Some("nobody.example.com".to_owned()), None];
    let seen = s_clients(&openssl, listen, &ca_path, &others, &[]).await;
    for (run, name) in seen.iter().zip(&others) {
        assert_eq!(
            run.leaf.as_ref(),
            Some(&fallback.der),
            "{name:?}:\n{}",
            run.output
        );
    }
    // The default is not valid for the unknown name, and openssl says so.
    assert!(
        seen[0]
            .verify_code()
            .is_some_and(|c| c.contains("hostname mismatch")),
        "{}",
        seen[0].output
    );
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_ecdsa_and_ed25519_certificates_are_served_with_tls12_and_tls13() {
    let _serial = SERIAL.lock().await;
    let Some(openssl) = require(&["openssl"], "apt-get install openssl").unwrap() else {
        return;
    };
    let ca = TestCa::new().unwrap();
    let dir = TempDir::new("tls-keys").unwrap();
    let ca_path = ca_file(&ca, &dir);
    // (key, name, what s_client reports: key bits, signature type)
    let kinds = [
        (KeyKind::Rsa2048, "rsa.example.com", 2048, "RSA-PSS"),
        (KeyKind::EcdsaP256, "p256.example.com", 256, "ECDSA"),
        (KeyKind::EcdsaP384, "p384.example.com", 384, "ECDSA"),
        (KeyKind::Ed25519, "ed25519.example.com", 256, "ed25519"),
    ];
    let certs: Vec<Issued> = kinds
        .iter()
        .map(|(kind, name, ..)| ca.issue(&[name], *kind).unwrap())
        .collect();
    let ids: Vec<(String, &Issued)> = kinds
        .iter()
        .zip(&certs)
        .map(|((kind, ..), c)| (format!("{kind:?}").to_lowercase(), c))
        .collect();
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let proxy = ProxyProcess::start(&https_table(listen, backend.addr, "{}", &ids))
        .await
        .unwrap();
    let (_, warnings) = proxy.admin_get("/debug/warnings").await.unwrap();
    assert_eq!(warnings.trim(), "[]", "{warnings}");

    let names: Vec<Option<String>> = kinds.iter().map(|k| Some(k.1.to_owned())).collect();
    for version in ["-tls1_3", "-tls1_2"] {
        let seen = s_clients(&openssl, listen, &ca_path, &names, &[version]).await;
        for ((kind, name, bits, signature), (run, cert)) in
            kinds.iter().zip(seen.iter().zip(&certs))
        {
            let what = format!("{kind:?} ({name}, {version})");
            assert_eq!(
                run.leaf.as_ref(),
                Some(&cert.der),
                "{what}:\n{}",
                run.output
            );
            assert_eq!(run.verify_code(), Some("0 (ok)"), "{what}:\n{}", run.output);
            assert!(
                run.output
                    .contains(&format!("Server public key is {bits} bit")),
                "{what}:\n{}",
                run.output
            );
            assert_eq!(
                run.field("Peer signature type"),
                Some(*signature),
                "{what}:\n{}",
                run.output
            );
        }
    }
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_key_falls_back_with_a_warning_and_an_expired_certificate_is_served() {
    let _serial = SERIAL.lock().await;
    let Some(openssl) = require(&["openssl"], "apt-get install openssl").unwrap() else {
        return;
    };
    let ca = TestCa::new().unwrap();
    let dir = TempDir::new("tls-bad").unwrap();
    let ca_path = ca_file(&ca, &dir);
    let fallback = ca
        .issue(&["fallback.example.com"], KeyKind::EcdsaP256)
        .unwrap();
    let other = ca
        .issue(&["other.example.com"], KeyKind::EcdsaP256)
        .unwrap();
    let mismatched = Issued {
        key_pem: other.key_pem.clone(),
        ..ca.issue(&["mismatch.example.com"], KeyKind::EcdsaP256)
            .unwrap()
    };
    let expired = ca
        .issue_with(
            &["expired.example.com"],
            KeyKind::EcdsaP256,
            Validity::Expired,
        )
        .unwrap();
    let ids = [
        ("expired".to_owned(), &expired),
        ("fallback".to_owned(), &fallback),
        ("mismatch".to_owned(), &mismatched),
    ];
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = https_table(
        listen,
        backend.addr,
        "{default_certificate: fallback}",
        &ids,
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();

    let (status, body) = proxy.admin_get("/debug/warnings").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let warnings: Vec<String> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .expect("an array of warnings")
        .iter()
        .map(|w| w.as_str().expect("warnings are text").to_owned())
        .collect();
    let about = |id: &str, text: &str| {
        warnings
            .iter()
            .any(|w| w.contains(&format!("`{id}`")) && w.contains(text))
    };
    assert!(
        about("mismatch", "does not belong to the leaf certificate"),
        "{warnings:#?}"
    );
    assert!(about("expired", "expired on"), "{warnings:#?}");
    assert_eq!(warnings.len(), 2, "{warnings:#?}");

    let names = [
        Some("mismatch.example.com".to_owned()),
        Some("expired.example.com".to_owned()),
    ];
    let seen = s_clients(&openssl, listen, &ca_path, &names, &[]).await;
    assert_eq!(
        seen[0].leaf.as_ref(),
        Some(&fallback.der),
        "the refused certificate's host gets the default:\n{}",
        seen[0].output
    );
    assert_eq!(
        seen[1].leaf.as_ref(),
        Some(&expired.der),
        "{}",
        seen[1].output
    );
    assert_eq!(
        seen[1].verify_code(),
        Some("10 (certificate has expired)"),
        "{}",
        seen[1].output
    );
    drop(proxy);
}

/// Handshakes a second while a certificate is rotated.
const RATE: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_under_200_handshakes_a_second_is_served_within_a_second() {
    let _serial = SERIAL.lock().await;
    let ca = TestCa::new().unwrap();
    let mut certs: Vec<Issued> = (0..HOSTS)
        .map(|i| ca.issue(&[&host(i)], KeyKind::EcdsaP256).unwrap())
        .collect();
    let fallback = ca
        .issue(&["fallback.example.com"], KeyKind::EcdsaP256)
        .unwrap();
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let table = |certs: &[Issued]| {
        let mut ids: Vec<(String, &Issued)> = certs
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("host{i}"), c))
            .collect();
        ids.push(("fallback".into(), &fallback));
        https_table(
            listen,
            backend.addr,
            "{default_certificate: fallback}",
            &ids,
        )
    };
    let proxy = ProxyProcess::start(&table(&certs)).await.unwrap();

    // Every other handshake is for the rotated host, the rest for the others in turn.
    const ROTATED: usize = 7;
    let rotated = host(ROTATED);
    let names: Vec<String> = (0..HOSTS)
        .filter(|i| *i != ROTATED)
        .flat_map(|i| [rotated.clone(), host(i)])
        .collect();
    let connectors = vec![
        connector(ca.der(), &[&rustls::version::TLS13]).unwrap(),
        connector(ca.der(), &[&rustls::version::TLS12]).unwrap(),
    ];
    let paced = Paced::start(listen, connectors, names, RATE);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let old = certs[ROTATED].clone();
    let new = ca.issue(&[&rotated], KeyKind::EcdsaP256).unwrap();
    certs[ROTATED] = new.clone();
    let rewritten = SystemTime::now();
    proxy.rewrite(&table(&certs)).unwrap();
    let line = proxy
        .wait_for_log("table loaded file=", 1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    assert!(line.contains("warnings=0"), "{line}");
    let applied = log_time(&line).unwrap_or_else(|| panic!("no time in {line:?}"));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let ran_for = paced.elapsed();
    let shots = paced.stop().await;

    let expected: HashMap<String, &Issued> = (0..HOSTS).map(|i| (host(i), &certs[i])).collect();
    let wrong: Vec<&Shot> = shots
        .iter()
        .filter(|s| match &s.outcome {
            Err(_) => true,
            Ok(leaf) if s.name == rotated => *leaf != old.der && *leaf != new.der,
            Ok(leaf) => *leaf != expected[&s.name].der,
        })
        .collect();
    let is = |s: &Shot, cert: &Issued| s.name == rotated && s.outcome.as_ref() == Ok(&cert.der);
    let first_new = shots
        .iter()
        .filter(|s| is(s, &new))
        .min_by_key(|s| s.finished)
        .expect("the new certificate was never served");
    // Signed: the first handshake may finish in the microseconds before the
    // proxy writes its log line.
    let after_apply = match first_new.finished_at.duration_since(applied) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    };
    let noticed = applied
        .duration_since(rewritten)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3;
    let (old_served, new_served) = (
        shots.iter().filter(|s| is(s, &old)).count(),
        shots.iter().filter(|s| is(s, &new)).count(),
    );
    // A handshake begun after one saw the new certificate cannot see the old one:
    // each connection takes the table that is live when it is accepted.
    let stale = shots
        .iter()
        .filter(|s| is(s, &old) && s.started > first_new.finished)
        .count();
    let rate = shots.len() as f64 / ran_for.as_secs_f64();
    notice(&format!(
        "tls_hosts rotation: {} full handshakes in {ran_for:.1?} ({rate:.0}/s, TLS 1.3 and 1.2), \
         {} failed; the file rewrite was applied {noticed:.1} ms later; the new certificate was \
         first served {after_apply:.1} ms after the proxy applied it; {old_served} handshakes \
         with the old certificate, {new_served} with the new one, {stale} stale",
        shots.len(),
        wrong.len()
    ));
    assert!(
        wrong.is_empty(),
        "{} failed or wrong handshakes, e.g. {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        after_apply <= 1000.0,
        "new certificate served {after_apply} ms after the swap"
    );
    assert_eq!(stale, 0);
    assert!(old_served > 0 && new_served > 0);
    assert!(
        rate >= f64::from(RATE) * 0.9,
        "the clients kept only {rate:.0}/s of {RATE}/s"
    );
    drop(proxy);
}
