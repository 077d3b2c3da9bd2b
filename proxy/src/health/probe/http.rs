//! HTTP check (`option httpchk`, `http-check expect`): one HTTP/1.1 request,
//! over TLS with `tls` (`check-ssl`); the status, and optionally the body, decide.

use super::{Code, PhaseTracker, Report, Target, tcp, tls, wire};
use crate::table::HttpProbe;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Body read when looking for `expect_body`.
const MAX_BODY: usize = 64 * 1024;

pub async fn check(probe: &HttpProbe, target: &Target, phase: &PhaseTracker) -> Report {
    let outcome = if probe.tls {
        match tls::connect(target, None, phase).await {
            Ok(stream) => exchange(probe, target, stream).await,
            Err(report) => return report,
        }
    } else {
        match tcp::connect(target, phase).await {
            Ok(stream) => exchange(probe, target, stream).await,
            Err(report) => return report,
        }
    };
    outcome.unwrap_or_else(|report| report)
}

async fn exchange<S>(probe: &HttpProbe, target: &Target, stream: S) -> Result<Report, Report>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = request(probe, target)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| wire::report(Code::L7Rsp, wire::error_chain(&e)))?;
    // The connection is driven here rather than spawned, so it ends with the
    // probe (and its timeout). Once it ends, `talk` fails by itself, so
    // `drive` then just waits and its branch is never taken.
    let drive = async {
        let _ = conn.await;
        std::future::pending::<()>().await;
    };
    let talk = async {
        let response = sender.send_request(request).await.map_err(|e| {
            wire::report(
                Code::L7Rsp,
                format!("no HTTP reply: {}", wire::error_chain(&e)),
            )
        })?;
        judge(probe, response).await
    };
    tokio::select! {
        outcome = talk => outcome,
        () = drive => Err(wire::report(Code::L7Rsp, "connection ended")),
    }
}

fn request(probe: &HttpProbe, target: &Target) -> Result<Request<Empty<Bytes>>, Report> {
    let host = probe.host.clone().unwrap_or_else(|| target.authority());
    let host = HeaderValue::try_from(host)
        .map_err(|_| wire::report(Code::L7Rsp, "the Host header is not valid"))?;
    Request::builder()
        .method(probe.method.to_method())
        .uri(probe.path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, "sluice-health-check")
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| wire::report(Code::L7Rsp, format!("invalid request: {e}")))
}

async fn judge(probe: &HttpProbe, response: Response<Incoming>) -> Result<Report, Report> {
    let status = response.status();
    let line = format!(
        "{:?} {} {}",
        response.version(),
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let line = line.trim_end().to_owned();
    if !probe.status_passes(status.as_u16()) {
        return Ok(wire::report(Code::L7Sts(status.as_u16()), line));
    }
    let Some(needle) = &probe.expect_body else {
        return Ok(wire::report(Code::L7Ok, line));
    };
    let quoted = wire::printable(needle.as_bytes());
    match body_contains(response.into_body(), needle.as_bytes()).await {
        Ok(true) => Ok(wire::report(
            Code::L7Ok,
            format!("{line}, body has \"{quoted}\""),
        )),
        Ok(false) => Err(wire::report(
            Code::L7Rsp,
            format!("{line} but the body lacks \"{quoted}\""),
        )),
        Err(e) => Err(wire::report(
            Code::L7Rsp,
            format!("{line}, body failed before \"{quoted}\": {e}"),
        )),
    }
}

/// Whether the first [`MAX_BODY`] bytes of the body contain `needle`; stops
/// reading once they do.
async fn body_contains(mut body: Incoming, needle: &[u8]) -> Result<bool, String> {
    let mut seen: Vec<u8> = Vec::new();
    // Where a match could start that the last search did not cover.
    let mut from = 0;
    loop {
        if wire::contains(&seen[from..], needle) {
            return Ok(true);
        }
        from = seen.len().saturating_sub(needle.len().saturating_sub(1));
        if seen.len() >= MAX_BODY {
            return Ok(false);
        }
        let Some(frame) = body.frame().await else {
            return Ok(false);
        };
        let frame = frame.map_err(|e| wire::error_chain(&e))?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - seen.len();
            seen.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        check, peer, read_to_end, read_until, refused_target, tls_acceptor,
    };
    use super::*;
    use crate::table::{MethodName, Probe, StatusRange};
    use tokio::io::AsyncWriteExt;

    fn http(probe: HttpProbe) -> Probe {
        Probe::Http(probe)
    }

    /// A peer that checks the request head with `check_head` and answers `reply`.
    async fn answering(
        reply: &'static [u8],
        check_head: impl FnOnce(String) + Send + 'static,
    ) -> super::super::testing::Peer {
        peer(move |mut s| async move {
            let head = read_until(&mut s, b"\r\n\r\n").await;
            check_head(String::from_utf8(head).unwrap());
            s.write_all(reply).await.unwrap();
            let _ = s.shutdown().await;
        })
        .await
    }

    #[tokio::test]
    async fn a_200_passes_and_the_request_is_as_specified() {
        let peer = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", |head| {
            assert!(
                head.starts_with("HEAD /healthz?full=1 HTTP/1.1\r\n"),
                "{head}"
            );
            let lower = head.to_ascii_lowercase();
            assert!(lower.contains("\r\nhost: app.example\r\n"), "{head}");
            assert!(
                lower.contains("\r\nuser-agent: sluice-health-check\r\n"),
                "{head}"
            );
            assert!(lower.contains("\r\nconnection: close\r\n"), "{head}");
        })
        .await;
        let probe = http(HttpProbe {
            method: MethodName::new("HEAD").unwrap(),
            path: "/healthz?full=1".into(),
            host: Some("app.example".into()),
            ..HttpProbe::default()
        });
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report, Report::new(Code::L7Ok, "HTTP/1.1 200 OK"));
    }

    #[tokio::test]
    async fn the_host_defaults_to_the_target_authority() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let peer = answering(b"HTTP/1.1 204 No Content\r\n\r\n", move |head| {
            tx.send(head).unwrap();
        })
        .await;
        let host = format!("\r\nhost: 127.0.0.1:{}\r\n", peer.target.port);
        let report = check(&http(HttpProbe::default()), &peer.target).await;
        peer.finish().await;
        assert_eq!(report, Report::new(Code::L7Ok, "HTTP/1.1 204 No Content"));
        let head = rx.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get / http/1.1\r\n") && head.contains(&host),
            "{head}"
        );
    }

    #[tokio::test]
    async fn an_unexpected_status_is_l7sts() {
        let peer = answering(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            |_| {},
        )
        .await;
        let report = check(&http(HttpProbe::default()), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(Code::L7Sts(503), "HTTP/1.1 503 Service Unavailable")
        );
    }

    #[tokio::test]
    async fn expected_statuses_replace_the_default_range() {
        let peer = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", |_| {}).await;
        let probe = http(HttpProbe {
            expect_status: vec![StatusRange::parse("204").unwrap()],
            ..HttpProbe::default()
        });
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Sts(200), "{report}");
    }

    fn expecting(body: &str) -> Probe {
        http(HttpProbe {
            expect_body: Some(body.into()),
            ..HttpProbe::default()
        })
    }

    #[tokio::test]
    async fn the_body_must_contain_the_expected_text() {
        let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                      5\r\nstatu\r\n9\r\ns: ready\n\r\n0\r\n\r\n";
        let peer = answering(reply, |_| {}).await;
        let report = check(&expecting("status: ready"), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Ok, "{report}");
        assert!(
            report.detail.contains("body has \"status: ready\""),
            "{report}"
        );

        let peer = answering(
            b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nstarting",
            |_| {},
        )
        .await;
        let report = check(&expecting("ready"), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert!(report.detail.contains("body lacks \"ready\""), "{report}");
    }

    #[tokio::test]
    async fn a_body_cut_short_fails() {
        let peer = answering(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial",
            |_| {},
        )
        .await;
        let report = check(&expecting("ready"), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert!(report.detail.contains("body failed before"), "{report}");
    }

    #[tokio::test]
    async fn a_reply_that_is_not_http_is_l7rsp() {
        let peer = answering(b"SSH-2.0-OpenSSH_9.6\r\n", |_| {}).await;
        let report = check(&http(HttpProbe::default()), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert!(report.detail.starts_with("no HTTP reply: "), "{report}");
    }

    #[tokio::test]
    async fn a_peer_closing_without_reply_is_l7rsp() {
        let peer = peer(|mut s| async move {
            read_until(&mut s, b"\r\n\r\n").await;
        })
        .await;
        let report = check(&http(HttpProbe::default()), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert!(report.detail.contains("closed"), "{report}");
    }

    #[tokio::test]
    async fn https_speaks_http_inside_tls() {
        let acceptor = tls_acceptor(rustls::DEFAULT_VERSIONS);
        let peer = peer(move |s| async move {
            let mut tls = acceptor.accept(s).await.unwrap();
            let head = read_until(&mut tls, b"\r\n\r\n").await;
            assert!(head.starts_with(b"GET / HTTP/1.1\r\n"));
            tls.write_all(b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            let _ = tls.shutdown().await;
        })
        .await;
        let probe = http(HttpProbe {
            tls: true,
            ..HttpProbe::default()
        });
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report, Report::new(Code::L7Ok, "HTTP/1.1 302 Found"));
    }

    #[tokio::test]
    async fn https_to_a_plaintext_server_is_l6rsp() {
        let peer = peer(|mut s| async move {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            let _ = read_to_end(&mut s).await;
        })
        .await;
        let probe = http(HttpProbe {
            tls: true,
            ..HttpProbe::default()
        });
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L6Rsp, "{report}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_l4con() {
        let report = check(&http(HttpProbe::default()), &refused_target().await).await;
        assert_eq!(report.code, Code::L4Con, "{report}");
    }
}
