//! `sluice-proxy demo`: two small backends on loopback and a table that routes to
//! them, so a first-time user sees host and path routing and weights at work.

use crate::table::{
    Action, Backend, Condition, Endpoint, FixedBody, HeaderEdits, HeaderMatch, HeaderNameText,
    HeaderValueText, HttpListener, Listener, PathMatch, Redirect, RedirectCode, Respond,
    ResponseStatus, Route, RoutingTable, SourceRef, ValueTest, text_html,
};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tracing::debug;

/// Starts a demo backend that names itself and echoes what it received.
pub async fn start_backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc =
                    service_fn(move |req| async move { Ok::<_, Infallible>(describe(name, &req)) });
                if let Err(e) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    debug!("demo backend connection ended: {e}");
                }
            });
        }
    });
    Ok(addr)
}

fn describe(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let body = format!(
        "hello from {name}\n{} {}\nhost: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\n",
        req.method(),
        req.uri(),
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The demo table: `/` balanced 3:1 over both backends, `/blue` and host
/// `blue.localhost` to the first only, exact `/green` to the second only; `/old…`
/// redirects to `/green…`, `/maintenance` is a fixed 503 page, and requests with
/// an `X-Canary` header go to green and say so in a response header.
pub fn table(
    listen: SocketAddr,
    blue: SocketAddr,
    green: SocketAddr,
) -> Result<RoutingTable, String> {
    let source = |name: &str| {
        Some(SourceRef {
            kind: "Demo".into(),
            namespace: String::new(),
            name: name.into(),
        })
    };
    let backend = |endpoints: Vec<Endpoint>| Backend {
        source: source("demo"),
        endpoints,
        ..Default::default()
    };
    let ep = |address: SocketAddr, weight| Endpoint::new(address, weight);
    let route = |name: &str, hosts: &[&str], paths: Vec<PathMatch>, backend: &str| Route {
        source: source(name),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        paths,
        ..Route::forward(name, backend)
    };
    Ok(RoutingTable {
        listeners: vec![Listener::Http(HttpListener {
            name: "demo".into(),
            bind: listen,
            routes: vec![
                route("blue-host", &["blue.localhost"], vec![], "blue"),
                route(
                    "blue-path",
                    &[],
                    vec![PathMatch::Prefix("/blue".into())],
                    "blue",
                ),
                route(
                    "green-exact",
                    &[],
                    vec![PathMatch::Exact("/green".into())],
                    "green",
                ),
                // HAProxy-style rules: first match, tried before Ingress prefixes.
                Route {
                    source: source("old-path"),
                    paths: vec![PathMatch::BeginsWith("/old".into())],
                    ..Route::new(
                        "old-path",
                        Action::Redirect(Redirect {
                            code: RedirectCode::new(301)?,
                            replace_prefix: Some("/green".into()),
                            ..Redirect::default()
                        }),
                    )
                },
                Route {
                    source: source("maintenance"),
                    paths: vec![PathMatch::Exact("/maintenance".into())],
                    ..Route::new(
                        "maintenance",
                        Action::Respond(Respond {
                            status: ResponseStatus::new(503)?,
                            content_type: text_html(),
                            body: FixedBody::new("<h1>Back soon</h1>\n")?,
                        }),
                    )
                },
                Route {
                    source: source("canary"),
                    conditions: vec![Condition::Header(HeaderMatch {
                        name: HeaderNameText::new("x-canary")?,
                        test: ValueTest::Present,
                        ignore_case: false,
                    })],
                    response_headers: HeaderEdits {
                        set: [(
                            HeaderNameText::new("x-canary")?,
                            HeaderValueText::new("served by green")?,
                        )]
                        .into(),
                        ..HeaderEdits::default()
                    },
                    ..Route::forward("canary", "green")
                },
                route("everything-else", &[], vec![], "both"),
            ],
            default_backend: None,
            forwarded: Default::default(),
            timeouts: Default::default(),
            error_pages: Default::default(),
            tls: None,
            https_redirect_port: None,
        })],
        backends: [
            ("blue".to_owned(), backend(vec![ep(blue, 1)])),
            ("green".to_owned(), backend(vec![ep(green, 1)])),
            ("both".to_owned(), backend(vec![ep(blue, 3), ep(green, 1)])),
        ]
        .into_iter()
        .collect(),
        certificates: Default::default(),
    })
}
