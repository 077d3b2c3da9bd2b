//! Content switching as HAProxy tutorials configure it, written as our table: static
//! vs dynamic by path (prefix, suffix, regex), virtual hosts, user-agent redirects,
//! access control by client address (two loopback clients, IPv6, a dual-stack
//! socket), read/write split by method, priorities, query matching, and path
//! normalisation in front of a deny rule. Each test runs the real binary against
//! in-process backends.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Method, Request};
use sluice_e2e::client::{self, Body, assert_outcomes, get, request, send};
use sluice_e2e::config_file::backends_yaml;
use sluice_e2e::{Backend, ProxyProcess, free_addr, raw};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A GET with a `User-Agent`.
fn with_agent(proxy: SocketAddr, path: &str, agent: &str) -> Request<Body> {
    request(
        Method::GET,
        proxy,
        Some("www.test.com"),
        path,
        &[("user-agent", agent)],
        "",
    )
}

const STATIC_PATHS: &str = "[{begins_with: /static}, {begins_with: /images}, \
    {begins_with: /javascript}, {begins_with: /stylesheets}, {ends_with: .jpg}, \
    {ends_with: .gif}, {ends_with: .png}, {ends_with: .css}, {ends_with: .js}]";

/// `acl url_static path_beg /static /images /javascript /stylesheets`,
/// `acl url_static path_end .jpg .gif .png .css .js`, `use_backend static if
/// url_static`, else `app`: as the listener's default backend, and as an ordinary
/// `prefix: /` route written after the rule, and before it (order must not matter:
/// string rules are tried before Ingress prefixes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_content_is_split_off_by_path_begin_and_end() {
    let (stat, app) = (Backend::start("static").await, Backend::start("app").await);
    let [by_default, route_after, route_before] = [(); 3].map(|_| free_addr().unwrap());
    let yaml = format!(
        r#"
listeners:
  - http:
      name: default-backend
      bind: {by_default}
      default_backend: app
      routes:
        - {{name: static, paths: {STATIC_PATHS}, action: {{forward: static}}}}
  - http:
      name: route-after
      bind: {route_after}
      routes:
        - {{name: static, paths: {STATIC_PATHS}, action: {{forward: static}}}}
        - {{name: app, paths: [{{prefix: /}}], action: {{forward: app}}}}
  - http:
      name: route-before
      bind: {route_before}
      routes:
        - {{name: app, paths: [{{prefix: /}}], action: {{forward: app}}}}
        - {{name: static, paths: {STATIC_PATHS}, action: {{forward: static}}}}
{}"#,
        backends_yaml(&[&stat, &app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let cases = [
        ("/static/app.css", "static"),
        ("/static", "static"),
        // path_beg is a string prefix, not a path element.
        ("/staticfoo", "static"),
        ("/images/logo.svg?v=3", "static"),
        ("/javascript/app", "static"),
        ("/stylesheets/site", "static"),
        ("/photos/cat.jpg", "static"),
        ("/a.gif", "static"),
        ("/x/y.png", "static"),
        ("/style.css", "static"),
        // The query is not part of the path.
        ("/bundle.js?v=2", "static"),
        ("/", "app"),
        ("/login", "app"),
        // Case-sensitive, as HAProxy's path_end without -i.
        ("/a.JPG", "app"),
        ("/a.jpgx", "app"),
        ("/json", "app"),
        ("/x.jsx", "app"),
        ("/stat", "app"),
        ("/api/static/x", "app"),
    ];
    for listen in [by_default, route_after, route_before] {
        let requests = cases
            .iter()
            .map(|&(path, who)| (get(listen, Some("www.test.com"), path), who))
            .collect();
        assert_outcomes(&client, requests).await;
    }
}

/// `use_backend www if { hdr(host) -i www.test.com }`, the same for blog,
/// `default_backend app`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosts_by_host_header() {
    let www = Backend::start("www").await;
    let blog = Backend::start("blog").await;
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      default_backend: app
      routes:
        - {{name: www, hosts: [www.test.com], action: {{forward: www}}}}
        - {{name: blog, hosts: [blog.test.com], action: {{forward: blog}}}}
{}"#,
        backends_yaml(&[&www, &blog, &app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let cases = [
        ("www.test.com", "www"),
        ("WWW.Test.COM:8080", "www"),
        ("www.test.com.", "www"),
        ("blog.test.com", "blog"),
        ("Blog.TEST.com:80", "blog"),
        ("test.com", "app"),
        ("shop.test.com", "app"),
        ("www.test.com.evil.example", "app"),
        ("127.0.0.1", "app"),
    ]
    .map(|(host, who)| (get(listen, Some(host), "/some/page?x=1"), who));
    assert_outcomes(&client::client(), cases.into()).await;
}

/// `redirect prefix http://3g-iphone.test.com if { hdr_sub(user-agent) -i iphone }`,
/// the same for Android; everyone else gets the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_user_agents_are_redirected_with_path_and_query() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - name: iphone
          match: [{{header: {{name: User-Agent, contains: iphone, ignore_case: true}}}}]
          action: {{redirect: {{prefix: "http://3g-iphone.test.com"}}}}
        - name: android
          match: [{{header: {{name: User-Agent, contains: android, ignore_case: true}}}}]
          action: {{redirect: {{prefix: "http://3g-android.test.com"}}}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15";
    let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Mobile";
    let desktop = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    assert_outcomes(
        &client,
        vec![
            (
                with_agent(listen, "/news/2024/article?id=7&ref=home", iphone),
                "302 http://3g-iphone.test.com/news/2024/article?id=7&ref=home",
            ),
            (
                with_agent(listen, "/", iphone),
                "302 http://3g-iphone.test.com/",
            ),
            (
                with_agent(listen, "/a", "SOME-IPHONE-APP/1.0"),
                "302 http://3g-iphone.test.com/a",
            ),
            (
                with_agent(listen, "/shop?q=x", android),
                "302 http://3g-android.test.com/shop?q=x",
            ),
            (with_agent(listen, "/news", desktop), "app"),
            (get(listen, Some("www.test.com"), "/news"), "app"),
        ],
    )
    .await;

    // A redirect is the proxy's answer: no body, and the backend never sees it.
    let before = app.requests();
    let reply = send(&client, with_agent(listen, "/x", iphone))
        .await
        .unwrap();
    assert_eq!(reply.status, 302);
    assert!(reply.body.is_empty(), "{}", reply.text());
    assert_eq!(app.requests(), before);
}

/// Access control by client address. The proxy sees clients from 127.0.0.1 and,
/// through the same table, from 127.0.0.2 (any 127/8 source works on Linux
/// loopback). Rules written as HAProxy ACLs (`http-request deny if !{ src ... }`,
/// a block list redirected to an error page) and as route-level `allow_sources`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_by_client_address() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - name: office-only
          priority: 10
          paths: [{{prefix: /office}}]
          match: [{{not: {{source: [10.0.0.0/8]}}}}]
          action: {{deny: {{}}}}
        - name: loopback-only
          priority: 10
          paths: [{{prefix: /loopback}}]
          match: [{{not: {{source: [127.0.0.0/8]}}}}]
          action: {{deny: {{}}}}
        - name: first-client-only
          priority: 10
          paths: [{{prefix: /first}}]
          match: [{{not: {{source: [127.0.0.1/32]}}}}]
          action: {{deny: {{}}}}
        - name: blocked-to-error-page
          priority: 10
          paths: [{{prefix: /shop}}]
          match: [{{source: [192.0.2.0/24, 127.0.0.2/32]}}]
          action: {{redirect: {{location: "http://errors.test.com/blocked.html", code: 303}}}}
        - name: blocked
          priority: 10
          paths: [{{prefix: /forum}}]
          match: [{{source: [127.0.0.2/32]}}]
          action: {{deny: {{}}}}
        - name: internal
          paths: [{{prefix: /internal}}]
          allow_sources: [10.0.0.0/8]
          action: {{forward: app}}
        - name: mine
          paths: [{{prefix: /mine}}]
          allow_sources: [127.0.0.1/32]
          action: {{forward: app}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let first = client::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
    let second = client::client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let blocked = "303 http://errors.test.com/blocked.html";
    // (path, answer for 127.0.0.1, answer for 127.0.0.2)
    let cases = [
        ("/office", "403", "403"),
        ("/loopback", "app", "app"),
        ("/first", "app", "403"),
        // A written `location` is used as is: no path or query appended.
        ("/shop/item?id=3", "app", blocked),
        ("/forum", "app", "403"),
        ("/internal", "403", "403"),
        // `allow_sources` refuses without trying other routes (the catch-all).
        ("/mine", "app", "403"),
        ("/", "app", "app"),
    ];
    for (client, column) in [(&first, 0), (&second, 1)] {
        let requests = cases
            .iter()
            .map(|c| {
                let expected = if column == 0 { c.1 } else { c.2 };
                (get(listen, Some("www.test.com"), c.0), expected)
            })
            .collect();
        assert_outcomes(client, requests).await;
    }
    // The backend saw the client it was told about (no proxy in front of this one).
    let reply = send(&second, get(listen, Some("a"), "/?echo=1"))
        .await
        .unwrap();
    assert_eq!(
        reply.echoed_one("x-forwarded-for").as_deref(),
        Some("127.0.0.2")
    );
}

/// The same kind of rules for IPv6 clients, on a listener bound to `[::1]`, next to
/// an IPv4 listener with the same routes that must answer the opposite way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_for_ipv6_clients() {
    let Some(listen6) = std::net::TcpListener::bind("[::1]:0")
        .and_then(|l| l.local_addr())
        .ok()
    else {
        eprintln!("SKIPPED: IPv6 loopback [::1] is not available on this machine");
        return;
    };
    let app = Backend::start("app").await;
    let listen4 = free_addr().unwrap();
    let routes = r#"
      routes:
        - name: v6-loopback-only
          priority: 10
          paths: [{prefix: /v6-only}]
          match: [{not: {source: ["::1/128"]}}]
          action: {deny: {}}
        - name: v4-loopback-only
          priority: 10
          paths: [{prefix: /v4-only}]
          match: [{not: {source: [127.0.0.0/8]}}]
          action: {deny: {}}
        - {name: ula, paths: [{prefix: /ula}], allow_sources: ["fd00::/8"], action: {forward: app}}
        - {name: lo6, paths: [{prefix: /lo6}], allow_sources: ["::1/128"], action: {forward: app}}
        - {name: app, action: {forward: app}}
"#;
    let yaml = format!(
        "listeners:\n  - http:\n      name: v6\n      bind: \"{listen6}\"{routes}  \
         - http:\n      name: v4\n      bind: {listen4}{routes}{}",
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    // (path, answer to ::1, answer to 127.0.0.1)
    let cases = [
        ("/v6-only", "app", "403"),
        ("/v4-only", "403", "app"),
        ("/ula", "403", "403"),
        ("/lo6", "app", "403"),
        ("/", "app", "app"),
    ];
    for (listen, column) in [(listen6, 0), (listen4, 1)] {
        let requests = cases
            .iter()
            .map(|c| {
                let expected = if column == 0 { c.1 } else { c.2 };
                (get(listen, Some("www.test.com"), c.0), expected)
            })
            .collect();
        assert_outcomes(&client, requests).await;
    }
    let reply = send(&client, get(listen6, Some("a"), "/?echo=1"))
        .await
        .unwrap();
    assert_eq!(reply.echoed_one("x-forwarded-for").as_deref(), Some("::1"));
}

/// A listener on an IPv6 socket that also takes IPv4 (as `[::]` does) sees IPv4
/// clients as `::ffff:a.b.c.d`; IPv4 rules must still apply to them, and the
/// backend must be told the IPv4 address. The v4-mapped loopback address keeps the
/// test on loopback while exercising the same socket behaviour as `[::]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_clients_of_a_dual_stack_listener_match_ipv4_rules() {
    // The IPv4 port space is the one a v4-mapped socket uses.
    let port = free_addr().unwrap().port();
    if std::net::TcpListener::bind(("::ffff:127.0.0.1", port)).is_err() {
        eprintln!("SKIPPED: this machine cannot bind IPv6 sockets to v4-mapped addresses");
        return;
    }
    let app = Backend::start("app").await;
    let yaml = format!(
        r#"
listeners:
  - http:
      name: dual
      bind: "[::ffff:127.0.0.1]:{port}"
      routes:
        - name: loopback-only
          priority: 10
          paths: [{{prefix: /loopback}}]
          match: [{{not: {{source: [127.0.0.0/8]}}}}]
          action: {{deny: {{}}}}
        - {{name: mine, paths: [{{prefix: /mine}}], allow_sources: [127.0.0.1/32], action: {{forward: app}}}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let client = client::client();
    assert_outcomes(
        &client,
        vec![
            (get(listen, Some("a"), "/loopback"), "app"),
            (get(listen, Some("a"), "/mine"), "app"),
        ],
    )
    .await;
    let reply = send(&client, get(listen, Some("a"), "/?echo=1"))
        .await
        .unwrap();
    assert_eq!(
        reply.echoed_one("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

/// `path_reg` rules: anchored to the whole path, tried in the order written and
/// before Ingress prefixes (here the catch-all is written first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_rules_match_whole_paths_in_written_order() {
    let [stat, media, api, app] = ["static", "media", "api", "app"];
    let backends = [
        Backend::start(stat).await,
        Backend::start(media).await,
        Backend::start(api).await,
        Backend::start(app).await,
    ];
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: app, paths: [{{prefix: /}}], action: {{forward: app}}}}
        - {{name: static, paths: [{{regex: '/(static|images)/.+\.(jpg|png)'}}], action: {{forward: static}}}}
        - {{name: api, paths: [{{regex: '/api/v[0-9]+(/.*)?'}}], action: {{forward: api}}}}
        - {{name: media, paths: [{{regex: '.*\.(jpg|png|mp4)'}}], action: {{forward: media}}}}
{}"#,
        backends_yaml(&backends.iter().collect::<Vec<_>>())
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let cases = [
        // Both image rules match; the one written first answers.
        ("/images/a.jpg", stat),
        ("/static/x/y.png?v=1", stat),
        ("/other/a.jpg", media),
        ("/IMAGES/a.jpg", media),
        ("/a.mp4", media),
        ("/api/v2", api),
        ("/api/v2/users", api),
        // Anchored: a match inside the path is not enough.
        ("/api/v2x", app),
        ("/x/api/v2", app),
        ("/images/a.jpg/x", app),
        ("/api/vx", app),
        ("/", app),
    ]
    .map(|(path, who)| (get(listen, Some("www.test.com"), path), who));
    assert_outcomes(&client::client(), cases.into()).await;
}

/// `use_backend reads if METH_GET` (GET and HEAD), `use_backend writes if { method
/// POST PUT DELETE }`; with no default backend, other methods find no route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_go_to_different_backends() {
    let reads = Backend::start("reads").await;
    let writes = Backend::start("writes").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: reads, match: [{{method: [GET, HEAD]}}], action: {{forward: reads}}}}
        - {{name: writes, match: [{{method: [POST, PUT, DELETE]}}], action: {{forward: writes}}}}
{}"#,
        backends_yaml(&[&reads, &writes])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let req = |method: &str| {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        request(method, listen, Some("db.test.com"), "/items/1", &[], "")
    };
    assert_outcomes(
        &client,
        vec![
            (req("GET"), "reads"),
            (req("HEAD"), "reads"),
            (req("POST"), "writes"),
            (req("PUT"), "writes"),
            (req("DELETE"), "writes"),
            (req("PATCH"), "404"),
            (req("OPTIONS"), "404"),
            (req("PURGE"), "404"),
        ],
    )
    .await;

    // A write's body arrives whole at the write backend; reads arrive as GET.
    let post = request(
        Method::POST,
        listen,
        Some("db.test.com"),
        "/items?upload",
        &[],
        sluice_e2e::pattern::chunk(0, 10_000),
    );
    let reply = send(&client, post).await.unwrap();
    assert_eq!(reply.backend(), Some("writes"));
    assert_eq!(reply.text(), "bytes=10000 mismatch=none");
    let reply = send(&client, get(listen, Some("db.test.com"), "/items?echo=1"))
        .await
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (seen["backend"].as_str(), seen["method"].as_str()),
        (Some("reads"), Some("GET"))
    );
}

/// A priority-10 rule without hosts is tried before an exact-host route; at equal
/// priority the exact host wins over host-less routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_beats_host_specificity() {
    let shop = Backend::start("shop").await;
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: shop, hosts: [shop.test.com], action: {{forward: shop}}}}
        - name: checkout-frozen
          priority: 10
          paths: [{{prefix: /checkout}}]
          action: {{respond: {{status: 503, body: "checkout closed"}}}}
        - {{name: any-cart, paths: [{{prefix: /cart}}], action: {{forward: app}}}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&shop, &app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let cases = [
        ("shop.test.com", "/checkout/pay", "503"),
        ("other.test.com", "/checkout", "503"),
        ("shop.test.com", "/checkoutx", "shop"),
        ("shop.test.com", "/cart", "shop"),
        ("other.test.com", "/cart", "app"),
        ("shop.test.com", "/", "shop"),
    ]
    .map(|(host, path, who)| (get(listen, Some(host), path), who));
    assert_outcomes(&client::client(), cases.into()).await;
}

/// `use_backend debug if { urlp(debug) -m str 1 }`: parameters are matched by
/// decoded name and value, never by substring of the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_select_a_backend() {
    let debug = Backend::start("debug").await;
    let english = Backend::start("english").await;
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: debug, match: [{{query: {{name: debug, exact: "1"}}}}], action: {{forward: debug}}}}
        - name: english
          match: [{{query: {{name: lang, prefix: en, ignore_case: true}}}}]
          action: {{forward: english}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&debug, &english, &app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();
    let cases = [
        ("/?debug=1", "debug"),
        ("/x?a=b&debug=1", "debug"),
        ("/x?debug=0&debug=1", "debug"),
        ("/x?%64ebug=%31", "debug"),
        ("/x?debug=0", "app"),
        ("/x?debug=1x", "app"),
        ("/x?debug", "app"),
        ("/x?nodebug=1", "app"),
        ("/x", "app"),
        ("/debug=1", "app"),
        ("/x?lang=EN-GB", "english"),
        ("/x?lang=en", "english"),
        ("/x?lang=fr", "app"),
    ]
    .map(|(path, who)| (get(listen, Some("www.test.com"), path), who));
    assert_outcomes(&client::client(), cases.into()).await;
}

/// A deny rule for `prefix: /admin` also catches the spellings a scanner tries
/// (escapes, doubled slashes, dot segments), sent byte for byte; other requests
/// reach the backend with the normalised path, so the proxy and the backend agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_normalisation_closes_deny_rule_bypasses() {
    let app = Backend::start("app").await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      routes:
        - {{name: no-admin, priority: 100, paths: [{{prefix: /admin}}], action: {{deny: {{}}}}}}
        - {{name: app, action: {{forward: app}}}}
{}"#,
        backends_yaml(&[&app])
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();

    let mut wrong = Vec::new();
    for target in [
        "/admin",
        "/admin/users",
        "/%61dmin",
        "/%61%64%6D%69%6E/users",
        "//admin",
        "/x/../admin",
        "/./admin",
        "/x/%2e%2e/admin",
        "/public/..//admin/",
        "/../admin",
        // Absolute form, as sent to a forward proxy.
        "http://www.test.com/%61dmin",
        "http://www.test.com//admin/x",
    ] {
        let reply = raw::get(listen, "www.test.com", target).await.unwrap();
        if reply.status != 403 || reply.header("x-backend").is_some() {
            wrong.push(format!("{target}: {} {:?}", reply.status, reply.text()));
        }
    }
    assert!(
        wrong.is_empty(),
        "deny rule bypassed:\n{}",
        wrong.join("\n")
    );

    for (target, upstream) in [
        ("/administrator?echo=1", "/administrator?echo=1"),
        ("/admin/../public?echo=1", "/public?echo=1"),
        ("/a//b/./c/?echo=1", "/a/b/c/?echo=1"),
        ("/%7Euser/%41?echo=1", "/~user/A?echo=1"),
    ] {
        let reply = raw::get(listen, "www.test.com", target).await.unwrap();
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
        let seen: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(seen["uri"], upstream, "{target}");
    }
}
