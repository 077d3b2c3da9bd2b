//! Benchmarks live in benches/; see README there. This library holds the tables
//! they share with the tests of benchmark assumptions (`tests/`).

/// The `route_lookup` table: N hosts × 10 paths (3 exact, 4 prefix, 2 suffix,
/// 1 regex) plus a header-conditioned route per host and a host-less catch-all.
pub mod route_lookup {
    use http::{HeaderMap, HeaderValue};
    use sluice_proxy::table::{
        Backend, Condition, Endpoint, HeaderMatch, HeaderNameText, HttpListener, Listener,
        MatchPattern, PathMatch, Route, RoutingTable, ValueTest,
    };

    pub fn host(i: usize) -> String {
        format!("shop-{i}.team-{}.example.com", i % 97)
    }

    fn routes_for(i: usize) -> Vec<Route> {
        let h = host(i);
        let backend = format!("b{}", i % 50);
        let route = |kind: &str, paths: Vec<PathMatch>| Route {
            hosts: vec![h.clone()],
            paths,
            ..Route::forward(format!("{h}-{kind}"), backend.clone())
        };
        let mut routes = vec![Route {
            conditions: vec![Condition::Header(HeaderMatch {
                name: HeaderNameText::new("user-agent").unwrap_or_else(|e| panic!("{e}")),
                test: ValueTest::Contains("iphone".into()),
                ignore_case: true,
            })],
            ..route("mobile", vec![PathMatch::Prefix("/m".into())])
        }];
        for j in 0..3 {
            routes.push(route(
                &format!("exact{j}"),
                vec![PathMatch::Exact(format!("/healthz/{j}"))],
            ));
        }
        for j in 0..4 {
            routes.push(route(
                &format!("prefix{j}"),
                vec![PathMatch::Prefix(format!("/api/v{j}/users"))],
            ));
        }
        for ext in [".css", ".js"] {
            routes.push(route(ext, vec![PathMatch::EndsWith(ext.into())]));
        }
        let pattern = MatchPattern::new(&format!("/item-{i}/[0-9]+/detail"))
            .unwrap_or_else(|e| panic!("{e}"));
        routes.push(route("regex", vec![PathMatch::Regex(pattern)]));
        routes
    }

    pub fn table(hosts: usize) -> RoutingTable {
        let mut routes: Vec<Route> = (0..hosts).flat_map(routes_for).collect();
        routes.push(Route::forward("catch-all", "b0"));
        RoutingTable {
            listeners: vec![Listener::Http(HttpListener {
                name: "web".into(),
                bind: "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}")),
                routes,
                default_backend: None,
                forwarded: Default::default(),
                timeouts: Default::default(),
                error_pages: Default::default(),
                tls: None,
                https_redirect_port: None,
            })],
            backends: (0..50)
                .map(|b| {
                    let endpoint =
                        Endpoint::new(std::net::SocketAddr::from(([10, 0, 0, b + 1], 8080)), 1);
                    let backend = Backend {
                        endpoints: vec![endpoint],
                        ..Backend::default()
                    };
                    (format!("b{b}"), backend)
                })
                .collect(),
            certificates: Default::default(),
        }
    }

    pub struct Probe {
        pub name: &'static str,
        pub host: String,
        pub path: String,
        pub headers: HeaderMap,
        /// The route expected to answer, so a broken table cannot bench a miss.
        pub expect: String,
    }

    pub fn probes(hosts: usize) -> Vec<Probe> {
        // The last host, so a linear structure would show its worst case.
        let i = hosts - 1;
        let h = host(i);
        let mut mobile = HeaderMap::new();
        mobile.insert(
            "user-agent",
            HeaderValue::from_static("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"),
        );
        let probe = |name, path: String, headers: HeaderMap, expect: String| Probe {
            name,
            host: h.clone(),
            path,
            headers,
            expect,
        };
        vec![
            probe(
                "exact",
                "/healthz/2".into(),
                HeaderMap::new(),
                format!("{h}-exact2"),
            ),
            probe(
                "suffix",
                "/assets/app.js".into(),
                HeaderMap::new(),
                format!("{h}-.js"),
            ),
            probe(
                "regex",
                format!("/item-{i}/12345/detail"),
                HeaderMap::new(),
                format!("{h}-regex"),
            ),
            probe(
                "prefix",
                "/api/v3/users/42/orders".into(),
                HeaderMap::new(),
                format!("{h}-prefix3"),
            ),
            probe(
                "conditioned",
                "/m/home".into(),
                mobile,
                format!("{h}-mobile"),
            ),
            Probe {
                name: "miss_host",
                host: "unknown.example.org".into(),
                path: "/api/v3/users".into(),
                headers: HeaderMap::new(),
                expect: "catch-all".into(),
            },
        ]
    }
}
