//! The proxy's default TLS settings judged by the scanners operators use:
//! sslyze against Mozilla's "intermediate" configuration, and testssl.sh with no
//! finding of severity MEDIUM or above. The listener has only a certificate for
//! `localhost` (ECDSA P-256, 90 days, from a test CA given to both scanners as
//! trusted) and every other TLS setting at its default.
//!
//! `.ci/run` installs both (testssl.sh from Debian, sslyze pinned in a venv);
//! without them the tests are skipped with a notice, except under `CI=true`.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use sluice_e2e::cluster::notice;
use sluice_e2e::tls::{Issued, KeyKind, TestCa, https_table_with_route};
use sluice_e2e::tools::{require, run_bounded};
use sluice_e2e::util::TempDir;
use sluice_e2e::{Backend, ProxyProcess, free_addr};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The scans take both cores; one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A proxy with the default TLS settings and a `localhost` certificate, and
/// the test CA's PEM file.
struct Scanned {
    proxy: ProxyProcess,
    listen: SocketAddr,
    ca_file: PathBuf,
    dir: TempDir,
    _backend: Backend,
}

async fn scanned() -> Scanned {
    let ca = TestCa::new().unwrap();
    let cert: Issued = ca.issue(&["localhost"], KeyKind::EcdsaP256).unwrap();
    let backend = Backend::start("app").await;
    let listen = free_addr().unwrap();
    // testssl.sh also judges the HTTP response at "/" (MEDIUM when it carries
    // none of X-Frame-Options, X-Content-Type-Options, CSP, Cache-Control, ...).
    // That is the application's answer, and the test backend's is bare; the
    // route adds one header, as an application or an operator's route would, so
    // the scan judges the proxy's TLS. TLS settings stay at their defaults.
    let route = "{name: all, action: {forward: app}, \
                 response_headers: {set: {X-Content-Type-Options: nosniff}}}";
    let certs = [("localhost".to_owned(), &cert)];
    let yaml = https_table_with_route(listen, backend.addr, "{}", route, &certs);
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let (_, warnings) = proxy.admin_get("/debug/warnings").await.unwrap();
    assert_eq!(warnings.trim(), "[]", "{warnings}");
    let dir = TempDir::new("tls-scan").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    Scanned {
        proxy,
        listen,
        ca_file,
        dir,
        _backend: backend,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_the_defaults_compliant_with_mozilla_intermediate() {
    let _serial = SERIAL.lock().await;
    let install = "pip install sslyze==6.3.1 (into a venv; see .ci/run)";
    let Some(sslyze) = require(&["sslyze"], install).unwrap() else {
        return;
    };
    let s = scanned().await;
    let json = s.dir.path().join("sslyze.json");
    let mut command = Command::new(&sslyze);
    command
        .arg("--mozilla_config=intermediate")
        .arg(format!("--certinfo_ca_file={}", s.ca_file.display()))
        .arg(format!("--json_out={}", json.display()))
        // `host:port{ip}`: the name for SNI and the certificate, the address to
        // connect to (localhost may resolve to ::1 first).
        .arg(format!("localhost:{}{{127.0.0.1}}", s.listen.port()));
    let started = Instant::now();
    let ran = run_bounded(command, Duration::from_secs(300))
        .await
        .unwrap();
    let took = started.elapsed();
    let out = &ran.stdout;
    // sslyze exits 0 when it could not connect at all, so the report is read too.
    let compliance = out
        .split_once("COMPLIANCE AGAINST TLS CONFIGURATION")
        .map_or("", |(_, rest)| rest.trim_start_matches([' ', '-', '\n']));
    notice(&format!("sslyze ({took:.0?}, {}):{compliance}", ran.status));
    assert!(ran.status.success(), "{out}\n{}", ran.stderr);
    assert!(compliance.contains("OK - Compliant."), "{out}");

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let server = &report["server_scan_results"][0];
    assert_eq!(server["scan_status"], "COMPLETED", "{server:#}");
    let scan = &server["scan_result"];
    let deployment = &scan["certificate_info"]["result"]["certificate_deployments"][0];
    assert!(
        deployment["verified_certificate_chain"].is_array(),
        "the chain was not verified against the test CA: {deployment:#}"
    );
    // Trusted through the supplied CA file (validation includes the host name),
    // and only through it: no public store knows the test CA.
    let by_store = |name: &str| {
        deployment["path_validation_results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["trust_store"]["name"] == name)
            .map(|r| r["verified_certificate_chain"].is_array())
    };
    assert_eq!(by_store("Supplied CA file"), Some(true), "{deployment:#}");
    assert_eq!(by_store("Mozilla"), Some(false), "{deployment:#}");
    for (version, offered) in [
        ("ssl_2_0", false),
        ("ssl_3_0", false),
        ("tls_1_0", false),
        ("tls_1_1", false),
        ("tls_1_2", true),
        ("tls_1_3", true),
    ] {
        let field = format!("{version}_cipher_suites");
        assert_eq!(
            scan[&field]["result"]["is_tls_version_supported"], offered,
            "{field}"
        );
    }
    drop(s.proxy);
}

/// testssl.sh severities that fail the test: MEDIUM and above, and the scan's
/// own trouble (WARN: a check could not run; FATAL: the scan stopped).
const FAILING: &[&str] = &["MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL"];

/// Findings about the scanning machine, not the server. `engine_problem`: the
/// local openssl has no GOST engine, so testssl.sh cannot offer GOST ciphers
/// (which the server does not have either).
const ABOUT_THE_SCANNER: &[&str] = &["engine_problem"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_of_medium_severity_or_above() {
    let _serial = SERIAL.lock().await;
    let Some(testssl) = require(&["testssl", "testssl.sh"], "apt-get install testssl.sh").unwrap()
    else {
        return;
    };
    let s = scanned().await;
    // A WARN is the scan's own trouble (a check that could not connect, seen
    // under CI load), not a finding about the server: such a scan is run once
    // more before it counts. MEDIUM and above are never retried.
    let mut attempt = 0;
    let (ran, findings, took, bad) = loop {
        attempt += 1;
        let (ran, findings, took) = testssl_scan(&testssl, &s).await;
        let bad = failing(&findings);
        let only_scanner_trouble = !bad.is_empty() && bad.iter().all(|b| b.starts_with("WARN "));
        if only_scanner_trouble && attempt < 2 {
            notice(&format!(
                "testssl.sh attempt {attempt} had scanner warnings, running it again: {bad:?}"
            ));
            continue;
        }
        break (ran, findings, took, bad);
    };
    let field = |f: &Value, name: &str| f[name].as_str().unwrap_or_default().to_owned();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for f in &findings {
        *counts.entry(field(f, "severity")).or_default() += 1;
    }
    let says = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| field(f, "finding"))
            .unwrap_or_default()
    };
    let low: Vec<String> = findings
        .iter()
        .filter(|f| f["severity"] == "LOW" || f["severity"] == "WARN")
        .map(|f| {
            format!(
                "{} {}: {}",
                field(f, "severity"),
                field(f, "id"),
                field(f, "finding")
            )
        })
        .collect();
    notice(&format!(
        "testssl.sh ({took:.0?}, {}): {} findings by severity {counts:?}; TLS1_2: {:?}, TLS1_3: \
         {:?}, cipher_order: {:?}, PFS: {:?}; LOW and WARN: {low:?}; failing: {bad:#?}",
        ran.status,
        findings.len(),
        says("TLS1_2"),
        says("TLS1_3"),
        says("cipher_order"),
        says("PFS"),
    ));
    // The scan reached the server: protocols were negotiated and judged.
    assert_eq!(says("TLS1_3"), "offered with final", "{}", ran.stdout);
    assert!(says("TLS1_2").starts_with("offered"), "{}", ran.stdout);
    assert!(says("SSLv3").starts_with("not offered"), "{}", ran.stdout);
    assert!(bad.is_empty(), "{}", ran.stdout);
    drop(s.proxy);
}

/// One testssl.sh run against the proxy of `s`: its output, every finding of
/// its JSON report, and how long it took.
async fn testssl_scan(
    testssl: &std::path::Path,
    s: &Scanned,
) -> (sluice_e2e::tools::Ran, Vec<Value>, Duration) {
    let json = s.dir.path().join("testssl.json");
    let _ = std::fs::remove_file(&json);
    let mut command = Command::new(testssl);
    command
        .args(["--quiet", "--color", "0", "--warnings", "off"])
        // The name is for SNI and the certificate; nothing is looked up in DNS.
        .args(["--ip", "127.0.0.1", "--nodns", "none"])
        .args(["--connect-timeout", "10", "--openssl-timeout", "10"])
        .arg("--add-ca")
        .arg(&s.ca_file)
        // Every finding, so the test can tell a scan that ran from one that
        // did not; the severity filter is applied by `failing`.
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("localhost:{}", s.listen.port()));
    let started = Instant::now();
    let ran = run_bounded(command, Duration::from_secs(600))
        .await
        .unwrap();
    let took = started.elapsed();
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}\n{}", ran.stdout, ran.stderr));
    let findings = report.as_array().expect("a flat list of findings").clone();
    (ran, findings, took)
}

/// The findings that fail the test, as `SEVERITY id: finding`.
fn failing(findings: &[Value]) -> Vec<String> {
    let field = |f: &Value, name: &str| f[name].as_str().unwrap_or_default().to_owned();
    findings
        .iter()
        .filter(|f| {
            FAILING.contains(&field(f, "severity").as_str())
                && !ABOUT_THE_SCANNER.contains(&field(f, "id").as_str())
        })
        .map(|f| {
            format!(
                "{} {}: {}",
                field(f, "severity"),
                field(f, "id"),
                field(f, "finding")
            )
        })
        .collect()
}
