//! `auth-tls-secret` (client certificates, mTLS) → the HTTPS listener's
//! `host_client_auth`, one entry per host of the Ingress's rules.
//!
//! Fails closed: an Ingress whose CA cannot be read, or that has no HTTPS
//! listener to verify on, is not served; a rule without host (no SNI to scope
//! it by) is not served; its routes on the plain HTTP listener redirect to
//! HTTPS, whatever `ssl-redirect` says. Two Ingresses that ask different
//! settings for one host: the older one's apply.

use super::annotations::ClientAuthAnnotations;
use super::tls::ca_bundle;
use crate::snapshot::{ObjectKey, Snapshot};
use sluice_proxy::table::{ClientAuth, ClientAuthMode, OnFailure};
use std::collections::BTreeMap;

/// The settings the Ingress asks for, with the CA read from its Secret.
pub fn load(
    snapshot: &Snapshot,
    namespace: &str,
    wanted: &ClientAuthAnnotations,
) -> Result<ClientAuth, String> {
    let key = match wanted.secret.split_once('/') {
        Some((ns, name)) => ObjectKey::new(ns, name),
        None => ObjectKey::new(namespace, &wanted.secret),
    };
    let ca = ca_bundle(snapshot, &key).map_err(|problem| {
        format!("annotation sluice.dev/auth-tls-secret: {problem}; the Ingress is not served until it is fixed")
    })?;
    Ok(ClientAuth {
        ca,
        mode: if wanted.optional {
            ClientAuthMode::Optional
        } else {
            ClientAuthMode::Require
        },
        on_failure: wanted
            .error_status
            .map_or(OnFailure::Alert, OnFailure::Status),
    })
}

/// Hosts with client-certificate settings, and the Ingress that set each.
#[derive(Default)]
pub struct Claims<'a> {
    by_host: BTreeMap<String, (ClientAuth, &'a ObjectKey)>,
}

impl<'a> Claims<'a> {
    /// Records `auth` for `host`; false (with a warning) when an older Ingress
    /// set other settings for it, which then apply to this rule as well.
    pub fn claim(
        &mut self,
        host: &str,
        auth: &ClientAuth,
        owner: &'a ObjectKey,
        warnings: &mut Vec<String>,
    ) {
        match self.by_host.get(host) {
            Some((theirs, first)) if theirs != auth && *first != owner => warnings.push(format!(
                "host {host:?}: the older Ingress {first} sets other client-certificate settings (sluice.dev/auth-tls-*), which apply"
            )),
            Some(_) => {}
            None => {
                self.by_host.insert(host.to_owned(), (auth.clone(), owner));
            }
        }
    }

    /// Whether `host` has client-certificate settings from any Ingress.
    pub fn covers(&self, host: &str) -> bool {
        self.by_host.contains_key(host)
    }

    pub fn into_table(self) -> BTreeMap<String, ClientAuth> {
        self.by_host
            .into_iter()
            .map(|(host, (auth, _))| (host, auth))
            .collect()
    }
}
