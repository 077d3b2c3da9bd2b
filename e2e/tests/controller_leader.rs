//! Two replicas with leader election: both serve traffic, only the leader writes
//! Ingress status. Needs a cluster (see `sluice_e2e::cluster`); skipped without.
//!
//! The replicas publish different addresses, so a follower that wrote would have
//! to change the status (and would show in managedFields): a follower writing the
//! same value would be a no-op the API server does not record.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::cluster::notice;
use sluice_e2e::k8s::Namespace;
use sluice_e2e::traffic::answer;
use sluice_e2e::{Backend, Cluster, ControllerOptions, ControllerProcess, client, eventually};
use std::time::{Duration, Instant};

const GIVE_UP: Duration = Duration::from_secs(20);
const LEASE: &str = "sluice-e2e";
/// How long the status is watched for a follower's write once it is settled.
const OBSERVE: Duration = Duration::from_secs(3);

/// The `sluice-controller/...` managers of Ingress `name`.
async fn our_managers(ns: &Namespace, name: &str) -> Vec<String> {
    let managers = ns.ingress_managers(name).await.unwrap();
    managers
        .into_iter()
        .filter(|m| m.starts_with("sluice-controller/"))
        .collect()
}

/// Every Ingress in `names` shows `address`, written by `manager` alone.
async fn settled(ns: &Namespace, names: &[String], address: &str, manager: &str) -> bool {
    for name in names {
        let Ok(addresses) = ns.ingress_addresses(name).await else {
            return false;
        };
        if addresses != [address] || our_managers(ns, name).await != [manager] {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn only_the_leader_writes_status_and_both_replicas_serve() {
    let Some(cluster) = Cluster::connect().await else {
        return;
    };
    let ns = cluster.namespace("leader").await.unwrap();
    let a = Backend::start("a").await;
    ns.create_service("web").await.unwrap();
    ns.create_slice("web-a", "web", Some(a.addr)).await.unwrap();
    let replica = |identity: &str, address: &str| {
        ControllerOptions::new(&ns, identity)
            .publish_address(address)
            .leader_elect(ns.name(), LEASE)
    };
    let (one, two) = tokio::join!(
        ControllerProcess::start(&cluster, replica("replica-one", "203.0.113.9")),
        ControllerProcess::start(&cluster, replica("replica-two", "203.0.113.10")),
    );
    let (mut one, mut two) = (one.unwrap(), two.unwrap());

    let mut names: Vec<String> = Vec::new();
    for i in 0..3 {
        let name = format!("web-{i}");
        ns.create_ingress(&name, &format!("web-{i}.example"), "web")
            .await
            .unwrap();
        names.push(name);
    }
    let http = client::client();
    for controller in [&one, &two] {
        for i in 0..3 {
            let host = format!("web-{i}.example");
            let what = format!("{host} through {}", controller.identity());
            eventually(&what, GIVE_UP, || async {
                (answer(&http, controller.http_addr(), &host).await == "a").then_some(())
            })
            .await
            .unwrap();
        }
    }

    let holder = eventually("a leader in the Lease", GIVE_UP, || async {
        ns.lease_holder(LEASE).await.ok().flatten()
    })
    .await
    .unwrap();
    let (leader, address) = match holder.as_str() {
        "replica-one" => (&one, "203.0.113.9"),
        "replica-two" => (&two, "203.0.113.10"),
        other => panic!("unknown Lease holder {other:?}"),
    };
    let manager = leader.field_manager();
    notice(&format!("leader: {holder}; status manager {manager}"));
    eventually("the leader's status on every Ingress", GIVE_UP, || async {
        settled(&ns, &names, address, &manager).await.then_some(())
    })
    .await
    .unwrap();

    // More translations in both replicas (a new Ingress, an endpoint change): the
    // follower keeps out of it while the leader writes the new Ingress's status.
    ns.create_ingress("web-3", "web-3.example", "web")
        .await
        .unwrap();
    names.push("web-3".into());
    let b = Backend::start("b").await;
    ns.create_slice("web-b", "web", Some(b.addr)).await.unwrap();
    eventually(
        "the leader's status on the new Ingress",
        GIVE_UP,
        || async { settled(&ns, &names, address, &manager).await.then_some(()) },
    )
    .await
    .unwrap();
    let until = Instant::now() + OBSERVE;
    while Instant::now() < until {
        for name in &names {
            let managers = our_managers(&ns, name).await;
            assert_eq!(managers, [manager.as_str()], "status writers of {name}");
            let addresses = ns.ingress_addresses(name).await.unwrap();
            assert_eq!(addresses, [address], "status of {name}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for controller in [&one, &two] {
        let host = "web-3.example";
        let what = format!("{host} through {}", controller.identity());
        eventually(&what, GIVE_UP, || async {
            let got = answer(&http, controller.http_addr(), host).await;
            (got == "a" || got == "b").then_some(())
        })
        .await
        .unwrap();
    }
    one.assert_running().unwrap();
    two.assert_running().unwrap();
}
