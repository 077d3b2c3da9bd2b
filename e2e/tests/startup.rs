//! The moments between the proxy reading its table file and watching it: a change
//! or a SIGHUP then must not be lost, and must not kill the process.
//!
//! A table of a few thousand routes takes the debug binary a few hundred
//! milliseconds to parse and compile. The tests wait until the proxy has read the
//! file (its `rchar` in /proc passes the file size), then act while it is still
//! compiling, before it reports ready.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::client::{self, fetch};
use sluice_e2e::{Backend, Options, ProxyProcess, eventually, free_addr};
use std::net::SocketAddr;
use std::time::Duration;

/// Routes that match nothing the tests ask for, to make parsing slow.
const FILLER_ROUTES: usize = 4000;

fn table(listen: SocketAddr, backend: &Backend, path: &str, filler: usize) -> String {
    let mut yaml = format!(
        "listeners:\n  - http:\n      name: web\n      bind: {listen}\n      routes:\n        \
         - {{name: marker, paths: [{{exact: {path}}}], action: {{forward: b}}}}\n"
    );
    for i in 0..filler {
        yaml.push_str(&format!(
            "        - {{name: filler-{i}, hosts: [h{i}.filler.test], paths: [{{prefix: /f{i}}}], action: {{forward: b}}}}\n"
        ));
    }
    yaml.push_str(&format!(
        "backends:\n  b: {{endpoints: [{{address: {}}}]}}\n",
        backend.addr
    ));
    yaml
}

/// Starts `run` on a slow-to-parse table and returns once the proxy has read the
/// file but is not ready yet.
async fn start_and_catch_it_compiling(yaml: &str) -> ProxyProcess {
    let proxy = ProxyProcess::spawn_run(yaml, Options::default()).unwrap();
    let size = yaml.len() as u64;
    eventually(
        "the proxy to read its table",
        Duration::from_secs(10),
        || async { (proxy.bytes_read().ok()? >= size).then_some(()) },
    )
    .await
    .unwrap();
    // The premise of these tests: still compiling, so not ready.
    let (status, _) = proxy
        .admin_get("/readyz")
        .await
        .unwrap_or((0, String::new()));
    assert_ne!(
        status, 200,
        "the proxy was ready already; the table is too small"
    );
    proxy
}

/// Proxy bug (fails until fixed): in main.rs `run`, the file watcher starts in a
/// task spawned after the first table is applied, and takes its "last seen"
/// contents from a second read; a change made in between makes no event it sees
/// and compares equal, so it is never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_made_while_starting_is_applied() {
    let b = Backend::start("b").await;
    let listen = free_addr().unwrap();
    let mut proxy = start_and_catch_it_compiling(&table(listen, &b, "/old", FILLER_ROUTES)).await;
    proxy.rewrite(&table(listen, &b, "/new", 0)).unwrap();
    proxy.wait_ready().await.unwrap();

    let client = client::client();
    let seen = eventually(
        "the change made during start-up",
        Duration::from_secs(2),
        || async {
            let r = fetch(&client, listen, None, "/new").await.ok()?;
            (r.status == StatusCode::OK).then_some(())
        },
    )
    .await;
    let old = fetch(&client, listen, None, "/old").await.unwrap().status;
    assert!(
        seen.is_ok(),
        "the file changed after the proxy read it, but it still serves the old table \
         (/old -> {old}); log:\n{}",
        proxy.logs()
    );
}

/// Proxy bug (fails until fixed): the SIGHUP handler is installed by the same late
/// task, so until then SIGHUP has its default action and kills the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_while_starting_does_not_kill_the_proxy() {
    let b = Backend::start("b").await;
    let listen = free_addr().unwrap();
    let mut proxy = start_and_catch_it_compiling(&table(listen, &b, "/ok", FILLER_ROUTES)).await;
    proxy.signal("HUP").unwrap();
    // Give a default-action SIGHUP time to land before judging.
    if let Ok(status) = proxy.wait_exit(Duration::from_millis(500)).await {
        panic!(
            "SIGHUP during start-up killed the proxy ({status}); log:\n{}",
            proxy.logs()
        );
    }
    proxy.wait_ready().await.unwrap();
    let r = fetch(&client::client(), listen, None, "/ok").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
}
