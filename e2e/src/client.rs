//! HTTP clients towards the proxy and the replies the tests inspect.

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type HttpClient = Client<HttpConnector, Body>;

/// No single request in the suite should take longer; a hang fails instead.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP/1.1 keep-alive client (pooled connections).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 cleartext client using prior knowledge (no upgrade dance).
pub fn h2c_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub fn empty() -> Body {
    Empty::new().boxed_unsync()
}

/// A GET to `path` on `proxy`, with an explicit `Host` when given.
pub fn get(proxy: SocketAddr, host: Option<&str>, path: &str) -> Request<Body> {
    let mut builder = Request::get(format!("http://{proxy}{path}"));
    if let Some(host) = host {
        builder = builder.header(http::header::HOST, host);
    }
    builder.body(empty()).unwrap()
}

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Which test backend answered (`x-backend`), if any.
    pub fn backend(&self) -> Option<&str> {
        self.headers.get("x-backend").and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Who answered, in one word for routing-table assertions: the test backend's
    /// name on a 200 from one; for a redirect the status and `Location`
    /// (`302 https://a/b`); otherwise the status.
    pub fn outcome(&self) -> String {
        let header = |name| self.headers.get(name).and_then(|v| v.to_str().ok());
        match (self.status, self.backend()) {
            (StatusCode::OK, Some(backend)) => backend.to_owned(),
            (s, _) if s.is_redirection() => {
                format!("{} {}", s.as_u16(), header("location").unwrap_or("-"))
            }
            (s, _) => s.as_u16().to_string(),
        }
    }

    /// Values of `name` in an `?echo` body, in the order the backend received them.
    pub fn echoed(&self, name: &str) -> Vec<String> {
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo body ({e}): {}", self.text()));
        json["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|pair| pair[0].as_str() == Some(name))
            .filter_map(|pair| pair[1].as_str().map(str::to_owned))
            .collect()
    }

    /// The single value of `name` in an `?echo` body.
    pub fn echoed_one(&self, name: &str) -> Option<String> {
        let all = self.echoed(name);
        assert!(all.len() <= 1, "{name} received more than once: {all:?}");
        all.into_iter().next()
    }
}

impl Reply {
    /// The response with its whole body read.
    pub async fn read(response: http::Response<hyper::body::Incoming>) -> Result<Reply> {
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }
}

/// Sends `req` and reads the whole body, within `REQUEST_TIMEOUT`.
pub async fn send(client: &HttpClient, req: Request<Body>) -> Result<Reply> {
    let what = format!("{} {}", req.method(), req.uri());
    let exchange = async { Reply::read(client.request(req).await?).await };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{what}: no complete response within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| what)
}

/// Shorthand: GET and read the whole reply.
pub async fn fetch(
    client: &HttpClient,
    proxy: SocketAddr,
    host: Option<&str>,
    path: &str,
) -> Result<Reply> {
    send(client, get(proxy, host, path)).await
}

/// A request with any method, an explicit `Host` when given, extra headers (sent
/// in this order, repeats allowed) and a body.
pub fn request(
    method: http::Method,
    proxy: SocketAddr,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"));
    if let Some(host) = host {
        builder = builder.header(http::header::HOST, host);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(http_body_util::Full::new(body.into()).boxed_unsync())
        .unwrap()
}

/// An HTTP/1.1 keep-alive client whose connections leave from `source`. On Linux
/// any 127.0.0.0/8 address works on the loopback interface without set-up, so
/// tests can show two distinct clients to the proxy.
pub fn client_from(source: std::net::IpAddr) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends each request and compares `Reply::outcome` (backend name, status, or
/// status and `Location`) with the expectation; reports every mismatch at once.
pub async fn assert_outcomes(client: &HttpClient, cases: Vec<(Request<Body>, &str)>) {
    let mut wrong = Vec::new();
    for (req, expected) in cases {
        let what = describe(&req);
        let got = send(client, req).await.unwrap().outcome();
        if got != expected {
            wrong.push(format!("{what}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}

fn describe(req: &Request<Body>) -> String {
    let headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
        .collect();
    format!("{} {} [{}]", req.method(), req.uri(), headers.join(", "))
}
