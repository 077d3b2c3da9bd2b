//! The sticky cookie itself against the real binary: tampered, foreign and
//! malformed values, `indirect`, the inserted cookie's attributes, prefix and
//! rewrite modes, and expiry by `max_idle`/`max_life`. Pinning under failures and
//! reloads is in `sticky.rs`.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::balancing::start_backends;
use sluice_e2e::client;
use sluice_e2e::sticky::*;
use sluice_e2e::{ProxyProcess, free_addr};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Bad cookies

/// Flips the character at `at` to another URL-safe base64 character.
fn flip(value: &str, at: usize) -> String {
    value
        .char_indices()
        .map(|(i, ch)| match (i == at, ch) {
            (false, ch) => ch,
            (true, 'A') => 'B',
            (true, _) => 'A',
        })
        .collect()
}

/// No cookie is ever a proxy error: one character flipped (first, middle, last),
/// truncated, one character too many, empty, not base64, 4 KiB long, or valid but
/// for another backend of the same proxy (same endpoint addresses) all get a 200,
/// normal balancing and a fresh valid cookie, and count as `rejected`. Also the
/// admin's shape: `sticky` and `cookie_id` are null on a backend without
/// stickiness, ids are per backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_cookie_is_never_an_error_and_gets_a_fresh_one() {
    let backends = start_backends(["a", "b", "c"]).await;
    let names = named(&backends);
    let eps = endpoints_of(&backends);
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            ("app", backend_yaml("app", &eps, &[SRV])),
            ("other", backend_yaml("other", &eps, &[SRV])),
            ("plain", backend_yaml("plain", &eps, &[])),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();

    // Admin shape.
    let app = backend_status(&proxy, "app").await;
    assert_eq!(app["sticky"]["cookie"], "SRV", "{app}");
    assert_eq!(app["sticky"]["mode"], "insert", "{app}");
    assert_eq!(counters(&proxy, "app").await, Counters::default());
    let plain = backend_status(&proxy, "plain").await;
    assert!(plain["sticky"].is_null(), "{plain}");
    for e in plain["endpoints"].as_array().unwrap() {
        assert!(e["cookie_id"].is_null(), "{plain}");
    }
    let ids = ids_by_name(&proxy, "app", &names).await;
    let other_ids = ids_by_name(&proxy, "other", &names).await;
    for (name, id) in &ids {
        assert!(is_endpoint_id(id), "{ids:?}");
        assert!(is_endpoint_id(&other_ids[name]), "{other_ids:?}");
        assert_ne!(id, &other_ids[name], "{name}: one id for two backends");
    }

    let client = client::client();
    // The control: a valid cookie for a is kept.
    let valid = ids["a"].clone();
    for _ in 0..3 {
        let reply = get(&client, listen, "/app", Some(&format!("SRV={valid}"))).await;
        assert_eq!(served_by(&reply, "valid cookie"), "a");
    }
    assert_eq!(counters(&proxy, "app").await.kept, 3);

    let tampered = [
        ("first character flipped", flip(&valid, 0)),
        ("middle character flipped", flip(&valid, ID_LEN / 2)),
        ("last character flipped", flip(&valid, ID_LEN - 1)),
        ("truncated to 11", valid[..ID_LEN - 1].to_owned()),
        ("truncated to 6", valid[..6].to_owned()),
        ("one character more", format!("{valid}A")),
        ("empty", String::new()),
        ("not base64", "%%not*base64!!".to_owned()),
        ("4 KiB", "A".repeat(4096)),
        ("another backend's id", other_ids["a"].clone()),
    ];
    let rounds = 3;
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for (what, value) in &tampered {
        for round in 0..rounds {
            let cookie = format!("SRV={value}");
            let reply = get(&client, listen, "/app", Some(&cookie)).await;
            let who = served_by(&reply, &format!("{what} (round {round})"));
            let fresh = set_value(&reply, "SRV")
                .unwrap_or_else(|| panic!("{what}: no fresh cookie: {reply:?}"));
            assert_eq!(fresh, ids[&who], "{what}: the fresh cookie names {who}");
            *landed.entry(who).or_default() += 1;
        }
    }
    let total = tampered.len() * rounds;
    eprintln!("{total} requests with tampered cookies landed on {landed:?}");
    assert!(
        landed.len() == 3 && landed.values().all(|&n| n >= total / 6),
        "tampered cookies should be balanced normally: {landed:?}"
    );
    assert_eq!(
        counters(&proxy, "app").await,
        Counters {
            kept: 3,
            rejected: total as u64,
            ..Counters::default()
        }
    );
}

// ---------------------------------------------------------------------------
// Insert mode: indirect, attributes

/// `indirect`: the backend never sees our cookie, while other cookies of the same
/// header arrive unchanged; a client whose cookie is valid for the endpoint that
/// answers gets no `Set-Cookie`, one without or with a bad cookie does; the
/// backend's own `SRV` cookie is removed, its other cookies pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indirect_cookies_never_reach_the_backend_and_are_not_set_again() {
    let backends = start_backends(["a", "b", "c"]).await;
    let names = named(&backends);
    let eps = endpoints_of(&backends);
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[(
            "app",
            backend_yaml(
                "app",
                &eps,
                &["sticky: {cookie: {name: SRV, indirect: true}}"],
            ),
        )],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let ids = ids_by_name(&proxy, "app", &names).await;
    let client = client::client();

    // No cookie: one is set, the backend sees no Cookie header.
    let reply = get(&client, listen, "/app?echo", None).await;
    let who = served_by(&reply, "first request");
    assert_eq!(set_value(&reply, "SRV").as_ref(), Some(&ids[&who]));
    assert_eq!(echoed_cookie_pairs(&reply), Vec::<String>::new());

    // With the cookie, wherever it sits in the header.
    let v = &ids[&who];
    let cases = [
        (format!("SRV={v}"), vec![]),
        (
            format!("other=1; SRV={v}; third=x"),
            vec!["other=1", "third=x"],
        ),
        (format!("SRV={v}; other=1"), vec!["other=1"]),
        (format!("other=1; SRV={v}"), vec!["other=1"]),
    ];
    for (cookie, expected) in &cases {
        for _ in 0..2 {
            let reply = get(&client, listen, "/app?echo", Some(cookie)).await;
            assert_eq!(served_by(&reply, cookie), who, "Cookie: {cookie}");
            assert_eq!(
                echoed_cookie_pairs(&reply),
                *expected,
                "Cookie: {cookie}: what the backend saw"
            );
            assert!(
                set_cookies(&reply, "SRV").is_empty(),
                "Cookie: {cookie}: valid, so not set again"
            );
        }
    }

    // A valid cookie for each endpoint goes there and is not set again.
    for (name, id) in &ids {
        let reply = get(&client, listen, "/app", Some(&format!("SRV={id}"))).await;
        assert_eq!(served_by(&reply, name), *name);
        assert!(set_cookies(&reply, "SRV").is_empty(), "cookie for {name}");
    }

    // A bad cookie: balanced, set, and still hidden from the backend.
    let bad = format!("other=1; SRV={}", flip(v, 3));
    let reply = get(&client, listen, "/app?echo", Some(&bad)).await;
    let now = served_by(&reply, "bad cookie");
    assert_eq!(set_value(&reply, "SRV").as_ref(), Some(&ids[&now]), "{bad}");
    assert_eq!(echoed_cookie_pairs(&reply), vec!["other=1"], "{bad}");

    // The backend's own SRV cookie is removed; its other cookies pass.
    let path = format!(
        "/app?{}&{}",
        set_cookie_param("SRV=from-backend; Path=/"),
        set_cookie_param("app=1; Path=/")
    );
    let reply = get(&client, listen, &path, Some(&format!("SRV={v}"))).await;
    assert_eq!(served_by(&reply, &path), who);
    assert!(
        set_cookies(&reply, "SRV").is_empty(),
        "valid cookie: {reply:?}"
    );
    assert_eq!(
        set_cookie(&reply, "app").map(|c| (c.value, c.attributes)),
        Some(("1".to_owned(), vec!["Path=/".to_owned()]))
    );
    let reply = get(&client, listen, &path, None).await;
    let now = served_by(&reply, &path);
    assert_eq!(
        set_value(&reply, "SRV").as_ref(),
        Some(&ids[&now]),
        "no cookie: ours, not the backend's"
    );
    assert!(set_cookie(&reply, "app").is_some(), "{reply:?}");
}

/// The inserted cookie's attributes: `Path=/; HttpOnly` by default; `Domain`,
/// `Secure`, `SameSite` and another path when configured, and `nocache` adds
/// `Cache-Control: private`; `http_only: false` drops `HttpOnly`. Without
/// `indirect` every response sets it, and a backend's own `SRV` is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserted_cookies_carry_the_configured_attributes() {
    let [a] = start_backends(["a"]).await;
    let eps = endpoints(&[a.addr]);
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            ("plain", backend_yaml("plain", &eps, &[SRV])),
            (
                "attrs",
                backend_yaml(
                    "attrs",
                    &eps,
                    &["sticky: {cookie: {name: SRV, nocache: true, secure: true, \
                       same_site: lax, domain: example.com, path: /attrs}}"],
                ),
            ),
            (
                "script",
                backend_yaml(
                    "script",
                    &eps,
                    &["sticky: {cookie: {name: SRV, http_only: false, same_site: strict}}"],
                ),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let cases = [
        ("plain", vec!["httponly", "path=/"], false),
        (
            "attrs",
            vec![
                "domain=example.com",
                "httponly",
                "path=/attrs",
                "samesite=Lax",
                "secure",
            ],
            true,
        ),
        ("script", vec!["path=/", "samesite=Strict"], false),
    ];
    for (id, attributes, private) in cases {
        let cookie_id = cookie_ids(&proxy, id).await[&a.addr.to_string()].clone();
        for cookie in [None, Some(format!("SRV={cookie_id}"))] {
            let reply = get(&client, listen, &format!("/{id}"), cookie.as_deref()).await;
            served_by(&reply, id);
            let set = set_cookie(&reply, "SRV")
                .unwrap_or_else(|| panic!("/{id} with {cookie:?}: no SRV cookie: {reply:?}"));
            assert_eq!(set.value, cookie_id, "/{id}");
            assert_eq!(set.normalized_attributes(), attributes, "/{id}: {set:?}");
            let cache = reply
                .headers
                .get_all(http::header::CACHE_CONTROL)
                .iter()
                .map(|v| v.to_str().unwrap().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(", ");
            assert_eq!(cache.contains("private"), private, "/{id}: {cache:?}");
        }
    }

    // The backend's own SRV is replaced by ours; its other cookies pass.
    let path = format!(
        "/plain?{}&{}",
        set_cookie_param("SRV=from-backend; Path=/"),
        set_cookie_param("app=1; Path=/")
    );
    let reply = get(&client, listen, &path, None).await;
    served_by(&reply, &path);
    let all = set_cookies(&reply, "SRV");
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(is_endpoint_id(&all[0].value), "{all:?}");
    assert!(set_cookie(&reply, "app").is_some(), "{reply:?}");
}

// ---------------------------------------------------------------------------
// Prefix and rewrite modes

/// Prefix mode: the application's `JSESSIONID=sessN; Path=/app` reaches the client
/// as `JSESSIONID=<id>~sessN; Path=/app`; sending that back lands on the same
/// endpoint and the application sees exactly `JSESSIONID=sessN`. Rewrite mode: the
/// application's `SRV=anything; <attributes>` reaches the client as `SRV=<id>;
/// <same attributes>` and pins it. Neither mode sets a cookie the application
/// did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_rewrite_modes_keep_the_applications_cookie() {
    let backends = start_backends(["a", "b", "c"]).await;
    let names = named(&backends);
    let eps = endpoints_of(&backends);
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            (
                "app",
                backend_yaml(
                    "app",
                    &eps,
                    &["sticky: {cookie: {name: JSESSIONID, mode: prefix}}"],
                ),
            ),
            (
                "rw",
                backend_yaml(
                    "rw",
                    &eps,
                    &["sticky: {cookie: {name: SRV, mode: rewrite}}"],
                ),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let app_ids = ids_by_name(&proxy, "app", &names).await;
    let rw_ids = ids_by_name(&proxy, "rw", &names).await;
    assert_eq!(
        backend_status(&proxy, "app").await["sticky"]["mode"],
        "prefix"
    );
    assert_eq!(
        backend_status(&proxy, "rw").await["sticky"]["mode"],
        "rewrite"
    );
    let client = client::client();

    // No application cookie: nothing set.
    for path in ["/app", "/rw"] {
        for _ in 0..3 {
            let reply = get(&client, listen, path, None).await;
            served_by(&reply, path);
            assert_eq!(
                reply
                    .headers
                    .get_all(http::header::SET_COOKIE)
                    .iter()
                    .count(),
                0,
                "{path}: {reply:?}"
            );
        }
    }

    const SESSIONS: usize = 6;
    let mut used = BTreeSet::new();
    for i in 0..SESSIONS {
        let session = format!("sess{i}");
        let path = format!(
            "/app?{}",
            set_cookie_param(&format!("JSESSIONID={session}; Path=/app"))
        );
        let reply = get(&client, listen, &path, None).await;
        let who = served_by(&reply, &path);
        let set = set_cookie(&reply, "JSESSIONID").unwrap_or_else(|| panic!("{reply:?}"));
        assert_eq!(set.value, format!("{}~{session}", app_ids[&who]), "{set:?}");
        assert_eq!(set.attributes, vec!["Path=/app"], "{set:?}");
        used.insert(who.clone());
        let cookie = format!("JSESSIONID={}; other=1", set.value);
        for _ in 0..4 {
            let reply = get(&client, listen, "/app?echo", Some(&cookie)).await;
            assert_eq!(served_by(&reply, &cookie), who, "Cookie: {cookie}");
            assert_eq!(
                echoed_cookie_pairs(&reply),
                vec![format!("JSESSIONID={session}"), "other=1".to_owned()],
                "Cookie: {cookie}: what the application saw"
            );
            assert!(set_cookies(&reply, "JSESSIONID").is_empty(), "{cookie}");
        }
    }
    assert!(used.len() >= 2, "{SESSIONS} sessions all on {used:?}");

    let mut used = BTreeSet::new();
    for i in 0..SESSIONS {
        let path = format!(
            "/rw?{}",
            set_cookie_param(&format!("SRV=whatever{i}; Path=/; Max-Age=3600"))
        );
        let reply = get(&client, listen, &path, None).await;
        let who = served_by(&reply, &path);
        let set = set_cookie(&reply, "SRV").unwrap_or_else(|| panic!("{reply:?}"));
        assert_eq!(set.value, rw_ids[&who], "{set:?}");
        assert_eq!(set.attributes, vec!["Path=/", "Max-Age=3600"], "{set:?}");
        used.insert(who.clone());
        let cookie = format!("SRV={}", set.value);
        for _ in 0..4 {
            let reply = get(&client, listen, "/rw", Some(&cookie)).await;
            assert_eq!(served_by(&reply, &cookie), who, "Cookie: {cookie}");
        }
    }
    assert!(used.len() >= 2, "{SESSIONS} sessions all on {used:?}");
    assert_eq!(counters(&proxy, "app").await.kept, (SESSIONS * 4) as u64);
    assert_eq!(counters(&proxy, "rw").await.kept, (SESSIONS * 4) as u64);
}

// ---------------------------------------------------------------------------
// max_idle, max_life

/// Timestamped cookies (36 characters; the proxy's timestamps count whole
/// seconds): with `max_idle: 1s` a cookie reused after 2.5 s is rejected and
/// re-issued; with `max_idle: 3s` a client coming back every second for 5 s stays
/// (each response refreshes the idle timestamp); with `max_life: 2s` the same
/// refreshing client is rejected once 2 s have passed since the first cookie (but
/// not within the first second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_idle_and_max_life_expire_cookies() {
    let backends = start_backends(["a", "b", "c"]).await;
    let eps = endpoints_of(&backends);
    let listen = free_addr().unwrap();
    let yaml = table(
        listen,
        &[
            (
                "idle1",
                backend_yaml(
                    "idle1",
                    &eps,
                    &["sticky: {cookie: {name: SRV, max_idle: 1s}}"],
                ),
            ),
            (
                "idle3",
                backend_yaml(
                    "idle3",
                    &eps,
                    &["sticky: {cookie: {name: SRV, max_idle: 3s}}"],
                ),
            ),
            (
                "life2",
                backend_yaml(
                    "life2",
                    &eps,
                    &["sticky: {cookie: {name: SRV, max_life: 2s}}"],
                ),
            ),
        ],
    );
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let issue = |path: &'static str, cookie: Option<String>| {
        let client = client.clone();
        async move {
            let reply = get(&client, listen, path, cookie.as_deref()).await;
            let who = served_by(&reply, path);
            let value = set_value(&reply, "SRV")
                .unwrap_or_else(|| panic!("{path}: no SRV cookie: {reply:?}"));
            assert!(
                value.len() == TIMESTAMPED_LEN && is_url_safe_base64(&value),
                "{path}: {value:?} is not a timestamped cookie value"
            );
            (who, format!("SRV={value}"))
        }
    };

    let idle1 = async {
        let (_, cookie) = issue("/idle1", None).await;
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let (_, again) = issue("/idle1", Some(cookie.clone())).await;
        assert_ne!(again, cookie, "an expired cookie was not re-issued");
        assert_eq!(
            counters(&proxy, "idle1").await,
            Counters {
                new: 1,
                rejected: 1,
                ..Counters::default()
            },
            "a cookie idle for 2.5 s with max_idle 1s"
        );
    };

    let idle3 = async {
        let (first, mut cookie) = issue("/idle3", None).await;
        let started = Instant::now();
        for k in 1..=5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (who, next) = issue("/idle3", Some(cookie)).await;
            assert_eq!(who, first, "request {k}, {:?} in", started.elapsed());
            cookie = next;
        }
        assert_eq!(
            counters(&proxy, "idle3").await,
            Counters {
                new: 1,
                kept: 5,
                ..Counters::default()
            },
            "a cookie used every second for {:?} with max_idle 3s",
            started.elapsed()
        );
    };

    let life2 = async {
        let sent = Instant::now();
        let (_, mut cookie) = issue("/life2", None).await;
        let received = Instant::now();
        let mut rejected_at = None;
        while received.elapsed() < Duration::from_millis(3_200) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (_, next) = issue("/life2", Some(cookie)).await;
            let answered = sent.elapsed();
            cookie = next;
            if counters(&proxy, "life2").await.rejected > 0 {
                rejected_at = Some(answered);
                break;
            }
        }
        eprintln!("max_life 2s: a refreshed cookie was rejected {rejected_at:?} after issue");
        let at = rejected_at.expect("a cookie older than max_life 2s was still kept");
        assert!(
            at >= Duration::from_secs(1),
            "rejected only {at:?} after issue"
        );
    };

    tokio::join!(idle1, idle3, life2);
}
