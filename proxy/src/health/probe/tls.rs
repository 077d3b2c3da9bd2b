//! TLS handshake (`check-ssl` without `option httpchk`): a completed handshake
//! means up. The certificate is not verified (HAProxy's `verify none`: checks
//! ask "is it serving", and endpoints are addressed by IP), but the handshake
//! signatures are, so a peer cannot finish a handshake it could not sign.

use super::{Code, Phase, PhaseTracker, Report, Target, tcp, wire};
use crate::table::TlsProbe;
use crate::tls::InsecureAnyCertificate;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ProtocolVersion};
use std::sync::{Arc, LazyLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub async fn check(probe: &TlsProbe, target: &Target, phase: &PhaseTracker) -> Report {
    match connect(target, probe.sni.as_deref(), phase).await {
        Ok(mut stream) => {
            let version = stream.get_ref().1.protocol_version();
            // close_notify, so the server does not log a truncated session.
            wire::at_once(tokio::io::AsyncWriteExt::shutdown(&mut stream)).await;
            Report::new(Code::L6Ok, version.map(version_name).unwrap_or_default())
        }
        Err(report) => report,
    }
}

/// A TLS connection to the target (also `http` with `tls`), or the `L4CON` /
/// `L6RSP` report naming why not. Leaves the phase at `Reply` on success.
pub async fn connect(
    target: &Target,
    sni: Option<&str>,
    phase: &PhaseTracker,
) -> Result<TlsStream<TcpStream>, Report> {
    let config = CONFIG
        .as_ref()
        .map_err(|e| wire::report(Code::L6Rsp, e.clone()))?;
    let name = server_name(sni, &target.host)?;
    let tcp = tcp::connect(target, phase).await?;
    phase.set(Phase::Tls);
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| {
            wire::report(
                Code::L6Rsp,
                format!("TLS handshake: {}", wire::error_chain(&e)),
            )
        })?;
    phase.set(Phase::Reply);
    Ok(stream)
}

/// `sni` when set; else no SNI for an IP (rustls sends none for addresses),
/// the DNS name otherwise.
fn server_name(sni: Option<&str>, host: &str) -> Result<ServerName<'static>, Report> {
    let name = sni.unwrap_or(host);
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.to_owned()).map_err(|_| {
        wire::report(
            Code::L6Rsp,
            format!(
                "{} is not a valid TLS server name",
                wire::printable(name.as_bytes())
            ),
        )
    })
}

fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// One client configuration per process; `ring` named explicitly so no
/// process-wide default provider is needed (or can differ).
static CONFIG: LazyLock<Result<Arc<ClientConfig>, String>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(InsecureAnyCertificate::new(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
});

#[cfg(test)]
mod tests {
    use super::super::testing::{check, peer, read_to_end, refused_target, tls_acceptor};
    use super::*;
    use crate::table::Probe;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn tls(sni: Option<&str>) -> Probe {
        Probe::Tls(TlsProbe {
            sni: sni.map(str::to_owned),
        })
    }

    /// A TLS peer that reports the SNI it received.
    async fn sni_seen(probe: Probe, host: &str) -> (Report, Option<String>) {
        let acceptor = tls_acceptor(rustls::DEFAULT_VERSIONS);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut peer = peer(move |stream| async move {
            let tls = acceptor.accept(stream).await.unwrap();
            let name = tls.get_ref().1.server_name().map(str::to_owned);
            tx.send(name).unwrap();
        })
        .await;
        peer.target.host = host.into();
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        (report, rx.await.unwrap())
    }

    #[tokio::test]
    async fn a_self_signed_handshake_passes_without_sni_for_an_ip() {
        let (report, sni) = sni_seen(tls(None), "127.0.0.1").await;
        assert_eq!(report.code, Code::L6Ok, "{report}");
        assert_eq!(report.detail, "TLSv1.3");
        assert_eq!(sni, None);
    }

    #[tokio::test]
    async fn a_tls12_handshake_passes_and_its_signature_is_checked() {
        let acceptor = tls_acceptor(&[&rustls::version::TLS12]);
        let peer = peer(move |stream| async move {
            let mut tls = acceptor.accept(stream).await.unwrap();
            // The client's close_notify ends the session cleanly.
            let mut rest = Vec::new();
            tls.read_to_end(&mut rest).await.unwrap();
        })
        .await;
        let report = check(&tls(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(report, Report::new(Code::L6Ok, "TLSv1.2"));
    }

    #[tokio::test]
    async fn the_configured_sni_is_sent() {
        let (report, sni) = sni_seen(tls(Some("db.example.com")), "127.0.0.1").await;
        assert_eq!(report.code, Code::L6Ok, "{report}");
        assert_eq!(sni.as_deref(), Some("db.example.com"));
    }

    #[tokio::test]
    async fn a_dns_target_is_its_own_sni() {
        let (report, sni) = sni_seen(tls(None), "localhost").await;
        assert_eq!(report.code, Code::L6Ok, "{report}");
        assert_eq!(sni.as_deref(), Some("localhost"));
    }

    #[tokio::test]
    async fn a_plaintext_peer_fails_the_handshake() {
        let peer = peer(|mut s| async move {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            let _ = read_to_end(&mut s).await;
        })
        .await;
        let report = check(&tls(None), &peer.target).await;
        assert_eq!(report.code, Code::L6Rsp, "{report}");
        assert!(report.detail.starts_with("TLS handshake: "), "{report}");
        peer.finish().await;
    }

    #[tokio::test]
    async fn a_peer_closing_during_the_handshake_fails_it() {
        let peer = peer(|s| async move { drop(s) }).await;
        let report = check(&tls(None), &peer.target).await;
        assert_eq!(report.code, Code::L6Rsp, "{report}");
        peer.finish().await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_l4con() {
        let report = check(&tls(None), &refused_target().await).await;
        assert_eq!(report.code, Code::L4Con, "{report}");
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name(None, "10.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name(None, "::1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name(None, "db.local"),
            Ok(ServerName::DnsName(_))
        ));
        let bad = server_name(Some("bad name"), "10.0.0.1").unwrap_err();
        assert_eq!(bad.code, Code::L6Rsp);
        assert!(bad.detail.contains("not a valid TLS server name"), "{bad}");
    }
}
