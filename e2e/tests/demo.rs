//! `sluice-proxy demo`: starts its own backends and a proxy, prints where to look.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::{ProxyProcess, eventually, free_addr};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_blue_and_green_and_exits_on_sigterm() {
    let (listen, admin) = (free_addr().unwrap(), free_addr().unwrap());
    let mut demo = ProxyProcess::demo(listen, admin).await.unwrap();

    let banner = eventually("the demo banner", Duration::from_secs(5), || async {
        let out = demo.stdout();
        out.contains("Ctrl-C to stop").then_some(out)
    })
    .await
    .unwrap();
    assert!(banner.contains(&format!("http://{listen}/")), "{banner}");
    assert!(
        banner.contains(&format!("http://{admin}/readyz")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("http://{admin}/debug/table")),
        "{banner}"
    );

    assert_eq!(demo.admin_get("/readyz").await.unwrap().0, 200);
    assert_eq!(demo.admin_get("/healthz").await.unwrap().0, 200);

    let client = client::client();
    let mut seen = BTreeSet::new();
    for _ in 0..8 {
        let r = fetch(&client, listen, None, "/").await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let text = r.text();
        let who = text.lines().next().unwrap_or_default().to_owned();
        assert!(
            who == "hello from blue" || who == "hello from green",
            "{text}"
        );
        seen.insert(who);
    }
    // Weighted 3:1, so eight requests reach both.
    assert_eq!(seen.len(), 2, "{seen:?}");
    let green = fetch(&client, listen, None, "/green").await.unwrap();
    assert!(
        green.text().starts_with("hello from green"),
        "{}",
        green.text()
    );
    let blue = fetch(&client, listen, Some("blue.localhost"), "/green")
        .await
        .unwrap();
    assert!(
        blue.text().starts_with("hello from blue"),
        "{}",
        blue.text()
    );

    // The content-switching examples the banner advertises.
    let old = fetch(&client, listen, None, "/old/page?x=1").await.unwrap();
    assert_eq!(old.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(old.headers["location"], "/green/page?x=1");
    let maintenance = fetch(&client, listen, None, "/maintenance").await.unwrap();
    assert_eq!(maintenance.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(maintenance.text(), "<h1>Back soon</h1>\n");
    let (status, route) = demo
        .admin_get("/debug/route?host=localhost&path=/old/x")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(route.contains("\"route\": \"old-path\""), "{route}");

    demo.signal("TERM").unwrap();
    let status = demo.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        demo.logs()
    );
}
