//! A backend's pooled client, with its TLS settings compiled. Settings that
//! cannot be used make the backend unusable (its routes answer 503), never
//! plaintext.

use crate::runtime::Runtime;
use crate::table::{Backend, Certificate};
use crate::upstream::Upstream;
use std::collections::BTreeMap;

/// The client for `backend`, and whether the backend may be used.
pub(super) fn upstream(
    id: &str,
    backend: &Backend,
    certificates: &BTreeMap<String, Certificate>,
    runtime: &Runtime,
    warnings: &mut Vec<String>,
) -> (Upstream, bool) {
    let Some(tls) = &backend.tls else {
        return (
            runtime.upstreams.get(backend.protocol, &backend.timeouts),
            true,
        );
    };
    let what = match &backend.source {
        Some(source) => format!("backend `{id}` ({source})"),
        None => format!("backend `{id}`"),
    };
    let unusable = |warnings: &mut Vec<String>, problem: String| {
        warnings.push(format!(
            "{what} {problem}; the backend is unusable and its routes answer 503"
        ));
        (Upstream::refusing(&problem), false)
    };
    let problems = backend.tls_problems(certificates);
    if !problems.is_empty() {
        let text: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        return unusable(warnings, text.join(", "));
    }
    let client_certificate = tls
        .client_certificate
        .as_ref()
        .and_then(|id| certificates.get(id));
    match runtime
        .upstreams
        .get_tls(backend.protocol, &backend.timeouts, tls, client_certificate)
    {
        Ok(upstream) => {
            if tls.insecure_skip_verify {
                warnings.push(format!(
                    "{what} tls.insecure_skip_verify: endpoint certificates are not verified, \
                     so anyone on the path can impersonate the endpoints"
                ));
            }
            (upstream, true)
        }
        Err(e) => unusable(warnings, format!("tls: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{CompiledTable, compile};
    use crate::runtime::Runtime;
    use crate::table::from_yaml_str;
    use crate::upstream::Upstream;

    fn compiled(yaml: &str, runtime: &Runtime) -> CompiledTable {
        compile(from_yaml_str(yaml).unwrap(), runtime).unwrap()
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    fn leaf() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    fn indent(text: &str) -> String {
        text.lines().map(|l| format!("        {l}\n")).collect()
    }

    #[test]
    fn unusable_tls_settings_leave_the_backend_without_endpoints() {
        let (chain, _) = leaf();
        let (_, other_key) = leaf();
        let yaml = format!(
            "backends:
  h2c: {{protocol: h2c, tls: {{}}, endpoints: [{{address: 127.0.0.1:1}}]}}
  badkey:
    tls: {{client_certificate: mismatched, insecure_skip_verify: true}}
    source: {{kind: Service, namespace: shop, name: api}}
    endpoints: [{{address: 127.0.0.1:1}}]
  good: {{tls: {{insecure_skip_verify: true}}, endpoints: [{{address: 127.0.0.1:1}}]}}
certificates:
  mismatched:
    chain_pem: |
{}    private_key: |
{}",
            indent(&chain),
            indent(&other_key)
        );
        let t = compiled(&yaml, &Runtime::default());
        let by_id = |id: &str| t.backends.iter().find(|b| &*b.id == id).unwrap();
        for id in ["h2c", "badkey"] {
            let b = by_id(id);
            assert_eq!(b.balancer.members().count(), 0, "{id}");
            assert!(
                matches!(b.upstream, Upstream::Tls(_)),
                "{id}: never plaintext"
            );
        }
        assert_eq!(by_id("good").balancer.members().count(), 1);
        let unusable: Vec<&String> = t
            .warnings
            .iter()
            .filter(|w| w.contains("unusable"))
            .collect();
        assert_eq!(unusable.len(), 2, "{:?}", t.warnings);
        assert!(
            unusable[0].contains("Service/shop/api") && unusable[0].contains("client_certificate")
        );
        assert!(unusable[1].contains("`h2c`") && unusable[1].contains("protocol: h2c"));
        // Only the insecure backend in use warns so; none says "no endpoints".
        assert_eq!(
            t.warnings
                .iter()
                .filter(|w| w.contains("insecure_skip_verify: endpoint"))
                .count(),
            1,
            "{:?}",
            t.warnings
        );
        assert!(!t.warnings.iter().any(|w| w.contains("no endpoints")));
    }

    #[test]
    fn equal_settings_share_a_pool_across_tables_and_different_ones_do_not() {
        let ca = indent(&ca_pem());
        let yaml = |server_name: &str| {
            format!(
                "backends:
  a:
    tls:
      server_name: {server_name}
      ca: |
{ca}    endpoints: [{{address: 127.0.0.1:1}}]
  b:
    tls:
      server_name: one.test
      ca: |
{ca}    endpoints: [{{address: 127.0.0.1:2}}]
  plain: {{endpoints: [{{address: 127.0.0.1:3}}]}}
"
            )
        };
        let runtime = Runtime::default();
        let first = compiled(&yaml("one.test"), &runtime);
        assert!(first.warnings.is_empty(), "{:?}", first.warnings);
        assert_eq!(first.backends[0].upstream.scheme().as_str(), "https");
        assert_eq!(first.backends[2].upstream.scheme().as_str(), "http");
        // `a` and `b` have equal settings: one pool, and one plain pool.
        assert_eq!(runtime.upstreams.pools(), 2);
        // The next table keeps `b`'s pool and gives `a` its own.
        let second = compiled(&yaml("two.test"), &runtime);
        assert_eq!(runtime.upstreams.pools(), 3);
        drop((first, second));
    }
}
