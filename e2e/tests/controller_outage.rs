//! API server outage: while kube-apiserver is down for 30 s, traffic through the
//! controller does not fail once and it stays ready; when the server is back, the
//! watches resume and a new Ingress is served.
//!
//! Slow (about a minute) and disruptive: it stops the shared API server, so it is
//! alone in this test binary and holds the cluster lock exclusively (see
//! `sluice_e2e::cluster`). It needs `CLUSTER_RUN_DIR` (exported by
//! `shared/k8s/up`) to find the server; skipped without a cluster, fails in CI.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::apiserver::{ApiServer, RUN_DIR_ENV};
use sluice_e2e::cluster::{Access, in_ci, notice};
use sluice_e2e::process::raw_get;
use sluice_e2e::traffic::answer;
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(30);
/// The API server's own start-up, after the outage.
const RESTART_READY: Duration = Duration::from_secs(90);
/// The controller retries a failed watch at most 10 s apart (`WatchBackoff`).
const RESUME: Duration = Duration::from_secs(30);

fn run_dir() -> Option<PathBuf> {
    match std::env::var_os(RUN_DIR_ENV) {
        Some(dir) => Some(std::fs::canonicalize(dir).expect("CLUSTER_RUN_DIR")),
        None if in_ci() => panic!("CI=true: the outage test needs {RUN_DIR_ENV} (shared/k8s/up)"),
        None => {
            notice(&format!(
                "SKIPPED: the outage test needs {RUN_DIR_ENV} (shared/k8s/up)"
            ));
            None
        }
    }
}

#[tokio::test]
async fn traffic_survives_an_api_server_outage_and_watches_resume() {
    let Some(cluster) = Cluster::connect_with(Access::Exclusive).await else {
        return;
    };
    let Some(run_dir) = run_dir() else {
        return;
    };
    let ns = cluster.namespace("outage").await.unwrap();
    let a = Backend::start("a").await;
    ns.create_service("web").await.unwrap();
    ns.create_slice("web-a", "web", Some(a.addr)).await.unwrap();
    ns.create_ingress("before", "before.example", "web")
        .await
        .unwrap();
    let mut controller = ControllerProcess::start(&cluster, ControllerOptions::new(&ns, "outage"))
        .await
        .unwrap();
    let proxy = controller.http_addr();
    let http = client::client();
    eventually(
        "the Ingress to be served",
        Duration::from_secs(10),
        || async { (answer(&http, proxy, "before.example").await == "a").then_some(()) },
    )
    .await
    .unwrap();

    // A client sending requests back to back (2 ms apart) for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (stop, http) = (stop.clone(), http.clone());
        async move {
            let (mut sent, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let got = answer(&http, proxy, "before.example").await;
                sent += 1;
                if got != "a" {
                    failures.push(got);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (sent, failures)
        }
    });

    let mut server = ApiServer::of_run_dir(&run_dir).unwrap();
    server.stop().await.unwrap();
    let stopped = Instant::now();
    notice(&format!("kube-apiserver stopped for {OUTAGE:?}"));
    // Meanwhile it stays ready: the data plane does not depend on the API server.
    while stopped.elapsed() < OUTAGE {
        controller.assert_running().unwrap();
        let readyz = raw_get(controller.admin_addr(), "/readyz").await.unwrap();
        assert_eq!(readyz.0, 200, "/readyz during the outage: {readyz:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.start().unwrap();
    let ready = server
        .wait_ready(cluster.admin(), RESTART_READY)
        .await
        .unwrap();
    let back = Instant::now();
    notice(&format!(
        "kube-apiserver back after {:?} (its start-up: {ready:?})",
        stopped.elapsed()
    ));

    // Watches resume: an Ingress created now is served.
    ns.create_ingress("after", "after.example", "web")
        .await
        .unwrap();
    let created = Instant::now();
    eventually("the Ingress created after the outage", RESUME, || async {
        (answer(&http, proxy, "after.example").await == "a").then_some(())
    })
    .await
    .unwrap();
    notice(&format!(
        "new Ingress served {:?} after its creation ({:?} after the API server was ready)",
        created.elapsed(),
        back.elapsed()
    ));

    stop.store(true, Ordering::SeqCst);
    let (sent, failures) = load.await.unwrap();
    notice(&format!(
        "requests through the controller during the test: {sent}, failed: {}",
        failures.len()
    ));
    assert!(sent > 1000, "only {sent} requests were sent");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    controller.assert_running().unwrap();
}
