use super::*;
use crate::balance::PinnedLease;
use crate::compile::{CompiledBackend, CompiledTable, compile};
use crate::runtime::Runtime;
use crate::table::{SecretText, from_yaml_str};
use proptest::prelude::*;
use std::time::Duration;

const KEY: &str = "test-key-0123456789abcdef";
const NOW: u32 = 1_800_000_000;

fn runtime(keys: &[&str]) -> Runtime {
    let keys = keys.iter().map(|k| SecretText::new((*k).into())).collect();
    Runtime::with_session_keys(SessionKeys::new(keys).unwrap())
}

/// A backend `b` with endpoints 127.0.0.1:1..=3 (the third a backup when
/// `backup`) and the given cookie settings.
fn table(runtime: &Runtime, cookie: &str, extra: &str) -> CompiledTable {
    let yaml = format!(
        "backends:
  b:
    endpoints: [{{address: 127.0.0.1:1}}, {{address: 127.0.0.1:2}}, {{address: 127.0.0.1:3}}]
    sticky: {{cookie: {cookie}}}
{extra}"
    );
    compile(from_yaml_str(&yaml).unwrap(), runtime).unwrap()
}

fn backend(t: &CompiledTable) -> &CompiledBackend {
    &t.backends[0]
}

fn sticky(t: &CompiledTable) -> &CompiledSticky {
    backend(t).sticky.as_ref().unwrap()
}

fn endpoint(t: &CompiledTable, port: u16) -> Arc<EndpointState> {
    backend(t)
        .balancer
        .members()
        .find(|m| m.state.address.to_string() == format!("127.0.0.1:{port}"))
        .unwrap()
        .state
        .clone()
}

fn with_cookie(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
    h
}

/// The Set-Cookie lines a response gets when `served` answers.
fn respond(t: &CompiledTable, request: &HeaderMap, now: u32, served: u16) -> Vec<String> {
    respond_with(t, request, now, served, HeaderMap::new())
}

fn respond_with(
    t: &CompiledTable,
    request: &HeaderMap,
    now: u32,
    served: u16,
    mut response: HeaderMap,
) -> Vec<String> {
    let s = sticky(t);
    let session = s.read(request, now);
    s.edit_response(&mut response, &session, &endpoint(t, served));
    response
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The value of the first `NAME=value` Set-Cookie line.
fn value_of(line: &str) -> String {
    let pair = line.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

fn pinned_port(t: &CompiledTable, cookie_header: &str, now: u32) -> Option<u16> {
    sticky(t)
        .read(&with_cookie(cookie_header), now)
        .pin
        .and_then(|p| p.endpoint.address.ip())
        .map(|a| a.port())
}

#[test]
fn an_inserted_cookie_names_the_endpoint_that_answered_and_brings_the_client_back() {
    let rt = runtime(&[KEY]);
    let t = table(
        &rt,
        "{name: SRV, secure: true, same_site: lax, domain: example.com}",
        "",
    );
    let lines = respond(&t, &HeaderMap::new(), NOW, 2);
    assert_eq!(lines.len(), 1);
    let value = value_of(&lines[0]);
    assert_eq!(value.len(), 12);
    assert_eq!(
        lines[0],
        format!("SRV={value}; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Lax")
    );
    assert_eq!(pinned_port(&t, &format!("a=1; SRV={value}"), NOW), Some(2));
    let s = sticky(&t);
    let session = s.read(&with_cookie(&format!("SRV={value}")), NOW);
    s.count_pin(&session, &endpoint(&t, 2));
    s.count_pin(&session, &endpoint(&t, 3));
    let status = s.status();
    assert_eq!(
        (status.new, status.rejected, status.kept, status.moved),
        (1, 0, 1, 1),
        "kept where it answered, moved when another endpoint did"
    );
    assert_eq!(
        sticky(&t).cookie_id(&endpoint(&t, 2).address),
        Some(value),
        "the admin view shows which endpoint a cookie names"
    );
}

#[test]
fn the_same_key_maps_the_same_cookie_in_another_process_and_another_key_does_not() {
    let a = table(&runtime(&[KEY]), "{name: SRV}", "");
    let b = table(&runtime(&[KEY]), "{name: SRV}", "");
    let other = table(&runtime(&["some-other-key-0123456789"]), "{name: SRV}", "");
    for port in 1..=3 {
        let value = value_of(&respond(&a, &HeaderMap::new(), NOW, port)[0]);
        assert_eq!(pinned_port(&b, &format!("SRV={value}"), NOW), Some(port));
        assert_eq!(pinned_port(&other, &format!("SRV={value}"), NOW), None);
    }
    assert_eq!(sticky(&other).status().rejected, 3);
}

#[test]
fn an_old_key_still_pins_and_the_response_moves_the_client_to_the_new_key() {
    let old = table(&runtime(&[KEY]), "{name: SRV, indirect: true}", "");
    let old_value = value_of(&respond(&old, &HeaderMap::new(), NOW, 1)[0]);
    let rotated = table(
        &runtime(&["new-key-0123456789abcdef", KEY]),
        "{name: SRV, indirect: true}",
        "",
    );
    let request = with_cookie(&format!("SRV={old_value}"));
    assert_eq!(
        pinned_port(&rotated, &format!("SRV={old_value}"), NOW),
        Some(1)
    );
    let lines = respond(&rotated, &request, NOW, 1);
    assert_eq!(
        lines.len(),
        1,
        "re-issued under the signing key despite indirect"
    );
    let new_value = value_of(&lines[0]);
    assert_ne!(new_value, old_value);
    assert!(
        respond(&rotated, &with_cookie(&format!("SRV={new_value}")), NOW, 1).is_empty(),
        "then left alone"
    );
}

#[test]
fn indirect_keeps_the_cookie_from_the_backend_and_sets_it_only_when_it_changes() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: SRV, indirect: true, nocache: true}", "");
    let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 1)[0]);
    let mut request = with_cookie(&format!("a=1; SRV={value}; b=2"));
    sticky(&t).edit_request(&mut request);
    assert_eq!(request[header::COOKIE], "a=1; b=2");

    let request = with_cookie(&format!("SRV={value}"));
    assert!(respond(&t, &request, NOW, 1).is_empty(), "valid for 1");
    let moved = respond(&t, &request, NOW, 3);
    assert_eq!(moved.len(), 1, "answered by another endpoint: re-pinned");
    assert_eq!(
        pinned_port(&t, &moved[0].replace("; Path=/; HttpOnly", ""), NOW),
        Some(3)
    );

    let mut response = HeaderMap::new();
    response.insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
    let s = sticky(&t);
    let session = s.read(&HeaderMap::new(), NOW);
    s.edit_response(&mut response, &session, &endpoint(&t, 2));
    assert_eq!(response[header::CACHE_CONTROL], "private", "nocache");
}

#[test]
fn without_indirect_the_cookie_is_set_on_every_response_and_the_backends_own_is_dropped() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: SRV}", "");
    let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 1)[0]);
    let mut from_backend = HeaderMap::new();
    from_backend.append(
        header::SET_COOKIE,
        HeaderValue::from_static("SRV=app; Path=/x"),
    );
    from_backend.append(header::SET_COOKIE, HeaderValue::from_static("theme=dark"));
    let lines = respond_with(
        &t,
        &with_cookie(&format!("SRV={value}")),
        NOW,
        1,
        from_backend,
    );
    assert_eq!(
        lines,
        [
            "theme=dark".to_owned(),
            format!("SRV={value}; Path=/; HttpOnly")
        ]
    );
    let mut request = with_cookie(&format!("SRV={value}"));
    sticky(&t).edit_request(&mut request);
    assert_eq!(
        request[header::COOKIE],
        format!("SRV={value}").as_str(),
        "forwarded"
    );
}

#[test]
fn idle_and_old_cookies_are_ignored_and_a_used_cookie_is_refreshed() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: SRV, max_idle: 160s, max_life: 1h}", "");
    let first = value_of(&respond(&t, &HeaderMap::new(), NOW, 2)[0]);
    assert_eq!(first.len(), 36);
    let cookie = format!("SRV={first}");
    assert_eq!(pinned_port(&t, &cookie, NOW + 160), Some(2));
    assert_eq!(pinned_port(&t, &cookie, NOW + 161), None, "idle too long");
    // Used within 1/16 of max_idle: same value; later: last-seen moves.
    let request = with_cookie(&cookie);
    assert_eq!(value_of(&respond(&t, &request, NOW + 9, 2)[0]), first);
    let refreshed = value_of(&respond(&t, &request, NOW + 100, 2)[0]);
    assert_ne!(refreshed, first);
    let refreshed = format!("SRV={refreshed}");
    assert_eq!(
        pinned_port(&t, &refreshed, NOW + 250),
        Some(2),
        "idle counts from 100"
    );
    // Keep using it: the life limit still ends it an hour after issue.
    let mut cookie = refreshed;
    let mut now = NOW + 100;
    while now + 100 <= NOW + 3600 {
        now += 100;
        assert_eq!(pinned_port(&t, &cookie, now), Some(2));
        let line = respond(&t, &with_cookie(&cookie), now, 2);
        cookie = format!("SRV={}", value_of(&line[0]));
    }
    assert_eq!(pinned_port(&t, &cookie, NOW + 3601), None, "too old");
}

#[test]
fn prefix_mode_round_trips_the_applications_value() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: JSESSIONID, mode: prefix}", "");
    let mut from_backend = HeaderMap::new();
    from_backend.insert(
        header::SET_COOKIE,
        HeaderValue::from_static("JSESSIONID=abc123; Path=/app; Secure"),
    );
    let lines = respond_with(&t, &HeaderMap::new(), NOW, 3, from_backend);
    let (id, rest) = lines[0].split_once('~').unwrap();
    assert_eq!(rest, "abc123; Path=/app; Secure");
    let client_value = format!("{}~abc123", id.trim_start_matches("JSESSIONID="));
    let header = format!("JSESSIONID={client_value}; x=1");
    assert_eq!(pinned_port(&t, &header, NOW), Some(3));
    let mut request = with_cookie(&header);
    sticky(&t).edit_request(&mut request);
    assert_eq!(request[header::COOKIE], "JSESSIONID=abc123; x=1");
    // A value without our prefix passes untouched, and is no pin.
    let mut plain = with_cookie("JSESSIONID=a~b");
    sticky(&t).edit_request(&mut plain);
    assert_eq!(plain[header::COOKIE], "JSESSIONID=a~b");
    // Responses without the application's cookie get none.
    assert!(respond(&t, &HeaderMap::new(), NOW, 3).is_empty());
}

#[test]
fn rewrite_mode_replaces_the_applications_value_and_keeps_its_attributes() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: SRV, mode: rewrite, indirect: true}", "");
    let app = || {
        let mut h = HeaderMap::new();
        h.insert(
            header::SET_COOKIE,
            HeaderValue::from_static("SRV=x; Max-Age=600"),
        );
        h
    };
    let lines = respond_with(&t, &HeaderMap::new(), NOW, 1, app());
    let value = value_of(&lines[0]);
    assert_eq!(lines[0], format!("SRV={value}; Max-Age=600"));
    let request = with_cookie(&format!("SRV={value}"));
    assert_eq!(pinned_port(&t, &format!("SRV={value}"), NOW), Some(1));
    assert!(
        respond_with(&t, &request, NOW, 1, app()).is_empty(),
        "indirect"
    );
}

#[tokio::test]
async fn a_drained_endpoint_keeps_its_sessions_and_a_down_one_loses_them() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: SRV}", "");
    let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 1)[0]);
    // The next table drains endpoint 1.
    let yaml = "backends:
  b:
    endpoints: [{address: 127.0.0.1:1, weight: 0}, {address: 127.0.0.1:2}, {address: 127.0.0.1:3}]
    sticky: {cookie: {name: SRV}}
";
    let t = compile(from_yaml_str(yaml).unwrap(), &rt).unwrap();
    let b = backend(&t);
    let session = sticky(&t).read(&with_cookie(&format!("SRV={value}")), NOW);
    let pin = session.pin.unwrap();
    match b.balancer.lease_pinned(pin).await {
        PinnedLease::Leased(l) => assert_eq!(l.endpoint().address.to_string(), "127.0.0.1:1"),
        _ => panic!("a drained endpoint keeps its sessions"),
    }
    for _ in 0..50 {
        let l = b.balancer.lease(None, &[]).await.unwrap();
        assert_ne!(
            l.endpoint().address.to_string(),
            "127.0.0.1:1",
            "no new ones"
        );
    }
    pin.endpoint.set_up(false);
    assert!(matches!(
        b.balancer.lease_pinned(pin).await,
        PinnedLease::Unavailable
    ));
}

#[tokio::test]
async fn a_pinned_backup_serves_only_while_no_primary_is_available() {
    let rt = runtime(&[KEY]);
    let yaml = "backends:
  b:
    endpoints: [{address: 127.0.0.1:1}, {address: 127.0.0.1:3, backup: true}]
    sticky: {cookie: {name: SRV}}
";
    let t = compile(from_yaml_str(yaml).unwrap(), &rt).unwrap();
    let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 3)[0]);
    let session = sticky(&t).read(&with_cookie(&format!("SRV={value}")), NOW);
    let pin = session.pin.unwrap();
    let b = backend(&t);
    assert!(matches!(
        b.balancer.lease_pinned(pin).await,
        PinnedLease::Unavailable
    ));
    endpoint(&t, 1).set_up(false);
    assert!(matches!(
        b.balancer.lease_pinned(pin).await,
        PinnedLease::Leased(_)
    ));
    endpoint(&t, 1).set_up(true);
    assert!(
        matches!(b.balancer.lease_pinned(pin).await, PinnedLease::Unavailable),
        "load returns to the primary"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_pinned_endpoint_is_waited_for_up_to_the_queue_timeout() {
    let rt = runtime(&[KEY]);
    let yaml = "backends:
  b:
    timeouts: {queue: 2s}
    endpoints: [{address: 127.0.0.1:1, max_conn: 1}, {address: 127.0.0.1:2}]
    sticky: {cookie: {name: SRV}}
";
    let t = compile(from_yaml_str(yaml).unwrap(), &rt).unwrap();
    let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 1)[0]);
    let session = sticky(&t).read(&with_cookie(&format!("SRV={value}")), NOW);
    let pin = session.pin.unwrap();
    let b = backend(&t);
    let PinnedLease::Leased(held) = b.balancer.lease_pinned(pin).await else {
        panic!("free at first");
    };
    let waiting = b.balancer.lease_pinned(pin);
    tokio::pin!(waiting);
    tokio::select! {
        _ = &mut waiting => panic!("the endpoint is full"),
        () = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    drop(held);
    match waiting.await {
        PinnedLease::Leased(l) => assert_eq!(l.endpoint().address.to_string(), "127.0.0.1:1"),
        _ => panic!("the freed slot goes to the pinned request"),
    }
    let _busy = b.balancer.lease_pinned(pin).await;
    let started = tokio::time::Instant::now();
    assert!(matches!(
        b.balancer.lease_pinned(pin).await,
        PinnedLease::TimedOut(_)
    ));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_pinned_client_reaches_an_endpoint_in_slow_start() {
    let rt = runtime(&[KEY]);
    let t = table(&rt, "{name: SRV}", "    slow_start: 60s\n");
    let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 2)[0]);
    let b = backend(&t);
    endpoint(&t, 2).start_ramp(b.balancer.state.now_ms());
    let session = sticky(&t).read(&with_cookie(&format!("SRV={value}")), NOW);
    for _ in 0..20 {
        match b.balancer.lease_pinned(session.pin.unwrap()).await {
            PinnedLease::Leased(l) => assert_eq!(l.endpoint().address.to_string(), "127.0.0.1:2"),
            _ => panic!("ramping endpoints keep their sessions"),
        }
    }
}

/// The pins a table can produce: its own endpoints' states.
fn is_member(t: &CompiledTable, pin: &Pin) -> bool {
    backend(t)
        .balancer
        .members()
        .any(|m| Arc::ptr_eq(&m.state, &pin.endpoint))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_cookie_values_never_panic_or_pin_outside_the_backend(
        value in proptest::collection::vec(any::<u8>(), 0..80),
        stamped in any::<bool>(),
        mode in 0..3u8,
    ) {
        let rt = runtime(&[KEY]);
        let options = if stamped { ", max_idle: 1h" } else { "" };
        let mode = ["insert", "rewrite", "prefix"][usize::from(mode)];
        let options = if mode == "insert" { options } else { "" };
        let t = table(&rt, &format!("{{name: SRV, mode: {mode}{options}}}"), "");
        let mut raw = b"a=1; SRV=".to_vec();
        raw.extend_from_slice(&value);
        if let Ok(v) = HeaderValue::from_bytes(&raw) {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, v);
            let session = sticky(&t).read(&h, NOW);
            if let Some(pin) = session.pin {
                prop_assert!(is_member(&t, pin));
            }
            sticky(&t).edit_request(&mut h);
            let mut response = HeaderMap::new();
            sticky(&t).edit_response(&mut response, &session, &endpoint(&t, 1));
        }
    }

    #[test]
    fn a_changed_character_never_pins_a_stamped_cookie(at in 0..36usize, to in 0..64u8) {
        let rt = runtime(&[KEY]);
        let t = table(&rt, "{name: SRV, max_idle: 1h}", "");
        let value = value_of(&respond(&t, &HeaderMap::new(), NOW, 2)[0]);
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bytes = value.into_bytes();
        let replacement = alphabet[usize::from(to)];
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(pinned_port(&t, &format!("SRV={tampered}"), NOW), None);
    }
}
