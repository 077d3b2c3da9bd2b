//! WebSocket through the proxy: the HTTP/1.1 upgrade is forwarded and the two
//! upgraded connections are spliced, in both directions, until the close handshake.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use sluice_e2e::ws::WsEcho;
use sluice_e2e::{ProxyProcess, free_addr};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_proxy() {
    let echo = WsEcho::start().await;
    let listen = free_addr().unwrap();
    let yaml = format!(
        "listeners:\n  - http: {{name: web, bind: {listen}, routes: [{{name: ws, paths: [{{prefix: /ws}}], action: {{forward: echo}}}}]}}\n\
         backends:\n  echo: {{endpoints: [{{address: {}}}]}}\n",
        echo.addr
    );
    let _proxy = ProxyProcess::start(&yaml).await.unwrap();

    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{listen}/ws/chat")),
    )
    .await
    .expect("handshake timed out")
    .expect("handshake through the proxy failed");
    assert_eq!(response.status(), 101);
    assert_eq!(echo.handshakes(), 1);

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let messages = vec![
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("é ü 漢字"),
        Message::binary(big),
        Message::text(""),
        Message::text("last"),
    ];
    for msg in &messages {
        ws.send(msg.clone()).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no echo within 5s")
            .expect("stream ended")
            .unwrap();
        assert_eq!(&back, msg);
    }

    // Several in flight at once, then read them back in order.
    for i in 0..20 {
        ws.send(Message::text(format!("burst {i}"))).await.unwrap();
    }
    for i in 0..20 {
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, Message::text(format!("burst {i}")));
    }

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    // The backend's close reply must come back through the tunnel, then the end.
    let mut saw_close = false;
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => {
                    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
                    saw_close = true;
                }
                Ok(other) => panic!("unexpected message after close: {other:?}"),
                Err(e) => panic!("error during the closing handshake: {e}"),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "connection not closed within 5s");
    assert!(saw_close, "no close frame came back");
}
