//! `tcp` listeners compiled: the backend by index, the source filter, the
//! PROXY protocol trust list and the idle rules. A listener whose backend
//! cannot take raw connections (undefined) closes its connections, warned.

use super::{BackendIx, SourceFilter};
use crate::table::{self, Balance, IpNet, RoutingTable};
use crate::tcp::ConnTarget;
use crate::tcp::counters::ListenerCounters;
use crate::tcp::relay::Idle;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct TcpListener {
    /// `backend: None` when it is not defined: connections are closed.
    pub target: ConnTarget,
    pub access: SourceFilter,
    pub max_conn: Option<u32>,
    /// Peers whose PROXY header is believed; `None`: no header is read.
    pub accept_proxy: Option<Box<[IpNet]>>,
    pub proxy_header_timeout: Duration,
    pub idle: Idle,
    pub counters: Arc<ListenerCounters>,
}

impl TcpListener {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.accept_proxy
            .as_ref()
            .is_some_and(|nets| nets.iter().any(|n| n.contains(&peer)))
    }
}

pub(super) fn compile_tcp(
    listener: &table::TcpListener,
    table: &RoutingTable,
    backend_ix: &BTreeMap<&str, BackendIx>,
    counters: Arc<ListenerCounters>,
    warnings: &mut Vec<String>,
) -> TcpListener {
    let name = &listener.name;
    let at = match &listener.source {
        Some(src) => format!("listener `{name}` ({src})"),
        None => format!("listener `{name}`"),
    };
    let mut max_conn = listener.max_conn;
    let mut accept_proxy = listener
        .accept_proxy
        .as_ref()
        .map(|a| a.trusted.iter().map(IpNet::trunc).collect::<Box<[_]>>());
    let mut timeouts = listener.timeouts;
    for (field, message) in table::check::tcp_listener_problems(table, listener) {
        match field {
            "backend" => {
                warnings.push(format!("{at}: {message}; {}", consequence(table, listener)))
            }
            "max_conn" => {
                max_conn = None;
                warnings.push(format!("{at} {field}: {message}; no limit is applied"));
            }
            "accept_proxy.trusted" => {
                accept_proxy = Some(Box::default());
                warnings.push(format!("{at} {field}: {message}"));
            }
            _ => {
                timeouts = table::TcpTimeouts::default();
                warnings.push(format!(
                    "{at} {field}: {message}; the default timeouts are used"
                ));
            }
        }
    }
    let backend = backend_ix.get(listener.backend.as_str()).copied();
    let balance = table
        .backends
        .get(&listener.backend)
        .map(|b| b.balance_for(true));
    let idle = match timeouts.tunnel {
        Some(limit) => Idle::Either(limit.to_std()),
        None => Idle::PerSide {
            client: timeouts.client_idle.to_std(),
            server: timeouts.server_idle.to_std(),
        },
    };
    TcpListener {
        target: ConnTarget {
            route: Arc::from(name.as_str()),
            source: listener.source.clone(),
            backend,
            hash_source: matches!(balance, Some(Balance::Source(_))),
        },
        access: SourceFilter::new(listener.allow_sources.as_deref(), &listener.deny_sources),
        max_conn,
        accept_proxy,
        proxy_header_timeout: timeouts.proxy_header.to_std(),
        idle,
        counters,
    }
}

fn consequence(table: &RoutingTable, listener: &table::TcpListener) -> &'static str {
    if table.backends.contains_key(&listener.backend) {
        "its connections are balanced round robin"
    } else {
        "its connections are closed"
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{ListenerKind, compile};
    use crate::runtime::Runtime;
    use crate::table::{check, from_yaml_str};
    use crate::tcp::relay::Idle;
    use std::time::Duration;

    const TABLE: &str = "
listeners:
  - tcp:
      name: pg
      bind: 127.0.0.1:1
      backend: pg
      max_conn: 10
      deny_sources: [10.1.0.0/16]
      allow_sources: [10.0.0.0/8]
      accept_proxy: {trusted: [192.168.0.0/24]}
      timeouts: {client_idle: 10s, server_idle: 20s}
  - tcp: {name: redis, bind: 127.0.0.1:2, backend: redis, timeouts: {tunnel: 1h}}
  - tcp: {name: gone, bind: 127.0.0.1:3, backend: nope, max_conn: 0}
  - http:
      name: web
      bind: 127.0.0.1:4
      routes: [{name: all, action: {forward: web}}]
backends:
  pg: {endpoints: [{address: 127.0.0.1:5}]}
  redis: {balance: {source: {}}, proxy_protocol: v2}
  web: {proxy_protocol: v1, endpoints: [{address: 127.0.0.1:6}]}
";

    #[test]
    fn tcp_listeners_compile_and_backends_default_to_least_conn() {
        let t = compile(from_yaml_str(TABLE).unwrap(), &Runtime::default()).unwrap();
        let tcp = |i: usize| match &t.listeners[i].kind {
            ListenerKind::Tcp(tcp) => tcp,
            _ => panic!("listener {i} is not tcp"),
        };
        let pg = tcp(0);
        assert_eq!(pg.max_conn, Some(10));
        assert!(pg.trusts("192.168.0.9".parse().unwrap()));
        assert!(!pg.trusts("10.0.0.1".parse().unwrap()));
        assert!(pg.access.admits("10.2.0.1".parse().unwrap()));
        assert!(!pg.access.admits("10.1.0.1".parse().unwrap()), "deny first");
        assert!(!pg.access.admits("11.0.0.1".parse().unwrap()));
        assert_eq!(
            pg.idle,
            Idle::PerSide {
                client: Duration::from_secs(10),
                server: Duration::from_secs(20)
            }
        );
        assert_eq!(tcp(1).idle, Idle::Either(Duration::from_secs(3600)));
        assert!(
            tcp(1).target.hash_source,
            "source hashing applies to connections"
        );
        assert!(tcp(2).target.backend.is_none());
        assert_eq!(
            tcp(2).max_conn,
            None,
            "an unusable limit is dropped, warned"
        );

        let algorithm = |id: &str| {
            let b = t.backends.iter().find(|b| &*b.id == id).unwrap();
            b.status().algorithm
        };
        assert_eq!(algorithm("pg"), "least_conn", "tcp default");
        assert_eq!(algorithm("redis"), "source", "an explicit choice stays");
        assert_eq!(algorithm("web"), "round_robin", "HTTP default");

        let warned = |needle: &str| t.warnings.iter().any(|w| w.contains(needle));
        assert!(
            warned("listener `gone`: backend `nope` is not defined; its connections are closed"),
            "{:?}",
            t.warnings
        );
        assert!(
            warned("listener `gone` max_conn: 0 would admit no connection"),
            "{:?}",
            t.warnings
        );
        assert!(
            warned("backend `web` proxy_protocol: only `tcp` and `tls_passthrough`"),
            "{:?}",
            t.warnings
        );
        assert!(
            !warned("backend `redis` proxy_protocol"),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn check_refuses_what_cannot_work() {
        let table = from_yaml_str(
            "
listeners:
  - tcp: {name: a, bind: 127.0.0.1:1, backend: nope}
  - tcp: {name: b, bind: 127.0.0.1:2, backend: by_uri, max_conn: 0, accept_proxy: {trusted: []}, timeouts: {tunnel: 0s}}
backends:
  by_uri: {balance: {uri: {}}}
",
        )
        .unwrap();
        let errors = check(&table).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "listeners[0].tcp.backend",
                "listeners[1].tcp.backend",
                "listeners[1].tcp.max_conn",
                "listeners[1].tcp.accept_proxy.trusted",
                "listeners[1].tcp.timeouts.tunnel",
            ],
            "{errors:?}"
        );
    }
}
