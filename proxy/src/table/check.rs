//! Whole-table consistency rules that a single field cannot check while being read:
//! a route naming a backend that does not exist, a redirect built in code with a
//! contradictory combination. A table file breaking them is refused (`check` fails,
//! a reload keeps the last good table); the compiler still degrades such a route
//! alone for tables that reach it by other ways.

use super::{
    Action, Condition, HttpListener, Listener, PathMatch, PathRewrite, RoutingTable, SniRoute,
};

/// One problem, located by field path (`listeners[0].http.routes[2].action.forward`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TableError {
    pub path: String,
    pub message: String,
}

fn check_tls(
    table: &RoutingTable,
    tls: &crate::table::ListenerTls,
    path: &str,
    errors: &mut Vec<TableError>,
) {
    if let Some(id) = &tls.default_certificate
        && !table.certificates.contains_key(id)
    {
        errors.push(TableError {
            path: format!("{path}.default_certificate"),
            message: format!("no certificate `{id}` in `certificates`"),
        });
    }
    for message in crate::tls::server_config::suite_problems(&tls.cipher_suites) {
        errors.push(TableError {
            path: format!("{path}.cipher_suites"),
            message,
        });
    }
    if tls.alpn.iter().any(|p| p.is_empty() || p.len() > 255) {
        errors.push(TableError {
            path: format!("{path}.alpn"),
            message: "protocol names are 1 to 255 bytes".into(),
        });
    }
    if let Some(auth) = &tls.client_auth {
        check_client_auth(auth, &format!("{path}.client_auth"), errors);
    }
    for (host, auth) in &tls.host_client_auth {
        let at = format!("{path}.host_client_auth.{host}");
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if let Err(message) = super::validate_host(&name) {
            errors.push(TableError {
                path: at.clone(),
                message,
            });
        }
        check_client_auth(auth, &at, errors);
    }
    check_sni_routes(
        table,
        &tls.passthrough,
        &format!("{path}.passthrough"),
        errors,
    );
}

/// Routes of raw TLS by SNI: real backends that can balance connections, valid
/// host names, each host routed once.
fn check_sni_routes(
    table: &RoutingTable,
    routes: &[SniRoute],
    at: &str,
    errors: &mut Vec<TableError>,
) {
    let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for (ri, route) in routes.iter().enumerate() {
        let at = format!("{at}[{ri}]");
        if let Some(message) = connection_backend_problem(table, &route.backend) {
            errors.push(TableError {
                path: format!("{at}.backend"),
                message: format!("route `{}`: {message}", route.name),
            });
        }
        if route.hosts.is_empty() {
            errors.push(TableError {
                path: format!("{at}.hosts"),
                message: format!(
                    "route `{}` has no hosts, so it never matches (use `default_backend`)",
                    route.name
                ),
            });
        }
        for (hi, host) in route.hosts.iter().enumerate() {
            let host = host.to_ascii_lowercase();
            let problem = match super::validate_host(&host) {
                Err(e) => Some(e),
                Ok(()) => seen
                    .insert(host.clone(), &route.name)
                    .map(|first| format!("host {host:?} is already routed by route `{first}`")),
            };
            if let Some(message) = problem {
                errors.push(TableError {
                    path: format!("{at}.hosts[{hi}]"),
                    message,
                });
            }
        }
    }
}

/// Why `id` cannot take raw connections: undefined, or balanced by something
/// only an HTTP request has.
fn connection_backend_problem(table: &RoutingTable, id: &str) -> Option<String> {
    let Some(backend) = table.backends.get(id) else {
        return Some(format!("backend `{id}` is not defined"));
    };
    let balance = backend.balance.as_ref()?;
    balance.needs_http().then(|| {
        format!(
            "backend `{id}` balances by `{}`, which reads HTTP requests; raw \
             connections have none (use least_conn, round_robin, source, ...)",
            balance.name()
        )
    })
}

fn check_passthrough(
    table: &RoutingTable,
    listener: &super::PassthroughListener,
    at: &str,
    errors: &mut Vec<TableError>,
) {
    if let Some(id) = &listener.default_backend
        && let Some(message) = connection_backend_problem(table, id)
    {
        errors.push(TableError {
            path: format!("{at}.default_backend"),
            message,
        });
    }
    check_sni_routes(table, &listener.routes, &format!("{at}.routes"), errors);
}

fn check_tcp(
    table: &RoutingTable,
    listener: &crate::table::TcpListener,
    at: &str,
    errors: &mut Vec<TableError>,
) {
    for (field, message) in tcp_listener_problems(table, listener) {
        errors.push(TableError {
            path: format!("{at}.{field}"),
            message,
        });
    }
}

/// What cannot work in a `tcp` listener, as (field, message); the compiler
/// warns about the same and closes that listener's connections.
pub(crate) fn tcp_listener_problems(
    table: &RoutingTable,
    listener: &crate::table::TcpListener,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(message) = connection_backend_problem(table, &listener.backend) {
        out.push(("backend", message));
    }
    if listener.max_conn == Some(0) {
        out.push((
            "max_conn",
            "0 would admit no connection; omit it for no limit".into(),
        ));
    }
    if let Some(accept) = &listener.accept_proxy
        && accept.trusted.is_empty()
    {
        out.push((
            "accept_proxy.trusted",
            "trusts no address, so every connection would be closed".into(),
        ));
    }
    let t = &listener.timeouts;
    for (field, d) in [
        ("timeouts.client_idle", Some(t.client_idle)),
        ("timeouts.server_idle", Some(t.server_idle)),
        ("timeouts.tunnel", t.tunnel),
        ("timeouts.proxy_header", Some(t.proxy_header)),
    ] {
        if d.is_some_and(|d| d.as_millis() == 0) {
            out.push((field, "must be longer than 0".into()));
        }
    }
    out
}

fn check_client_auth(auth: &crate::table::ClientAuth, at: &str, errors: &mut Vec<TableError>) {
    for (field, message) in crate::tls::client_auth::problems(auth) {
        errors.push(TableError {
            path: format!("{at}.{field}"),
            message,
        });
    }
}

/// All problems of `table`, in document order.
pub fn check(table: &RoutingTable) -> Result<(), Vec<TableError>> {
    let mut errors = Vec::new();
    for (li, listener) in table.listeners.iter().enumerate() {
        match listener {
            Listener::Http(http) => {
                let path = format!("listeners[{li}].http");
                check_http(table, http, &path, &mut errors);
                if http.tls.is_some() {
                    errors.push(TableError {
                        path: format!("{path}.tls"),
                        message: "TLS settings need an `https` listener".into(),
                    });
                }
                if http.https_redirect_port == Some(0) {
                    errors.push(TableError {
                        path: format!("{path}.https_redirect_port"),
                        message: "port 0 cannot be redirected to".into(),
                    });
                }
            }
            Listener::Https(http) => {
                let path = format!("listeners[{li}].https");
                check_http(table, http, &path, &mut errors);
                if let Some(tls) = &http.tls {
                    check_tls(table, tls, &format!("{path}.tls"), &mut errors);
                }
                if http.https_redirect_port.is_some() {
                    errors.push(TableError {
                        path: format!("{path}.https_redirect_port"),
                        message: "only `http` listeners redirect to https".into(),
                    });
                }
            }
            Listener::TlsPassthrough(listener) => {
                let path = format!("listeners[{li}].tls_passthrough");
                check_passthrough(table, listener, &path, &mut errors);
            }
            Listener::Tcp(listener) => {
                let path = format!("listeners[{li}].tcp");
                check_tcp(table, listener, &path, &mut errors);
            }
        }
    }
    for (id, backend) in &table.backends {
        let tls = backend.tls_problems(&table.certificates);
        for (field, message) in backend.problems().into_iter().chain(tls) {
            errors.push(TableError {
                path: format!("backends.{id}.{field}"),
                message,
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_http(table: &RoutingTable, http: &HttpListener, at: &str, errors: &mut Vec<TableError>) {
    let mut push = |path: String, message: String| errors.push(TableError { path, message });
    if let Some(id) = &http.default_backend
        && !table.backends.contains_key(id)
    {
        push(
            format!("{at}.default_backend"),
            format!("backend `{id}` is not defined"),
        );
    }
    for (ri, route) in http.routes.iter().enumerate() {
        let at = format!("{at}.routes[{ri}]");
        match &route.action {
            Action::Forward(id) if !table.backends.contains_key(id) => push(
                format!("{at}.action.forward"),
                format!("route `{}`: backend `{id}` is not defined", route.name),
            ),
            Action::Redirect(r) => {
                if let Err(e) = r.validate() {
                    push(format!("{at}.action.redirect"), e);
                }
            }
            _ => {}
        }
        for (hi, host) in route.hosts.iter().enumerate() {
            if let Err(e) = super::validate_host(&host.to_ascii_lowercase()) {
                push(format!("{at}.hosts[{hi}]"), e);
            }
        }
        for (pi, path) in route.paths.iter().enumerate() {
            if let Err(e) = check_path(path) {
                push(format!("{at}.paths[{pi}]"), e);
            }
        }
        for (ci, condition) in route.conditions.iter().enumerate() {
            check_condition(condition, &format!("{at}.match[{ci}]"), &mut push);
        }
        for (field, edits) in [
            ("request_headers", &route.request_headers),
            ("response_headers", &route.response_headers),
        ] {
            for name in edits.reserved_names() {
                push(
                    format!("{at}.{field}"),
                    format!(
                        "`{}` frames the message or describes one hop; the proxy manages it and it cannot be edited",
                        name.as_str()
                    ),
                );
            }
        }
        if let Some(hsts) = &route.hsts
            && hsts.preload
            && (!hsts.include_subdomains || hsts.max_age < super::Hsts::ONE_YEAR)
        {
            push(
                format!("{at}.hsts.preload"),
                "preloading needs `include_subdomains` and a `max_age` of at least a year (hstspreload.org)".into(),
            );
        }
        if let Some(PathRewrite::ReplacePrefix(to)) = &route.rewrite
            && !to.starts_with('/')
        {
            push(
                format!("{at}.rewrite.replace_prefix"),
                format!("{to:?} must start with `/`"),
            );
        }
    }
}

fn check_condition(condition: &Condition, at: &str, push: &mut impl FnMut(String, String)) {
    match condition {
        Condition::Host(hosts) if hosts.is_empty() => push(format!("{at}.host"), never()),
        Condition::Path(paths) if paths.is_empty() => push(format!("{at}.path"), never()),
        Condition::Host(hosts) => {
            for (hi, host) in hosts.iter().enumerate() {
                if let Err(e) = super::validate_host(&host.to_ascii_lowercase()) {
                    push(format!("{at}.host[{hi}]"), e);
                }
            }
        }
        Condition::Path(paths) => {
            for (pi, path) in paths.iter().enumerate() {
                if let Err(e) = check_path(path) {
                    push(format!("{at}.path[{pi}]"), e);
                }
            }
        }
        Condition::Method(m) if m.is_empty() => push(format!("{at}.method"), never()),
        Condition::Source(n) if n.is_empty() => push(format!("{at}.source"), never()),
        Condition::Not(inner) => check_condition(inner, &format!("{at}.not"), push),
        _ => {}
    }
}

/// An empty any-of list: most likely a mistake, since the route could never answer.
fn never() -> String {
    "the list is empty, so the condition never holds".into()
}

/// Ingress-style paths must be absolute; string matchers may be any text (a
/// suffix such as `.jpg` is not a path).
pub(crate) fn check_path(path: &PathMatch) -> Result<(), String> {
    match path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::BeginsWith(p)
            if !p.starts_with('/') =>
        {
            Err(format!("path {p:?} must start with `/`"))
        }
        PathMatch::EndsWith(s) if s.is_empty() => Err("the suffix is empty".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::from_yaml_str;

    #[test]
    fn tls_settings_belong_to_https_listeners_and_name_real_things() {
        let table = from_yaml_str(
            "listeners:
  - http: {name: plain, bind: 127.0.0.1:1, tls: {}}
  - https:
      name: secure
      bind: 127.0.0.1:2
      tls: {default_certificate: nope, cipher_suites: [TLS_RSA_WITH_RC4_128_MD5], alpn: ['']}
",
        )
        .unwrap();
        let paths: Vec<String> = check(&table)
            .unwrap_err()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "listeners[0].http.tls",
                "listeners[1].https.tls.default_certificate",
                "listeners[1].https.tls.cipher_suites",
                "listeners[1].https.tls.alpn"
            ]
        );
        let fine = from_yaml_str("listeners: [{https: {name: s, bind: 127.0.0.1:2}}]").unwrap();
        assert!(check(&fine).is_ok());
    }

    #[test]
    fn backend_tls_settings_are_checked_by_field() {
        let table = from_yaml_str(
            "backends:
  cleartext: {protocol: h2c, tls: {}}
  confused:
    tls:
      server_name: 'not a name'
      ca: |
        -----BEGIN CERTIFICATE-----
        AAAA
        -----END CERTIFICATE-----
      insecure_skip_verify: true
      alpn: []
      client_certificate: nope
  empty_ca: {tls: {ca: '', alpn: [h2, http/1.1, h2]}}
  fine: {tls: {server_name: 10.0.0.1, insecure_skip_verify: true, alpn: [h2]}}
",
        )
        .unwrap();
        let text: Vec<String> = check(&table)
            .unwrap_err()
            .iter()
            .map(|e| match e.message.split_once(':') {
                // Only the start of rustls/webpki messages, which may change.
                Some((head, _)) => format!("{}: {head}", e.path),
                None => e.to_string(),
            })
            .collect();
        assert_eq!(
            text,
            [
                "backends.cleartext.protocol: h2c is cleartext HTTP/2 and cannot be used with `tls`; for HTTP/2 over TLS leave the protocol out and set `tls.alpn",
                "backends.confused.tls.server_name: \"not a name\" is neither a DNS name nor an IP address",
                "backends.confused.tls.ca: certificate #1 cannot be a trust anchor",
                "backends.confused.tls.insecure_skip_verify: cannot be used with `ca`",
                "backends.confused.tls.alpn: offers no protocol; leave it out for the default `[http/1.1]`",
                "backends.confused.tls.client_certificate: no certificate `nope` in `certificates`",
                "backends.empty_ca.tls.ca: holds no PEM certificate",
                "backends.empty_ca.tls.alpn[2]: h2 is listed twice",
            ]
        );
    }

    #[test]
    fn passthrough_routes_name_real_backends_that_balance_connections_and_valid_unique_hosts() {
        let table = from_yaml_str(
            "listeners:
  - tls_passthrough:
      name: pg
      bind: 127.0.0.1:1
      default_backend: by_header
      routes:
        - {name: a, hosts: [db.example.com, '*.db.example.com'], backend: ok}
        - {name: b, hosts: [DB.example.com, 'bad host'], backend: gone}
        - {name: c, hosts: [], backend: ok}
  - https:
      name: web
      bind: 127.0.0.1:2
      tls:
        passthrough:
          - {name: d, hosts: [x.example.com], backend: by_header}
backends:
  ok: {}
  by_header: {balance: {header: {name: x-user}}}
",
        )
        .unwrap();
        let text: Vec<String> = check(&table)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let by_header = "backend `by_header` balances by `header`, which reads HTTP requests; \
                         raw connections have none (use least_conn, round_robin, source, ...)";
        assert_eq!(
            text,
            [
                format!("listeners[0].tls_passthrough.default_backend: {by_header}"),
                "listeners[0].tls_passthrough.routes[1].backend: route `b`: backend `gone` is not defined".into(),
                "listeners[0].tls_passthrough.routes[1].hosts[0]: host \"db.example.com\" is already routed by route `a`".into(),
                "listeners[0].tls_passthrough.routes[1].hosts[1]: host \"bad host\" is not a valid DNS name or `*.` wildcard".into(),
                "listeners[0].tls_passthrough.routes[2].hosts: route `c` has no hosts, so it never matches (use `default_backend`)".into(),
                format!("listeners[1].https.tls.passthrough[0].backend: route `d`: {by_header}"),
            ]
        );
        let fine = from_yaml_str(
            "listeners: [{tls_passthrough: {name: p, bind: 127.0.0.1:2, routes: [{name: a, hosts: [a.test], backend: b}]}}]
backends: {b: {balance: {source: {}}}}",
        )
        .unwrap();
        assert_eq!(check(&fine), Ok(()));
    }

    #[test]
    fn client_certificate_redirect_and_hsts_settings_are_checked() {
        let ca = crate::tls::client_auth::testing::Ca::new("ca").pem;
        let indented: String = ca.lines().map(|l| format!("              {l}\n")).collect();
        let table = from_yaml_str(&format!(
            "listeners:
  - http:
      name: plain
      bind: 127.0.0.1:1
      https_redirect_port: 0
      routes:
        - name: r
          action: {{respond: {{status: 200}}}}
          hsts: {{max_age: 1h, include_subdomains: true, preload: true}}
        - {{name: ok, action: {{respond: {{status: 200}}}}, hsts: {{include_subdomains: true, preload: true}}}}
  - https:
      name: secure
      bind: 127.0.0.1:2
      https_redirect_port: 8443
      tls:
        client_auth: {{ca: 'not pem', on_failure: {{status: 500}}}}
        host_client_auth:
          'bad host': {{ca: ''}}
          good.test:
            on_failure: {{status: 403}}
            ca: |
{indented}"
        ))
        .unwrap();
        let text: Vec<String> = check(&table)
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "listeners[0].http.routes[0].hsts.preload: preloading needs `include_subdomains` and a `max_age` of at least a year (hstspreload.org)",
                "listeners[0].http.https_redirect_port: port 0 cannot be redirected to",
                "listeners[1].https.tls.client_auth.ca: the CA bundle holds no certificate",
                "listeners[1].https.tls.client_auth.on_failure.status: 500 is not a client error (400–499)",
                "listeners[1].https.tls.host_client_auth.bad host: host \"bad host\" is not a valid DNS name or `*.` wildcard",
                "listeners[1].https.tls.host_client_auth.bad host.ca: the CA bundle holds no certificate",
                "listeners[1].https.https_redirect_port: only `http` listeners redirect to https",
            ],
        );
    }

    #[test]
    fn errors_name_the_field_and_the_route() {
        let table = from_yaml_str(
            "
listeners:
  - http:
      name: web
      bind: 127.0.0.1:1
      default_backend: gone
      routes:
        - {name: ok, action: {forward: app}}
        - {name: dangling, paths: [{begins_with: nope}], action: {forward: nope}}
        - {name: never, match: [{not: {source: []}}], action: {forward: app}}
backends:
  app: {}
",
        )
        .unwrap();
        let errors = check(&table).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "listeners[0].http.default_backend: backend `gone` is not defined",
                "listeners[0].http.routes[1].action.forward: route `dangling`: backend `nope` is not defined",
                "listeners[0].http.routes[1].paths[0]: path \"nope\" must start with `/`",
                "listeners[0].http.routes[2].match[0].not.source: the list is empty, so the condition never holds",
            ]
        );
    }
}
