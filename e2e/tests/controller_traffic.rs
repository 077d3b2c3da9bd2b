//! The controller against a real API server: Ingress and EndpointSlice changes
//! reach traffic within a second, and the Ingress status shows the published
//! Service's address. Needs a cluster (see `sluice_e2e::cluster`); skipped without.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::cluster::notice;
use sluice_e2e::traffic::{Until, answer, percentile, time_until};
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(1);
/// Waits run past the bound so a slow change fails with its figure.
const GIVE_UP: Duration = Duration::from_secs(10);

#[tokio::test]
async fn ingress_and_endpoint_changes_reach_traffic_within_a_second() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("traffic").await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    ns.create_service("web").await.unwrap();
    ns.create_slice("web-a", "web", Some(a.addr)).await.unwrap();
    let lb_ip = ns.create_cluster_ip_service("sluice-lb").await.unwrap();
    let options = ControllerOptions::new(&ns, "traffic").publish_service(ns.name(), "sluice-lb");
    let controller = ControllerProcess::start(&cluster, options).await.unwrap();
    let proxy = controller.http_addr();
    let http = client::client();
    let host = "web.example";
    assert_eq!(answer(&http, proxy, host).await, "404", "no Ingress yet");

    // Ingress created → served by a.
    ns.create_ingress("web", host, "web").await.unwrap();
    let since = Instant::now();
    let until = Until {
        target: "a",
        streak: 1,
        allowed: &["404", "503"],
        timeout: GIVE_UP,
    };
    let created = time_until(&http, proxy, host, since, until).await.unwrap();
    notice(&format!(
        "Ingress created -> first 200 from its backend: {created:?}"
    ));
    assert!(created < WITHIN, "Ingress served after {created:?}");

    // A second endpoint joins: b gets traffic too (round robin).
    ns.create_slice("web-b", "web", Some(b.addr)).await.unwrap();
    let since = Instant::now();
    let until = Until {
        target: "b",
        streak: 1,
        allowed: &["a"],
        timeout: GIVE_UP,
    };
    let added = time_until(&http, proxy, host, since, until).await.unwrap();
    notice(&format!("endpoint added -> first request to it: {added:?}"));
    assert!(added < WITHIN, "new endpoint used after {added:?}");

    // The first endpoint leaves: only b from then on (10 in a row rules a out).
    ns.set_slice("web-a", None).await.unwrap();
    let since = Instant::now();
    let until = Until {
        target: "b",
        streak: 10,
        allowed: &["a"],
        timeout: GIVE_UP,
    };
    let removed = time_until(&http, proxy, host, since, until).await.unwrap();
    notice(&format!("endpoint removed -> traffic off it: {removed:?}"));
    assert!(
        removed < WITHIN,
        "removed endpoint still used until {removed:?}"
    );

    // Status: the published Service's cluster IP, written by the controller.
    let addresses = eventually("the Ingress status", GIVE_UP, || async {
        let got = ns.ingress_addresses("web").await.ok()?;
        (!got.is_empty()).then_some(got)
    })
    .await
    .unwrap();
    assert_eq!(addresses, [lb_ip], "status.loadBalancer.ingress");
    let managers = ns.ingress_managers("web").await.unwrap();
    assert!(
        managers.contains(&controller.field_manager()),
        "managers: {managers:?}"
    );

    // Ingress deleted → 404.
    ns.delete_ingress("web").await.unwrap();
    let since = Instant::now();
    let until = Until {
        target: "404",
        streak: 1,
        allowed: &["b"],
        timeout: GIVE_UP,
    };
    let deleted = time_until(&http, proxy, host, since, until).await.unwrap();
    notice(&format!("Ingress deleted -> 404: {deleted:?}"));
    assert!(deleted < WITHIN, "deleted Ingress served until {deleted:?}");
}

const UPDATES: usize = 20;

#[tokio::test]
async fn endpoint_slice_updates_are_followed_quickly() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("latency").await.unwrap();
    let backends = [Backend::start("a").await, Backend::start("b").await];
    ns.create_service("web").await.unwrap();
    ns.create_slice("web", "web", Some(backends[0].addr))
        .await
        .unwrap();
    ns.create_ingress("web", "web.example", "web")
        .await
        .unwrap();
    let controller = ControllerProcess::start(&cluster, ControllerOptions::new(&ns, "latency"))
        .await
        .unwrap();
    let (proxy, http) = (controller.http_addr(), client::client());
    eventually("the Ingress to be served", GIVE_UP, || async {
        (answer(&http, proxy, "web.example").await == "a").then_some(())
    })
    .await
    .unwrap();

    // The slice's one endpoint alternates b, a, b, ...: the first answer from the
    // new backend is the moment traffic followed.
    let mut samples = Vec::with_capacity(UPDATES);
    for i in 1..=UPDATES {
        let (to, from) = (&backends[i % 2], &backends[(i + 1) % 2]);
        ns.set_slice("web", Some(to.addr)).await.unwrap();
        let since = Instant::now();
        let until = Until {
            target: to.name(),
            streak: 1,
            allowed: &[from.name()],
            timeout: GIVE_UP,
        };
        samples.push(
            time_until(&http, proxy, "web.example", since, until)
                .await
                .unwrap(),
        );
    }
    let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    notice(&format!(
        "EndpointSlice update -> traffic follows, {UPDATES} updates: p50 {p50:?}, p99 {p99:?} \
         (target p99 < 250ms); all: {samples:?}"
    ));
    assert!(p99 < WITHIN, "p99 {p99:?}: {samples:?}");
}
