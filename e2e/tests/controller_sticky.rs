//! Sticky-session cookies set by Ingress annotations, against a real API server:
//! a client without a cookie is given one naming its endpoint, a valid cookie
//! keeps it there, a tampered one is balanced again and replaced; the keys come
//! from a `sluice.dev/session-key` Secret, whose changes reach traffic (rotation:
//! the new key signs, the old one is still honoured), and a Secret of another
//! type is never seen: a Warning Event on the Ingress, the proxy's keys apply. Needs a cluster (see `sluice_e2e::cluster`);
//! skipped without.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::client::{HttpClient, Reply, request, send};
use sluice_e2e::k8s::Namespace;
use sluice_e2e::sticky::{is_endpoint_id, set_cookie};
use sluice_e2e::util::TempDir;
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const GIVE_UP: Duration = Duration::from_secs(15);
const HOST: &str = "sticky.example";
const COOKIE: &str = "SRV";
const KEY_SECRET: &str = "session-keys";
const OLD_KEY: &str = "e2e-old-session-key-0123456789abcdef";
const NEW_KEY: &str = "e2e-new-session-key-0123456789abcdef";
/// The controller's own key file: in force only where no Secret names keys.
const FILE_KEY: &str = "e2e-file-session-key-0123456789abcdef";
const PINNED_REQUESTS: usize = 50;

/// GET `/` on `host`, with `Cookie: SRV=<value>` when given.
async fn get(http: &HttpClient, proxy: SocketAddr, host: &str, cookie: Option<&str>) -> Reply {
    let header = cookie.map(|v| format!("{COOKIE}={v}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("cookie", h.as_str())).collect();
    let req = request(http::Method::GET, proxy, Some(host), "/", &headers, "");
    send(http, req).await.unwrap()
}

/// Which backend answered, and the `SRV` cookie it was given (checked for shape
/// and for the default attributes of an inserted cookie).
fn answered(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let backend = reply.backend().expect("x-backend").to_owned();
    let set = set_cookie(reply, COOKIE).unwrap_or_else(|| panic!("no Set-Cookie: {reply:?}"));
    assert!(is_endpoint_id(&set.value), "cookie value {:?}", set.value);
    assert_eq!(
        set.normalized_attributes(),
        ["httponly", "path=/"],
        "{set:?}"
    );
    (backend, set.value)
}

/// The cookie value of each backend, from cookie-less requests (balanced round
/// robin, so both show within a few).
async fn cookie_ids(http: &HttpClient, proxy: SocketAddr) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for _ in 0..10 {
        let (backend, value) = answered(&get(http, proxy, HOST, None).await);
        if let Some(seen) = ids.insert(backend.clone(), value.clone()) {
            assert_eq!(seen, value, "{backend} was given two different cookies");
        }
    }
    assert_eq!(ids.len(), 2, "both backends answer: {ids:?}");
    ids
}

/// The value with its first character changed to another URL-safe base64 one.
fn tampered(value: &str) -> String {
    let first = if value.starts_with('A') { "B" } else { "A" };
    format!("{first}{}", &value[1..])
}

async fn setup(ns: &Namespace, a: &Backend, b: &Backend) {
    ns.create_service("web").await.unwrap();
    ns.create_slice("web-a", "web", Some(a.addr)).await.unwrap();
    ns.create_slice("web-b", "web", Some(b.addr)).await.unwrap();
    let keys = format!("{OLD_KEY}\n");
    ns.create_secret(KEY_SECRET, "sluice.dev/session-key", &[("keys", &keys)])
        .await
        .unwrap();
    let annotations = [
        ("sluice.dev/sticky-cookie", COOKIE),
        ("sluice.dev/sticky-cookie-key-secret", KEY_SECRET),
    ];
    ns.create_ingress_with("web", HOST, "web", &annotations)
        .await
        .unwrap();
}

#[tokio::test]
async fn sticky_cookies_pin_clients_and_follow_their_key_secret() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("sticky").await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    setup(&ns, &a, &b).await;
    let dir = TempDir::new("session-keys").unwrap();
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, format!("{FILE_KEY}\n")).unwrap();
    let mut options = ControllerOptions::new(&ns, "sticky");
    options.extra_args = vec!["--session-key-file".into(), key_file.display().to_string()];
    let mut controller = ControllerProcess::start(&cluster, options).await.unwrap();
    let (proxy, http) = (controller.http_addr(), client::client());
    eventually("the Ingress to be served", GIVE_UP, || async {
        let reply = get(&http, proxy, HOST, None).await;
        (reply.status == 200).then_some(())
    })
    .await
    .unwrap();

    // A client without a cookie is given one naming the endpoint that answered.
    let ids = cookie_ids(&http, proxy).await;
    assert_ne!(ids["a"], ids["b"], "each endpoint has its own id");

    // A valid cookie keeps the client on its endpoint.
    for (backend, value) in &ids {
        for i in 0..PINNED_REQUESTS {
            let (got, _) = answered(&get(&http, proxy, HOST, Some(value)).await);
            assert_eq!(&got, backend, "request {i} with {backend}'s cookie");
        }
    }

    // A tampered cookie names nobody: the request is balanced again (so both
    // endpoints answer such requests) and the answer carries a fresh cookie.
    let forged = tampered(&ids["a"]);
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (got, value) = answered(&get(&http, proxy, HOST, Some(&forged)).await);
        assert_eq!(value, ids[&got], "fresh cookie for {got}");
        seen.push(got);
    }
    assert!(
        seen.iter().any(|s| s == "a") && seen.iter().any(|s| s == "b"),
        "tampered cookies are balanced: {seen:?}"
    );

    // Key rotation through the Secret: the new key signs (new values), the old
    // one is still accepted, so clients keep their endpoint and get the new value.
    let rotated = format!("{NEW_KEY}\n{OLD_KEY}\n");
    ns.set_secret(KEY_SECRET, &[("keys", &rotated)])
        .await
        .unwrap();
    // Requests are sequential and the table is swapped atomically: once one
    // answer carries a new value, all later ones do.
    eventually("cookies signed with the new key", GIVE_UP, || async {
        let (got, value) = answered(&get(&http, proxy, HOST, None).await);
        (value != ids[&got]).then_some(())
    })
    .await
    .unwrap();
    let new_ids = cookie_ids(&http, proxy).await;
    for (backend, old_value) in &ids {
        assert_ne!(&new_ids[backend], old_value);
        for _ in 0..10 {
            let (got, value) = answered(&get(&http, proxy, HOST, Some(old_value)).await);
            assert_eq!(&got, backend, "an old-key cookie still pins");
            assert_eq!(value, new_ids[backend], "and is re-signed with the new key");
        }
    }
    controller.assert_running().unwrap();
}

#[tokio::test]
async fn an_unseen_key_secret_warns_and_the_cookie_still_works() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("sticky-missing").await.unwrap();
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    ns.create_service("web").await.unwrap();
    ns.create_slice("web-a", "web", Some(a.addr)).await.unwrap();
    ns.create_slice("web-b", "web", Some(b.addr)).await.unwrap();
    // It exists, but the controller never sees Secrets of other types.
    ns.create_secret("opaque", "Opaque", &[("keys", OLD_KEY)])
        .await
        .unwrap();
    let annotations = [
        ("sluice.dev/sticky-cookie", COOKIE),
        ("sluice.dev/sticky-cookie-key-secret", "opaque"),
    ];
    ns.create_ingress_with("web", HOST, "web", &annotations)
        .await
        .unwrap();
    let controller = ControllerProcess::start(&cluster, ControllerOptions::new(&ns, "sticky"))
        .await
        .unwrap();
    let (proxy, http) = (controller.http_addr(), client::client());

    let secret = format!("Secret {}/opaque not found", ns.name());
    eventually("a Warning Event naming the Secret", GIVE_UP, || async {
        let events = ns.events_for_ingress("web").await.ok()?;
        events.into_iter().find(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.note.as_deref().is_some_and(|n| n.contains(&secret))
        })
    })
    .await
    .unwrap();

    // The proxy's own keys apply: the cookie is set and honoured all the same.
    let ids = cookie_ids(&http, proxy).await;
    for (backend, value) in &ids {
        for _ in 0..10 {
            let (got, _) = answered(&get(&http, proxy, HOST, Some(value)).await);
            assert_eq!(&got, backend);
        }
    }
}

#[tokio::test]
async fn an_unreadable_session_key_file_stops_the_controller() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("sticky-keyfile").await.unwrap();
    let dir = TempDir::new("session-keys").unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too-short\n").unwrap();
    for (file, expected) in [
        (dir.path().join("missing"), "cannot read session key file"),
        (short, "a session key needs at least 16 bytes"),
    ] {
        let mut options = ControllerOptions::new(&ns, "sticky-keyfile");
        options.extra_args = vec!["--session-key-file".into(), file.display().to_string()];
        let mut controller = ControllerProcess::spawn(&cluster, options).unwrap();
        let error = controller.wait_ready().await.unwrap_err().to_string();
        assert!(error.contains("exited during start-up"), "{error}");
        assert!(error.contains(expected), "{error}");
        assert!(
            !error.contains("too-short"),
            "no key text in the log: {error}"
        );
    }
}
