//! A bad Ingress degrades only itself: valid Ingresses next to it keep serving,
//! and it gets Warning Events (events.k8s.io/v1) that name the problem. Needs a
//! cluster (see `sluice_e2e::cluster`); skipped without.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::events::v1::Event;
use sluice_e2e::k8s::Namespace;
use sluice_e2e::traffic::answer;
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const GIVE_UP: Duration = Duration::from_secs(15);

/// Waits for a Warning Event on Ingress `ingress` whose note contains `needle`.
async fn warning(ns: &Namespace, ingress: &str, needle: &str) -> Event {
    let what = format!("a Warning Event on Ingress {ingress} mentioning {needle:?}");
    eventually(&what, GIVE_UP, || async {
        let events = ns.events_for_ingress(ingress).await.ok()?;
        events.into_iter().find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.note.as_deref().is_some_and(|n| n.contains(needle))
        })
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn invalid_ingresses_get_warning_events_and_spare_the_valid_ones() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("warnings").await.unwrap();
    let a = Backend::start("a").await;
    ns.create_service("web").await.unwrap();
    ns.create_slice("web-a", "web", Some(a.addr)).await.unwrap();
    ns.create_ingress("good", "good.example", "web")
        .await
        .unwrap();
    let controller = ControllerProcess::start(&cluster, ControllerOptions::new(&ns, "warnings"))
        .await
        .unwrap();
    let proxy = controller.http_addr();
    let http = client::client();
    eventually("the valid Ingress to be served", GIVE_UP, || async {
        (answer(&http, proxy, "good.example").await == "a").then_some(())
    })
    .await
    .unwrap();

    // The valid Ingress is probed without pause while the bad ones arrive.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn({
        let (stop, http) = (stop.clone(), http.clone());
        async move {
            let (mut sent, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let got = answer(&http, proxy, "good.example").await;
                sent += 1;
                if got != "a" {
                    failures.push(got);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (sent, failures)
        }
    });

    let bad_annotations = [
        ("sluice.dev/timeout-connect", "soon"),
        ("sluice.dev/frobnicate", "yes"),
    ];
    ns.create_ingress_with("bad-annotation", "bad.example", "web", &bad_annotations)
        .await
        .unwrap();
    ns.create_ingress("missing-service", "missing.example", "nope")
        .await
        .unwrap();

    let invalid = warning(&ns, "bad-annotation", "sluice.dev/timeout-connect").await;
    assert_eq!(
        invalid.reason.as_deref(),
        Some("InvalidAnnotation"),
        "{invalid:?}"
    );
    assert!(
        invalid.note.as_deref().unwrap().contains("\"soon\""),
        "{invalid:?}"
    );
    let unknown = warning(&ns, "bad-annotation", "sluice.dev/frobnicate").await;
    assert!(
        unknown
            .note
            .as_deref()
            .unwrap()
            .contains("unknown annotation"),
        "{unknown:?}"
    );
    let missing = warning(
        &ns,
        "missing-service",
        &format!("Service {}/nope", ns.name()),
    )
    .await;
    assert_eq!(
        missing.reason.as_deref(),
        Some("BackendUnavailable"),
        "{missing:?}"
    );
    for event in [&invalid, &unknown, &missing] {
        assert_eq!(
            event.reporting_controller.as_deref(),
            Some("sluice-controller"),
            "{event:?}"
        );
        assert_eq!(
            event.reporting_instance.as_deref(),
            Some("warnings"),
            "{event:?}"
        );
    }

    // Only the bad parts are dropped: the annotated Ingress still routes (its
    // invalid values are ignored), the one without a Service answers 503.
    assert_eq!(answer(&http, proxy, "bad.example").await, "a");
    assert_eq!(answer(&http, proxy, "missing.example").await, "503");
    stop.store(true, Ordering::SeqCst);
    let (sent, failures) = probe.await.unwrap();
    assert!(sent > 10, "only {sent} probes of the valid Ingress");
    assert!(
        failures.is_empty(),
        "the valid Ingress failed {} of {sent} times: {failures:?}",
        failures.len()
    );
    let on_good = ns.events_for_ingress("good").await.unwrap();
    assert!(
        on_good.is_empty(),
        "events on the valid Ingress: {on_good:?}"
    );
}
