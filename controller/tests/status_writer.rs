//! The status writer against an in-memory API server (tower-test): exactly the
//! PATCH and Event requests it should make, and none when nothing changed or
//! when it is not the leader.

// Test support code: a malformed request should panic with its content.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::networking::v1::{
    Ingress, IngressLoadBalancerIngress, IngressLoadBalancerStatus,
    IngressStatus as K8sIngressStatus,
};
use kube::Client;
use kube::api::ObjectMeta;
use kube::client::Body;
use serde_json::{Value, json};
use sluice_controller::publish::Published;
use sluice_controller::snapshot::{ObjectKey, Snapshot};
use sluice_controller::status::{PublishTarget, StatusWriter};
use sluice_controller::translate::{IngressStatus, Translation};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn ingress(status_ip: Option<&str>) -> Ingress {
    Ingress {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("uid-1".into()),
            ..Default::default()
        },
        spec: None,
        status: status_ip.map(|ip| K8sIngressStatus {
            load_balancer: Some(IngressLoadBalancerStatus {
                ingress: Some(vec![IngressLoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..Default::default()
                }]),
            }),
        }),
    }
}

fn published(status_ip: Option<&str>, warnings: &[&str]) -> Published {
    let key = ObjectKey::new("shop", "web");
    let mut snapshot = Snapshot::default();
    snapshot
        .ingresses
        .insert(key.clone(), Arc::new(ingress(status_ip)));
    Published {
        translation: Translation {
            table: Default::default(),
            statuses: vec![IngressStatus {
                ingress: key,
                served: true,
                warnings: warnings.iter().map(|w| w.to_string()).collect(),
            }],
            warnings: Vec::new(),
        },
        snapshot,
    }
}

async fn next(
    handle: &mut ApiHandle,
) -> (Method, String, Value, mock::SendResponse<Response<Body>>) {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("the client is alive");
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let body = request.into_body().collect_bytes().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (method, uri, json, respond)
}

fn reply(respond: mock::SendResponse<Response<Body>>, status: StatusCode, body: Value) {
    let response = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    respond.send_response(response);
}

/// No request within 200 ms (or the client was dropped without sending one).
async fn assert_no_request(handle: &mut ApiHandle) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected request: {} {}", request.method(), request.uri());
    }
}

#[tokio::test]
async fn writes_status_and_one_event_per_new_warning() {
    let (client, mut handle) = mock_client();
    let mut writer = StatusWriter::new(
        client,
        PublishTarget::Address("203.0.113.5".into()),
        "replica-a",
    );
    let warning = "annotation sluice.dev/bogus=\"x\": unknown annotation; ignored";

    let first = published(None, &[warning]);
    let sync = tokio::spawn(async move {
        writer.sync(&first).await;
        writer
    });

    let (method, uri, body, respond) = next(&mut handle).await;
    assert_eq!(method, Method::PATCH);
    assert!(
        uri.starts_with("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web/status?"),
        "{uri}"
    );
    assert!(
        uri.contains("fieldManager=sluice-controller%2Freplica-a"),
        "{uri}"
    );
    assert_eq!(
        body,
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}]}}})
    );
    reply(
        respond,
        StatusCode::OK,
        serde_json::to_value(ingress(Some("203.0.113.5"))).unwrap(),
    );

    let (method, uri, body, respond) = next(&mut handle).await;
    assert_eq!(method, Method::POST);
    assert!(
        uri.starts_with("/apis/events.k8s.io/v1/namespaces/shop/events"),
        "{uri}"
    );
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "InvalidAnnotation");
    assert_eq!(body["note"], warning);
    assert_eq!(body["regarding"]["name"], "web");
    reply(respond, StatusCode::CREATED, body);

    let mut writer = sync.await.unwrap();

    // The watch now shows the written status and the warning persists: no requests.
    let second = published(Some("203.0.113.5"), &[warning]);
    let sync = tokio::spawn(async move { writer.sync(&second).await });
    assert_no_request(&mut handle).await;
    sync.await.unwrap();
}

#[tokio::test]
async fn a_follower_writes_nothing() {
    let (client, mut handle) = mock_client();
    let writer = StatusWriter::new(
        client,
        PublishTarget::Address("203.0.113.5".into()),
        "replica-b",
    );
    let (leader_tx, leader_rx) = watch::channel(false);
    let (published_tx, published_rx) =
        watch::channel(Some(Arc::new(published(None, &["a warning"]))));
    let task = tokio::spawn(writer.run(leader_rx, published_rx));
    assert_no_request(&mut handle).await;

    // Becoming leader writes at once.
    leader_tx.send(true).unwrap();
    let (method, uri, _, respond) = next(&mut handle).await;
    assert_eq!(method, Method::PATCH, "{uri}");
    reply(
        respond,
        StatusCode::OK,
        serde_json::to_value(ingress(Some("203.0.113.5"))).unwrap(),
    );
    drop(published_tx);
    drop(leader_tx);
    let (_, _, _, respond) = next(&mut handle).await; // the Event
    reply(respond, StatusCode::CREATED, json!({}));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the writer stops when its inputs close")
        .unwrap();
}
