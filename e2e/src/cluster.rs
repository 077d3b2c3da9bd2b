//! The Kubernetes API server the controller tests run against.
//!
//! Configured by two variables, normally exported by `.ci/run` after
//! `shared/k8s/up`:
//! - `SLUICE_E2E_RESTRICTED_KUBECONFIG`: the identity the controller runs as (user
//!   `restricted`, no grants of its own). Its presence is the opt-in: without it no
//!   controller test touches any cluster, even when `KUBECONFIG` points at one.
//! - `KUBECONFIG`: an admin identity, the tests' own API client.
//!
//! Without them the controller tests are skipped with a notice, so
//! `cargo test --workspace` passes on a machine without a cluster, except under
//! `CI=true`, where they fail: CI must prove the controller against a real API.
//!
//! Tests share one API server and run in parallel: each works in namespaces of its
//! own (see [`Namespace`]). The outage test stops the API server, so it takes the
//! cluster lock exclusively while every other test holds it shared; cargo runs test
//! binaries one after another anyway, the lock covers runners that do not.

use crate::binary::workspace_root;
use crate::k8s::Namespace;
use crate::util::eventually;
use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const RESTRICTED_KUBECONFIG_ENV: &str = "SLUICE_E2E_RESTRICTED_KUBECONFIG";
/// The user name in the restricted kubeconfig's client certificate.
pub const RESTRICTED_USER: &str = "restricted";
/// Binds deploy/rbac.yaml's ClusterRole to [`RESTRICTED_USER`].
const BINDING: &str = "sluice-e2e-restricted";
const FIELD_MANAGER: &str = "sluice-e2e";

/// Whether another test may use the API server at the same time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Shared,
    /// The API server may be stopped (the outage test).
    Exclusive,
}

pub struct Cluster {
    admin: Client,
    restricted_kubeconfig: PathBuf,
    _lock: std::fs::File,
}

impl Cluster {
    /// The configured cluster with deploy/rbac.yaml granted to the restricted user;
    /// `None` (after printing why) when none is configured outside CI.
    pub async fn connect() -> Option<Cluster> {
        Self::connect_with(Access::Shared).await
    }

    pub async fn connect_with(access: Access) -> Option<Cluster> {
        let restricted_kubeconfig = configured("the controller end-to-end tests")?;
        let lock = lock(access).await.expect("cannot take the cluster lock");
        let admin = Client::try_default()
            .await
            .expect("cannot build an API client from KUBECONFIG (the admin identity)");
        let cluster = Cluster {
            admin,
            restricted_kubeconfig,
            _lock: lock,
        };
        cluster
            .grant_rbac()
            .await
            .expect("cannot apply deploy/rbac.yaml");
        Some(cluster)
    }

    /// The tests' API client (admin).
    pub fn admin(&self) -> &Client {
        &self.admin
    }

    /// The kubeconfig the controller under test runs with.
    pub fn restricted_kubeconfig(&self) -> &Path {
        &self.restricted_kubeconfig
    }

    /// A new namespace, unique to this test; see [`Namespace`]. Returns once the
    /// restricted user can read in it (RBAC caches update asynchronously).
    pub async fn namespace(&self, label: &str) -> Result<Namespace> {
        let ns = Namespace::create(self.admin.clone(), label).await?;
        let restricted = restricted_client(&self.restricted_kubeconfig).await?;
        let ingresses: Api<Ingress> = Api::namespaced(restricted.clone(), ns.name());
        let secrets: Api<Secret> = Api::namespaced(restricted, ns.name());
        let probe = ListParams::default().limit(1);
        eventually(
            "the restricted user to be allowed in the namespace",
            Duration::from_secs(10),
            || async {
                let ok = ingresses.list(&probe).await.is_ok() && secrets.list(&probe).await.is_ok();
                ok.then_some(())
            },
        )
        .await?;
        Ok(ns)
    }

    /// Applies the ClusterRole of deploy/rbac.yaml as it is, and binds it to the
    /// restricted user (server-side apply: idempotent, safe in parallel). Both stay
    /// for the cluster's lifetime: other tests use them concurrently.
    async fn grant_rbac(&self) -> Result<()> {
        let path = workspace_root().join("deploy/rbac.yaml");
        let yaml = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)
            .with_context(|| format!("{} is not YAML", path.display()))?;
        let role = docs
            .into_iter()
            .find(|d| d["kind"] == "ClusterRole")
            .with_context(|| format!("no ClusterRole in {}", path.display()))?;
        let role: ClusterRole = serde_json::from_value(role)?;
        let role_name = role.metadata.name.clone().context("unnamed ClusterRole")?;
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let roles: Api<ClusterRole> = Api::all(self.admin.clone());
        roles
            .patch(&role_name, &apply, &Patch::Apply(&role))
            .await?;
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": { "name": BINDING },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role_name,
            },
            "subjects": [{
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": RESTRICTED_USER,
            }],
        });
        let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            Api::all(self.admin.clone());
        bindings
            .patch(BINDING, &apply, &Patch::Apply(&binding))
            .await?;
        Ok(())
    }
}

/// The restricted kubeconfig when the cluster is configured. Otherwise fails
/// under `CI=true` and returns `None` after a notice elsewhere.
pub fn configured(what: &str) -> Option<PathBuf> {
    let restricted = std::env::var_os(RESTRICTED_KUBECONFIG_ENV);
    let admin = std::env::var_os("KUBECONFIG");
    match (restricted, admin) {
        (Some(restricted), Some(_)) => Some(PathBuf::from(restricted)),
        (Some(_), None) => {
            panic!("{RESTRICTED_KUBECONFIG_ENV} is set but KUBECONFIG (the admin identity) is not")
        }
        (None, _) => {
            let how = format!(
                "{what} need a Kubernetes API server: export KUBECONFIG (admin) and \
                 {RESTRICTED_KUBECONFIG_ENV}, e.g. after `eval \"$(../shared/k8s/up)\"` \
                 (see .ci/run)"
            );
            if in_ci() {
                panic!("CI=true: {how}");
            }
            notice(&format!("SKIPPED: {how}"));
            None
        }
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Prints past the test harness's output capture, so notices and measured figures
/// show in a passing run's log too.
pub fn notice(line: &str) {
    let _ = writeln!(std::io::stderr(), "[sluice-e2e] {line}");
}

/// An API client with the restricted identity (what the controller runs as).
pub async fn restricted_client(kubeconfig: &Path) -> Result<Client> {
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The machine-wide lock that keeps the outage test apart from the others.
async fn lock(access: Access) -> Result<std::fs::File> {
    let path = std::env::temp_dir().join("sluice-e2e-cluster.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let locked = tokio::task::spawn_blocking(move || {
        match access {
            Access::Shared => file.lock_shared()?,
            Access::Exclusive => file.lock()?,
        }
        std::io::Result::Ok(file)
    })
    .await?;
    match locked {
        Ok(file) => Ok(file),
        Err(e) => bail!("cannot lock {}: {e}", path.display()),
    }
}
