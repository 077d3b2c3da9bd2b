//! The route tester: `sluice-proxy route` and the admin `/debug/route` say which
//! route a request gets and why the others did not answer, and agree with what the
//! running proxy actually does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use sluice_e2e::client::{self, request, send};
use sluice_e2e::config_file::backends_yaml;
use sluice_e2e::process::route;
use sluice_e2e::{Backend, ProxyProcess, free_addr};
use std::net::SocketAddr;

fn table(listen: SocketAddr, backends: &str) -> String {
    format!(
        r#"
listeners:
  - http:
      name: web
      bind: {listen}
      default_backend: app
      routes:
        - name: blocklist
          priority: 100
          match: [{{source: [10.0.0.0/8]}}]
          action: {{deny: {{}}}}
        - name: iphone
          match: [{{header: {{name: User-Agent, contains: iphone, ignore_case: true}}}}]
          action: {{redirect: {{prefix: "http://3g-iphone.test.com"}}}}
        - name: static
          paths: [{{begins_with: /static}}, {{ends_with: .css}}]
          action: {{forward: static}}
        - name: writes
          hosts: [www.test.com]
          match: [{{not: {{method: [GET, HEAD]}}}}]
          action: {{forward: writes}}
{backends}"#
    )
}

fn names() -> String {
    "backends:\n  app: {endpoints: []}\n  static: {endpoints: []}\n  writes: {endpoints: []}\n"
        .to_owned()
}

#[test]
fn the_cli_names_the_route_and_why_the_others_did_not_answer() {
    let yaml = table(free_addr().unwrap(), &names());
    let out = route(
        &yaml,
        &[
            "--host",
            "WWW.test.com:8080",
            "--path",
            "/a/../news?id=7",
            "--header",
            "User-Agent: Mozilla (iPhone)",
        ],
    )
    .unwrap();
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let text = out.stdout;
    assert!(
        text.contains("request: GET /news?id=7 host \"www.test.com\""),
        "{text}"
    );
    assert!(text.contains("route:   `iphone`"), "{text}");
    assert!(
        text.contains("outcome: 302 redirect to http://3g-iphone.test.com/news?id=7"),
        "{text}"
    );
    assert!(
        text.contains("blocklist [priority 100]: condition 1 does not hold"),
        "{text}"
    );
    assert!(text.contains("=> iphone: answers"), "{text}");
    assert!(
        text.contains("static: path \"/news\" matches none of its paths"),
        "{text}"
    );
    // `writes` matches host and path but its condition fails for a GET.
    assert!(text.contains("writes: condition 1 does not hold"), "{text}");
}

#[test]
fn the_cli_reports_shadowed_routes_and_json() {
    let yaml = table(free_addr().unwrap(), &names());
    let out = route(
        &yaml,
        &[
            "--host",
            "www.test.com",
            "--path",
            "/static/site.css",
            "--method",
            "POST",
            "--src",
            "10.1.2.3",
            "--json",
        ],
    )
    .unwrap();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["route"], "blocklist");
    assert_eq!(json["outcome"], "403 denied");
    assert_eq!(json["client"], "10.1.2.3");
    let verdicts: Vec<(String, String)> = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(verdicts[0], ("blocklist".into(), "answers".into()));
    for shadowed in ["static", "writes"] {
        let verdict = &verdicts.iter().find(|(n, _)| n == shadowed).unwrap().1;
        assert!(
            verdict.starts_with("matches, but route `blocklist` comes first"),
            "{shadowed}: {verdict}"
        );
    }
}

#[test]
fn the_cli_exit_code_says_whether_a_route_answers() {
    let listen = free_addr().unwrap();
    let no_default = table(listen, &names()).replace("      default_backend: app\n", "");
    let out = route(&no_default, &["--host", "other.org", "--path", "/x"]).unwrap();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stdout.contains("outcome: 404"), "{}", out.stdout);
    let out = route(&no_default, &["--host", "a", "--header", "no colon"]).unwrap();
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("not `Name: value`"), "{}", out.stderr);
    let out = route(&no_default, &["--host", "a", "--listener", "nope"]).unwrap();
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("no HTTP listener named `nope`"),
        "{}",
        out.stderr
    );
}

/// `/debug/route` on a running proxy names, for each request, the route whose
/// backend then answers that request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_agrees_with_the_traffic() {
    let (app, stat, writes) = (
        Backend::start("app").await,
        Backend::start("static").await,
        Backend::start("writes").await,
    );
    let listen = free_addr().unwrap();
    let yaml = table(listen, &backends_yaml(&[&app, &stat, &writes]));
    let proxy = ProxyProcess::start(&yaml).await.unwrap();
    let client = client::client();
    let cases = [
        (
            Method::GET,
            "www.test.com",
            "/static/x.js",
            "static",
            "static",
        ),
        (Method::GET, "www.test.com", "/site.css", "static", "static"),
        (Method::POST, "www.test.com", "/cart", "writes", "writes"),
        (Method::GET, "www.test.com", "/cart", "default", "app"),
        (Method::POST, "blog.test.com", "/cart", "default", "app"),
    ];
    for (method, host, path, route_name, backend) in cases {
        let query = format!("/debug/route?host={host}&path={path}&method={method}");
        let (status, body) = proxy.admin_get(&query).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["route"], route_name, "{method} {host}{path}: {body}");
        let reply = send(
            &client,
            request(method.clone(), listen, Some(host), path, &[], ""),
        )
        .await
        .unwrap();
        assert_eq!(
            reply.backend(),
            Some(backend),
            "{method} {host}{path}: traffic disagrees with {body}"
        );
    }
    let (status, body) = proxy.admin_get("/debug/route?path=/x").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("give `host=`"), "{body}");
}
