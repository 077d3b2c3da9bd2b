//! PostgreSQL (`pgsql-check`): a v3.0 startup message; an authentication
//! request, or an error that only a serving server sends, means up. Errors
//! saying the server cannot take connections now (starting up, shutting
//! down, in recovery) mean down.

use super::{Code, PhaseTracker, Report, Target, tcp, wire};
use crate::table::PostgresProbe;
use tokio::net::TcpStream;

const PROTOCOL_3_0: u32 = 196_608;
/// Longest reply message accepted (an `ErrorResponse` is well under 1 KiB).
const MAX_MESSAGE: usize = 64 * 1024;
/// SQLSTATEs of a server that cannot serve: `cannot_connect_now`,
/// `admin_shutdown`, `crash_shutdown`.
const NOT_SERVING: [&str; 3] = ["57P03", "57P01", "57P02"];

pub async fn check(probe: &PostgresProbe, target: &Target, phase: &PhaseTracker) -> Report {
    let mut stream = match tcp::connect(target, phase).await {
        Ok(stream) => stream,
        Err(report) => return report,
    };
    exchange(probe, &mut stream)
        .await
        .unwrap_or_else(|report| report)
}

async fn exchange(probe: &PostgresProbe, stream: &mut TcpStream) -> Result<Report, Report> {
    wire::write_all(stream, &startup(probe)?, "the startup message").await?;
    let (kind, body) = read_message(stream).await?;
    match kind {
        b'R' => {
            let method = body
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| malformed("a short authentication request"))?;
            if method == 0 {
                // AuthenticationOk: logged in; say goodbye properly.
                wire::send_goodbye(stream, b"X\0\0\0\x04").await;
                return Ok(Report::new(
                    Code::L7Ok,
                    "PostgreSQL logged in without a password",
                ));
            }
            Ok(Report::new(
                Code::L7Ok,
                format!(
                    "PostgreSQL asked for authentication (method {method}{})",
                    method_name(method)
                ),
            ))
        }
        _ => {
            let error = ServerError::parse(&body).ok_or_else(|| malformed("a malformed error"))?;
            let code = if NOT_SERVING.contains(&error.code.as_str()) {
                Code::L7Rsp
            } else {
                Code::L7Ok
            };
            Ok(wire::report(code, error.to_string()))
        }
    }
}

/// StartupMessage: length, protocol, then NUL-terminated name/value pairs and
/// a final NUL.
fn startup(probe: &PostgresProbe) -> Result<Vec<u8>, Report> {
    let mut message = vec![0; 4];
    message.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    let mut param = |name: &str, value: &str| {
        for part in [name, value] {
            message.extend_from_slice(part.as_bytes());
            message.push(0);
        }
    };
    param("user", &probe.user);
    if let Some(database) = &probe.database {
        param("database", database);
    }
    param("application_name", "sluice-health-check");
    message.push(0);
    // The server refuses startup packets over 10,000 bytes; it can tell.
    let length = u32::try_from(message.len())
        .map_err(|_| wire::report(Code::L7Rsp, "the startup message is too long"))?;
    message[..4].copy_from_slice(&length.to_be_bytes());
    Ok(message)
}

/// One backend message: a type byte, a length counting itself, the body.
async fn read_message(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), Report> {
    let mut head = [0u8; 5];
    wire::read_exact(stream, &mut head, "a PostgreSQL reply").await?;
    if !matches!(head[0], b'R' | b'E') {
        return Err(wire::report(
            Code::L7Rsp,
            format!("not a PostgreSQL reply: \"{}\"", wire::printable(&head)),
        ));
    }
    let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_MESSAGE + 4).contains(&length) {
        return Err(malformed(&format!("a message length of {length}")));
    }
    let mut body = vec![0; length - 4];
    wire::read_exact(stream, &mut body, "the end of the PostgreSQL reply").await?;
    Ok((head[0], body))
}

fn malformed(what: &str) -> Report {
    wire::report(Code::L7Rsp, format!("not a PostgreSQL reply: {what}"))
}

fn method_name(method: u32) -> &'static str {
    match method {
        2 => ": Kerberos V5",
        3 => ": cleartext password",
        5 => ": MD5 password",
        7 => ": GSSAPI",
        9 => ": SSPI",
        10 => ": SASL",
        _ => "",
    }
}

/// The fields of an `ErrorResponse` a report needs.
struct ServerError {
    severity: String,
    code: String,
    message: String,
}

impl ServerError {
    /// Fields are a type byte and a NUL-terminated string each, ended by a NUL.
    fn parse(body: &[u8]) -> Option<Self> {
        let (mut localized, mut severity, mut code, mut message) = (None, None, None, None);
        let mut rest = body;
        loop {
            let (&field, after) = rest.split_first()?;
            if field == 0 {
                break;
            }
            let end = after.iter().position(|&b| b == 0)?;
            let value = wire::printable(&after[..end]);
            match field {
                b'S' => localized = Some(value),
                b'V' => severity = Some(value),
                b'C' => code = Some(value),
                b'M' => message = Some(value),
                _ => {}
            }
            rest = &after[end + 1..];
        }
        Some(Self {
            // `V` is never translated; older servers send only `S`.
            severity: severity.or(localized).unwrap_or_else(|| "ERROR".into()),
            code: code.unwrap_or_default(),
            message: message.unwrap_or_default(),
        })
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL {}", self.severity)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Peer, check, peer, read_to_end};
    use super::*;
    use crate::table::Probe;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn postgres(database: Option<&str>) -> Probe {
        Probe::Postgres(PostgresProbe {
            user: "sluice".into(),
            database: database.map(str::to_owned),
        })
    }

    const STARTUP: &[u8] = b"\0\0\0\x3a\0\x03\0\0user\0sluice\0\
        application_name\0sluice-health-check\0\0";

    /// A server that checks the startup message, answers `reply` and returns
    /// what the client sent afterwards.
    async fn server(reply: &'static [u8]) -> (Peer, tokio::sync::oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let peer = peer(move |mut s| async move {
            let mut startup = vec![0u8; STARTUP.len()];
            s.read_exact(&mut startup).await.unwrap();
            assert_eq!(startup, STARTUP);
            s.write_all(reply).await.unwrap();
            s.shutdown().await.unwrap();
            let _ = tx.send(read_to_end(&mut s).await);
        })
        .await;
        (peer, rx)
    }

    fn error(code: &str, message: &str) -> Vec<u8> {
        let fields = format!("SFATAL\0VFATAL\0C{code}\0M{message}\0Fpostinit.c\0\0");
        let mut out = vec![b'E'];
        out.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(fields.as_bytes());
        out
    }

    #[tokio::test]
    async fn an_authentication_request_passes() {
        let (peer, _) = server(b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0").await;
        let report = check(&postgres(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(
                Code::L7Ok,
                "PostgreSQL asked for authentication (method 10: SASL)"
            )
        );
    }

    #[tokio::test]
    async fn a_login_passes_and_terminates() {
        let (peer, after) = server(b"R\0\0\0\x08\0\0\0\0").await;
        let report = check(&postgres(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Ok, "{report}");
        assert_eq!(after.await.unwrap(), b"X\0\0\0\x04");
    }

    #[tokio::test]
    async fn the_database_is_named_when_set() {
        let peer = peer(|mut s| async move {
            let mut length = [0u8; 4];
            s.read_exact(&mut length).await.unwrap();
            let mut rest = vec![0u8; u32::from_be_bytes(length) as usize - 4];
            s.read_exact(&mut rest).await.unwrap();
            assert!(
                rest.windows(13).any(|w| w == b"database\0app\0"),
                "{rest:?}"
            );
            s.write_all(b"R\0\0\0\x0c\0\0\0\x05salt").await.unwrap();
        })
        .await;
        let report = check(&postgres(Some("app")), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Ok, "{report}");
        assert!(report.detail.contains("method 5: MD5"), "{report}");
    }

    #[tokio::test]
    async fn a_login_error_still_means_serving() {
        let reply = error("28000", "role \"sluice\" does not exist").leak();
        let (peer, _) = server(reply).await;
        let report = check(&postgres(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(
                Code::L7Ok,
                "PostgreSQL FATAL 28000: role \"sluice\" does not exist"
            )
        );
    }

    #[tokio::test]
    async fn starting_up_or_shutting_down_is_down() {
        for code in NOT_SERVING {
            let reply = error(code, "the database system is starting up").leak();
            let (peer, _) = server(reply).await;
            let report = check(&postgres(None), &peer.target).await;
            peer.finish().await;
            assert_eq!(report.code, Code::L7Rsp, "{report}");
            assert_eq!(
                report.detail,
                format!("PostgreSQL FATAL {code}: the database system is starting up")
            );
        }
    }

    #[tokio::test]
    async fn replies_that_are_not_postgres_fail() {
        let cases: [(&'static [u8], &str); 5] = [
            (
                b"HTTP/1.1 400 Bad Request\r\n\r\n",
                "not a PostgreSQL reply: \"HTTP/\"",
            ),
            (b"R\0\0\0\x02", "a message length of 2"),
            (b"E\x7f\0\0\0", "a message length of"),
            (b"R\0\0\0\x06\0\0", "a short authentication request"),
            (b"E\0\0\0\x09SFATAL", "a malformed error"),
        ];
        for (reply, fragment) in cases {
            let (peer, _) = server(reply).await;
            let report = check(&postgres(None), &peer.target).await;
            peer.finish().await;
            assert_eq!(report.code, Code::L7Rsp, "{reply:?}: {report}");
            assert!(report.detail.contains(fragment), "{reply:?}: {report}");
        }
    }

    #[tokio::test]
    async fn closing_early_fails() {
        let (peer, _) = server(b"").await;
        let report = check(&postgres(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(Code::L7Rsp, "closed before a PostgreSQL reply")
        );

        let (peer, _) = server(b"E\0\0\0\x40SFATAL\0").await;
        let report = check(&postgres(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(Code::L7Rsp, "closed before the end of the PostgreSQL reply")
        );
    }
}
