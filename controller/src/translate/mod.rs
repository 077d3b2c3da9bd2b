//! Pure translation: `fn(&Snapshot, &Options) -> Translation`. No I/O, no clock,
//! no randomness; golden-tested (`tests/golden/`).
//!
//! Each Ingress is translated on its own, oldest first, so a bad Ingress degrades
//! only itself: its problems become warnings on its status, and a host+path that an
//! older Ingress already claims is refused to the newer one.

mod annotations;
mod backends;
mod class;
mod client_auth;
mod routes;
mod tls;

pub use annotations::IngressAnnotations;
pub use class::is_ours;

use crate::snapshot::{ObjectKey, Snapshot};
use serde::Serialize;
use sluice_proxy::table::{HttpListener, Listener, ListenerTls, RoutingTable};
use std::net::SocketAddr;

/// What the controller was told on its command line that shapes the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// IngressClass name that is ours even without an IngressClass object.
    pub ingress_class: String,
    /// `spec.controller` of the IngressClasses that are ours.
    pub controller_name: String,
    pub http_bind: SocketAddr,
    /// The TLS listener, serving the same routes as `http_bind` with the
    /// certificates of `spec.tls`. None: plain HTTP only.
    pub https_bind: Option<SocketAddr>,
    /// The port `ssl-redirect` sends clients to.
    pub https_redirect_port: u16,
    /// Served when no Ingress rule or Ingress `defaultBackend` matches.
    pub default_backend_service: Option<ObjectKey>,
}

pub const DEFAULT_CONTROLLER_NAME: &str = "sluice.dev/ingress-controller";

impl Default for Options {
    fn default() -> Self {
        Self {
            ingress_class: "sluice".into(),
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
            http_bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
            // The binary's `--https-bind` defaults to 0.0.0.0:8443; golden cases
            // opt in, so that only TLS cases show the second listener.
            https_bind: None,
            https_redirect_port: 443,
            default_backend_service: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Translation {
    pub table: RoutingTable,
    /// One entry per Ingress that is ours, in key order.
    pub statuses: Vec<IngressStatus>,
    /// Problems that belong to no Ingress (e.g. the default backend flag).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressStatus {
    pub ingress: ObjectKey,
    /// True when at least one of its rules or its default backend is routed.
    pub served: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub fn translate(snapshot: &Snapshot, options: &Options) -> Translation {
    let mut ours: Vec<(&ObjectKey, &k8s_openapi::api::networking::v1::Ingress)> = snapshot
        .ingresses
        .iter()
        .filter(|(_, ing)| class::is_ours(ing, &snapshot.ingress_classes, options))
        .map(|(key, ing)| (key, &**ing))
        .collect();
    // Oldest first: on a conflict the older Ingress keeps the host+path.
    ours.sort_by(|(ka, a), (kb, b)| {
        let created =
            |i: &k8s_openapi::api::networking::v1::Ingress| i.metadata.creation_timestamp.clone();
        created(a).cmp(&created(b)).then_with(|| ka.cmp(kb))
    });

    // Sizes the route list and the claims map once instead of regrowing them.
    let paths = ours
        .iter()
        .filter_map(|(_, ing)| ing.spec.as_ref())
        .flat_map(|spec| spec.rules.iter().flatten())
        .filter_map(|rule| rule.http.as_ref())
        .map(|http| http.paths.len())
        .sum();

    let mut table = RoutingTable::default();
    let mut builder =
        routes::Builder::new(snapshot, &mut table, paths, options.https_bind.is_some());
    let mut statuses = Vec::with_capacity(ours.len());
    for (key, ingress) in ours {
        let (served, warnings) = builder.add_ingress(key, ingress);
        statuses.push(IngressStatus {
            ingress: key.clone(),
            served,
            warnings,
        });
    }
    let routes = builder.finish(options);
    let http = HttpListener {
        name: "http".into(),
        bind: options.http_bind,
        routes: routes.routes,
        default_backend: routes.default_backend,
        forwarded: Default::default(),
        timeouts: Default::default(),
        error_pages: Default::default(),
        tls: None,
        https_redirect_port: (options.https_redirect_port != 443)
            .then_some(options.https_redirect_port),
    };
    if let Some(bind) = options.https_bind {
        // The same routes over TLS; redirecting to HTTPS is for the plain side.
        let mut https = HttpListener {
            name: "https".into(),
            bind,
            tls: Some(ListenerTls {
                passthrough: routes.passthrough,
                host_client_auth: routes.host_client_auth,
                ..ListenerTls::default()
            }),
            ..http.clone()
        };
        for route in &mut https.routes {
            route.https_redirect = false;
        }
        table.listeners.push(Listener::Http(http));
        table.listeners.push(Listener::Https(https));
    } else {
        table.listeners.push(Listener::Http(http));
    }
    statuses.sort_by(|a, b| a.ingress.cmp(&b.ingress));
    Translation {
        table,
        statuses,
        warnings: routes.warnings,
    }
}
