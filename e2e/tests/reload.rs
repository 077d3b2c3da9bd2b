//! Hot reload: file rewrites under load lose no request and show within a second;
//! SIGHUP reloads a change that produced no file event.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::StatusCode;
use sluice_e2e::client::{self, HttpClient, fetch};
use sluice_e2e::{Backend, Layout, Options, ProxyProcess, eventually, free_addr};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REWRITES: usize = 20;
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

/// Version `v` of the table:
/// - `/stable` always goes to `a` (must never be disturbed by a reload);
/// - `/moving` goes to backend `m`, whose endpoint cycles a → b → c (retargeted);
/// - `/flip` alternates its action between backends `a` and `b`;
/// - exact `/added/{v}` exists only in version `v` (added, then removed).
fn table(listen: SocketAddr, v: usize, backends: &[Backend; 3]) -> String {
    let [a, b, c] = backends;
    let moving = backends[v % 3].addr;
    let flip = if v.is_multiple_of(2) { "a" } else { "b" };
    format!(
        r#"# version {v}
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: stable, paths: [{{prefix: /stable}}], action: {{forward: a}}}}
        - {{name: moving, paths: [{{prefix: /moving}}], action: {{forward: m}}}}
        - {{name: flip, paths: [{{prefix: /flip}}], action: {{forward: {flip}}}}}
        - {{name: added-{v}, paths: [{{exact: /added/{v}}}], action: {{forward: b}}}}
backends:
  a: {{endpoints: [{{address: {}}}]}}
  b: {{endpoints: [{{address: {}}}]}}
  c: {{endpoints: [{{address: {}}}]}}
  m: {{endpoints: [{{address: {moving}}}]}}
"#,
        a.addr, b.addr, c.addr
    )
}

fn expected_moving(v: usize) -> &'static str {
    ["a", "b", "c"][v % 3]
}

/// Requests that are valid in every version, and what any version may answer.
/// Anything else (5xx, connection errors, wrong backend) is a failure.
async fn load_step(
    client: &HttpClient,
    listen: SocketAddr,
    version: usize,
    i: usize,
) -> Result<(), String> {
    let path = match i % 5 {
        0 => "/stable".to_owned(),
        1 => "/moving/x".to_owned(),
        2 => "/flip".to_owned(),
        // The current or previous version's route: 200 or 404 while it changes.
        3 => format!("/added/{}", version.saturating_sub(i % 2)),
        _ => "/nothing".to_owned(),
    };
    let reply = fetch(client, listen, None, &path)
        .await
        .map_err(|e| format!("{path}: {e:#}"))?;
    let backend = reply.backend().unwrap_or("-");
    let ok = match (i % 5, reply.status) {
        (0, StatusCode::OK) => backend == "a",
        (1, StatusCode::OK) => ["a", "b", "c"].contains(&backend),
        (2, StatusCode::OK) => ["a", "b"].contains(&backend),
        (3, StatusCode::OK) => backend == "b",
        (3 | 4, StatusCode::NOT_FOUND) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path}: {} from {backend}: {}",
            reply.status,
            reply.text()
        ))
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// One sequential keep-alive client, and `concurrent` more tasks sharing a pool.
    fn start(listen: SocketAddr, version: Arc<AtomicUsize>, concurrent: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let shared = client::client();
        let clients =
            std::iter::once(client::client()).chain(std::iter::repeat_n(shared, concurrent));
        let tasks = clients
            .enumerate()
            .map(|(task, client)| {
                let (stop, done, failures, version) = (
                    stop.clone(),
                    done.clone(),
                    failures.clone(),
                    version.clone(),
                );
                tokio::spawn(async move {
                    let mut i = task;
                    while !stop.load(Ordering::Relaxed) {
                        let v = version.load(Ordering::SeqCst);
                        if let Err(e) = load_step(&client, listen, v, i).await {
                            failures.lock().unwrap().push(e);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        Self {
            stop,
            done,
            failures,
            tasks,
        }
    }

    /// Stops the clients; returns (requests done, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.done.load(Ordering::Relaxed), failures)
    }
}

async fn start_backends() -> [Backend; 3] {
    [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_under_load_fail_no_request_and_show_within_a_second() {
    let backends = start_backends().await;
    let listen = free_addr().unwrap();
    let proxy = ProxyProcess::start(&table(listen, 0, &backends))
        .await
        .unwrap();
    let loaded_at_start = proxy.log_lines("table loaded").len();
    let version = Arc::new(AtomicUsize::new(0));
    let load = Load::start(listen, version.clone(), 3);
    let probe = client::client();

    let mut latencies = Vec::new();
    for v in 1..=REWRITES {
        let before = load.done.load(Ordering::Relaxed);
        proxy.rewrite(&table(listen, v, &backends)).unwrap();
        let written = Instant::now();
        version.store(v, Ordering::SeqCst);
        eventually(
            &format!("version {v} to be live"),
            Duration::from_secs(5),
            || async {
                let added = fetch(&probe, listen, None, &format!("/added/{v}"))
                    .await
                    .ok()?;
                let removed = fetch(&probe, listen, None, &format!("/added/{}", v - 1))
                    .await
                    .ok()?;
                let moving = fetch(&probe, listen, None, "/moving").await.ok()?;
                let live = added.status == StatusCode::OK
                    && removed.status == StatusCode::NOT_FOUND
                    && moving.backend() == Some(expected_moving(v));
                live.then_some(())
            },
        )
        .await
        .unwrap();
        latencies.push(written.elapsed());
        // Keep the load honest: requests must be flowing across every reload.
        eventually("load to make progress", Duration::from_secs(5), || async {
            (load.done.load(Ordering::Relaxed) > before + 20).then_some(())
        })
        .await
        .unwrap();
    }

    let (requests, failures) = load.finish().await;
    let max = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{REWRITES} reloads under load: {requests} requests, {} failures, visibility max {max:?}, all {latencies:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests during reloads, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        max < VISIBLE_WITHIN,
        "a reload took {max:?} to show: {latencies:?}"
    );
    // One load per rewrite: none was skipped or applied twice.
    let loaded = proxy.log_lines("table loaded").len() - loaded_at_start;
    assert_eq!(loaded, REWRITES, "{}", proxy.logs());
    let (_, live) = proxy.admin_get("/debug/table").await.unwrap();
    assert!(live.contains(&format!("added-{REWRITES}")), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_change_that_made_no_file_event() {
    let backends = start_backends().await;
    let listen = free_addr().unwrap();
    // The watched directory holds only a symlink; the file it points to is in
    // another directory, so rewriting it produces no event the proxy sees.
    let options = Options {
        layout: Layout::Unwatched,
        ..Options::default()
    };
    let proxy = ProxyProcess::start_with(&table(listen, 0, &backends), options)
        .await
        .unwrap();
    let client = client::client();
    let moving = |client: HttpClient| async move {
        let r = fetch(&client, listen, None, "/moving").await.unwrap();
        r.backend().map(str::to_owned)
    };
    assert_eq!(moving(client.clone()).await.as_deref(), Some("a"));

    proxy.rewrite(&table(listen, 1, &backends)).unwrap();
    // The premise: without SIGHUP nothing changes. Watch for a while (the proxy
    // reacts to file events within ~50 ms), bounded.
    let quiet_until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < quiet_until {
        assert_eq!(
            moving(client.clone()).await.as_deref(),
            Some("a"),
            "reloaded without SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    proxy.signal("HUP").unwrap();
    let sent = Instant::now();
    eventually("SIGHUP reload", VISIBLE_WITHIN, || async {
        (moving(client.clone()).await.as_deref() == Some("b")).then_some(())
    })
    .await
    .unwrap();
    eprintln!("SIGHUP reload visible after {:?}", sent.elapsed());
    proxy
        .wait_for_log("SIGHUP: reloading", 1, Duration::from_secs(1))
        .await
        .unwrap();
}

fn listeners_table(listeners: &[(&str, SocketAddr)], backend: &Backend) -> String {
    let mut yaml = String::from("listeners:\n");
    for (name, bind) in listeners {
        yaml.push_str(&format!(
            "  - http: {{name: {name}, bind: {bind}, routes: [{{name: all, action: {{forward: b}}}}]}}\n"
        ));
    }
    yaml.push_str(&format!(
        "backends:\n  b: {{endpoints: [{{address: {}}}]}}\n",
        backend.addr
    ));
    yaml
}

async fn serves(addr: SocketAddr) -> bool {
    // A fresh client each time: a pooled connection would outlive a closed listener.
    fetch(&client::client(), addr, None, "/")
        .await
        .is_ok_and(|r| r.backend() == Some("b"))
}

async fn refuses(addr: SocketAddr) -> bool {
    matches!(tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_opens_and_closes_listeners() {
    let b = Backend::start("b").await;
    let (first, second) = (free_addr().unwrap(), free_addr().unwrap());
    let proxy = ProxyProcess::start(&listeners_table(&[("first", first)], &b))
        .await
        .unwrap();
    assert!(serves(first).await);
    assert!(refuses(second).await);

    // Added, removed, and added again on the same address (the old socket must
    // be gone or reusable by then).
    for round in 0..2 {
        proxy
            .rewrite(&listeners_table(
                &[("first", first), ("second", second)],
                &b,
            ))
            .unwrap();
        eventually(
            &format!("round {round}: second listener to serve"),
            VISIBLE_WITHIN,
            || async { serves(second).await.then_some(()) },
        )
        .await
        .unwrap();
        proxy
            .rewrite(&listeners_table(&[("first", first)], &b))
            .unwrap();
        eventually(
            &format!("round {round}: second listener to close"),
            VISIBLE_WITHIN,
            || async { refuses(second).await.then_some(()) },
        )
        .await
        .unwrap();
        assert!(
            serves(first).await,
            "round {round}: the kept listener stopped"
        );
    }
    assert!(
        proxy.log_lines("cannot bind").is_empty(),
        "{}",
        proxy.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_warm_backend_connections() {
    let backends = start_backends().await;
    let listen = free_addr().unwrap();
    let proxy = ProxyProcess::start(&table(listen, 0, &backends))
        .await
        .unwrap();
    let client = client::client();
    for v in 1..=5 {
        for _ in 0..20 {
            let r = fetch(&client, listen, None, "/stable").await.unwrap();
            assert_eq!(r.backend(), Some("a"));
        }
        proxy.rewrite(&table(listen, v, &backends)).unwrap();
        eventually(&format!("version {v}"), VISIBLE_WITHIN, || async {
            let r = fetch(&client, listen, None, &format!("/added/{v}"))
                .await
                .ok()?;
            (r.status == StatusCode::OK).then_some(())
        })
        .await
        .unwrap();
    }
    let a = &backends[0];
    eprintln!(
        "{} requests to `a` across 5 reloads on {} connection(s)",
        a.requests(),
        a.connections()
    );
    assert_eq!(a.requests(), 100);
    assert!(
        a.connections() <= 2,
        "reloads dropped the warm pool: {} connections for 100 sequential requests",
        a.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_style_symlink_swaps_are_picked_up() {
    let backends = start_backends().await;
    let listen = free_addr().unwrap();
    let options = Options {
        layout: Layout::ConfigMap,
        ..Options::default()
    };
    let proxy = ProxyProcess::start_with(&table(listen, 0, &backends), options)
        .await
        .unwrap();
    let client = client::client();
    for v in 1..=4 {
        proxy.rewrite(&table(listen, v, &backends)).unwrap();
        eventually(
            &format!("ConfigMap version {v}"),
            VISIBLE_WITHIN,
            || async {
                let r = fetch(&client, listen, None, "/moving").await.ok()?;
                (r.backend() == Some(expected_moving(v))).then_some(())
            },
        )
        .await
        .unwrap();
    }
    assert!(proxy.log_lines("ERROR").is_empty(), "{}", proxy.logs());
}
