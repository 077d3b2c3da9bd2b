//! TLS passthrough routes compiled into an [`SniRoutes`] router: for
//! `tls_passthrough` listeners and for the `tls.passthrough` of `https`
//! listeners. A bad route degrades alone: an invalid or repeated host is left
//! out, a missing backend closes that route's connections, a backend balanced
//! by an HTTP-only key balances these connections round robin.

use super::BackendIx;
use crate::table::{self, Balance, RoutingTable, SniRoute, SourceRef};
use crate::tcp::{ConnTarget, SniRoutes};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct PassthroughListener {
    pub routes: SniRoutes,
    pub timeouts: table::PassthroughTimeouts,
}

pub(super) fn compile_passthrough(
    listener: &table::PassthroughListener,
    table: &RoutingTable,
    backend_ix: &BTreeMap<&str, BackendIx>,
    warnings: &mut Vec<String>,
) -> PassthroughListener {
    let routes = compile_sni_routes(
        &listener.name,
        &listener.routes,
        listener.default_backend.as_deref(),
        table,
        backend_ix,
        warnings,
    );
    if routes.is_empty() {
        warnings.push(format!(
            "listener `{}` has no routes and no default backend; it closes every connection",
            listener.name
        ));
    }
    PassthroughListener {
        routes,
        timeouts: listener.timeouts,
    }
}

pub(super) fn compile_sni_routes(
    listener: &str,
    routes: &[SniRoute],
    default_backend: Option<&str>,
    table: &RoutingTable,
    backend_ix: &BTreeMap<&str, BackendIx>,
    warnings: &mut Vec<String>,
) -> SniRoutes {
    let mut router = SniRoutes::default();
    for route in routes {
        let mut warn = |problem: String| {
            warnings.push(describe(
                listener,
                &route.name,
                route.source.as_ref(),
                &problem,
            ));
        };
        let target = target(
            &route.name,
            route.source.as_ref(),
            &route.backend,
            table,
            backend_ix,
            &mut warn,
        );
        for problem in router.add(&route.hosts, target) {
            warn(problem);
        }
    }
    if let Some(id) = default_backend {
        let mut warn =
            |problem: String| warnings.push(describe(listener, "default", None, &problem));
        router.set_default(target("default", None, id, table, backend_ix, &mut warn));
    }
    router
}

fn target(
    route: &str,
    source: Option<&SourceRef>,
    id: &str,
    table: &RoutingTable,
    backend_ix: &BTreeMap<&str, BackendIx>,
    warn: &mut impl FnMut(String),
) -> ConnTarget {
    let backend = backend_ix.get(id).copied();
    let balance = table.backends.get(id).map(|b| b.balance_for(true));
    match balance {
        None => warn(format!(
            "backend `{id}` is not defined; its connections are closed"
        )),
        Some(ref b) if b.needs_http() => warn(format!(
            "backend `{id}` balances by `{}`, which needs an HTTP request; these connections are balanced round robin",
            b.name()
        )),
        Some(_) => {}
    }
    ConnTarget {
        route: Arc::from(route),
        source: source.cloned(),
        backend,
        hash_source: matches!(balance, Some(Balance::Source(_))),
    }
}

fn describe(listener: &str, route: &str, source: Option<&SourceRef>, problem: &str) -> String {
    match source {
        Some(src) => format!("listener `{listener}` route `{route}` ({src}): {problem}"),
        None => format!("listener `{listener}` route `{route}`: {problem}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{ListenerKind, compile};
    use crate::runtime::Runtime;
    use crate::table::from_yaml_str;

    #[test]
    fn routes_by_sni_and_bad_routes_degrade_alone() {
        let yaml = "
listeners:
  - tls_passthrough:
      name: pg
      bind: 127.0.0.1:1
      default_backend: fallback
      routes:
        - {name: a, source: {kind: Ingress, namespace: db, name: a}, hosts: [a.test, '*.a.test'], backend: a}
        - {name: dup, hosts: [A.test, b.test], backend: by_uri}
        - {name: gone, hosts: [c.test], backend: nope}
  - https:
      name: web
      bind: 127.0.0.1:2
      tls: {passthrough: [{name: p, hosts: [p.test], backend: a}]}
backends:
  a: {balance: {source: {}}}
  by_uri: {balance: {uri: {}}}
  fallback: {}
";
        let t = compile(from_yaml_str(yaml).unwrap(), &Runtime::default()).unwrap();
        let ListenerKind::Passthrough(p) = &t.listeners[0].kind else {
            panic!("not passthrough");
        };
        let route = |sni: Option<&str>| p.routes.lookup(sni).map(|t| &*t.route);
        assert_eq!(route(Some("a.test")), Some("a"));
        assert_eq!(route(Some("x.a.test")), Some("a"));
        assert_eq!(route(Some("b.test")), Some("dup"));
        assert_eq!(route(Some("c.test")), Some("gone"));
        assert_eq!(route(Some("d.test")), Some("default"));
        assert_eq!(route(None), Some("default"));
        let a = p.routes.lookup(Some("a.test")).unwrap();
        assert!(a.hash_source && a.backend.is_some());
        let gone = p.routes.lookup(Some("c.test")).unwrap();
        assert!(gone.backend.is_none());
        let dup = p.routes.lookup(Some("b.test")).unwrap();
        assert!(!dup.hash_source && dup.backend.is_some());

        let warned = |needle: &str| t.warnings.iter().any(|w| w.contains(needle));
        assert!(
            warned("listener `pg` route `dup`: host \"A.test\" is routed by an earlier route"),
            "{:?}",
            t.warnings
        );
        assert!(
            warned("route `dup`: backend `by_uri` balances by `uri`"),
            "{:?}",
            t.warnings
        );
        assert!(
            warned("route `gone`: backend `nope` is not defined"),
            "{:?}",
            t.warnings
        );

        let ListenerKind::Http(web) = &t.listeners[1].kind else {
            panic!("not http");
        };
        let split = web.passthrough.as_ref().unwrap();
        assert_eq!(split.lookup(Some("p.test")).map(|t| &*t.route), Some("p"));
        assert!(
            split.lookup(Some("other.test")).is_none(),
            "others are terminated"
        );
    }
}
