//! Pooled keep-alive connections to backends.
//!
//! Pools are keyed by their settings, not by backend, and live in a registry that
//! outlives compiled tables: a table swap, a renamed or retargeted backend keeps
//! its warm connections (hyper's pool is itself keyed by endpoint address).

use crate::http::body::RequestBody;
use crate::table::{BackendProtocol, BackendTimeouts};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::sync::Mutex;

pub type Upstream = Client<HttpConnector, RequestBody>;

#[derive(Default)]
pub struct Upstreams {
    clients: Mutex<HashMap<(BackendProtocol, u64, u64), Upstream>>,
}

impl Upstreams {
    pub fn get(&self, protocol: BackendProtocol, timeouts: &BackendTimeouts) -> Upstream {
        let key = (
            protocol,
            timeouts.connect.as_millis(),
            timeouts.pool_idle.as_millis(),
        );
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| new_client(protocol, timeouts))
            .clone()
    }
}

fn new_client(protocol: BackendProtocol, timeouts: &BackendTimeouts) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeouts.connect.to_std()));
    connector.enforce_http(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(timeouts.pool_idle.to_std());
    if protocol == BackendProtocol::H2c {
        builder.http2_only(true).timer(TokioTimer::new());
    }
    builder.build(connector)
}
