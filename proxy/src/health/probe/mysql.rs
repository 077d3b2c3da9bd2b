//! MySQL / MariaDB (`mysql-check`): the server greeting decides; with `user`,
//! a password-less login as that user (then `COM_QUIT`) must succeed, as
//! HAProxy's `mysql-check user`, which the server does not count as an
//! aborted connection.

use super::{Code, PhaseTracker, Report, Target, tcp, wire};
use crate::table::MysqlProbe;
use tokio::net::TcpStream;

/// Longest packet accepted (a greeting is about 100 bytes).
const MAX_PACKET: usize = 64 * 1024;
const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
const MAX_CLIENT_PACKET: u32 = 16 * 1024 * 1024;
const UTF8MB4_GENERAL_CI: u8 = 45;
/// Replies a login may take (auth switch, fast-auth notice, OK).
const MAX_LOGIN_ROUNDS: usize = 4;

pub async fn check(probe: &MysqlProbe, target: &Target, phase: &PhaseTracker) -> Report {
    let mut stream = match tcp::connect(target, phase).await {
        Ok(stream) => stream,
        Err(report) => return report,
    };
    exchange(probe, &mut stream)
        .await
        .unwrap_or_else(|report| report)
}

async fn exchange(probe: &MysqlProbe, stream: &mut TcpStream) -> Result<Report, Report> {
    let (sequence, greeting) = read_packet(stream, "a MySQL greeting").await?;
    let version = match greeting.split_first() {
        Some((10, rest)) => {
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| not_mysql("a greeting without a version"))?;
            wire::printable(&rest[..end])
        }
        Some((0xff, _)) => {
            return Err(wire::report(
                Code::L7Rsp,
                format!("MySQL error {}", error_text(&greeting)),
            ));
        }
        _ => return Err(not_mysql(&format!("\"{}\"", wire::printable(&greeting)))),
    };
    let Some(user) = &probe.user else {
        return Ok(Report::new(Code::L7Ok, format!("MySQL {version} greeting")));
    };
    login(stream, user, sequence.wrapping_add(1)).await?;
    // The server would count a dropped session as aborted; quit properly.
    wire::send_goodbye(stream, &packet(0, &[0x01])).await;
    Ok(wire::report(
        Code::L7Ok,
        format!(
            "MySQL {version}: logged in as {}",
            wire::printable(user.as_bytes())
        ),
    ))
}

/// A password-less HandshakeResponse41, then the replies until OK.
async fn login(stream: &mut TcpStream, user: &str, sequence: u8) -> Result<(), Report> {
    let mut response = Vec::with_capacity(64 + user.len());
    let capabilities =
        CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;
    response.extend_from_slice(&capabilities.to_le_bytes());
    response.extend_from_slice(&MAX_CLIENT_PACKET.to_le_bytes());
    response.push(UTF8MB4_GENERAL_CI);
    response.extend_from_slice(&[0; 23]);
    response.extend_from_slice(user.as_bytes());
    response.push(0);
    response.push(0); // auth response length: no password
    response.extend_from_slice(b"mysql_native_password\0");
    wire::write_all(stream, &packet(sequence, &response), "the MySQL login").await?;

    let who = wire::printable(user.as_bytes());
    for _ in 0..MAX_LOGIN_ROUNDS {
        let (sequence, reply) = read_packet(stream, "the MySQL login reply").await?;
        match reply.first() {
            Some(0x00) => return Ok(()),
            // Auth switch request: answer for that plugin with no password.
            Some(0xfe) => {
                let answer = packet(sequence.wrapping_add(1), &[]);
                wire::write_all(stream, &answer, "the MySQL auth switch answer").await?;
            }
            // caching_sha2_password's "fast auth succeeded"; the OK follows.
            Some(0x01) if reply.get(1) == Some(&0x03) => {}
            Some(0xff) => {
                return Err(wire::report(
                    Code::L7Rsp,
                    format!("login as {who} refused: {}", error_text(&reply)),
                ));
            }
            _ => {
                let seen = wire::printable(&reply);
                return Err(not_mysql(&format!("\"{seen}\" answering the login")));
            }
        }
    }
    Err(wire::report(
        Code::L7Rsp,
        format!("login as {who} did not finish"),
    ))
}

/// A packet: 3-byte little-endian payload length, sequence number, payload.
fn packet(sequence: u8, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&length[..3]);
    out.push(sequence);
    out.extend_from_slice(payload);
    out
}

async fn read_packet(stream: &mut TcpStream, what: &str) -> Result<(u8, Vec<u8>), Report> {
    let mut head = [0u8; 4];
    wire::read_exact(stream, &mut head, what).await?;
    let length = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    if length == 0 || length > MAX_PACKET {
        // Likely not MySQL at all: show the bytes rather than the length.
        return Err(not_mysql(&format!("\"{}\"", wire::printable(&head))));
    }
    let mut payload = vec![0; length];
    wire::read_exact(stream, &mut payload, what).await?;
    Ok((head[3], payload))
}

/// `CODE: message` of an ERR packet (0xff, 2-byte code, optional `#` and a
/// 5-character SQL state, message).
fn error_text(payload: &[u8]) -> String {
    let Some(code) = payload.get(1..3) else {
        return "(no error code)".into();
    };
    let code = u16::from_le_bytes([code[0], code[1]]);
    let mut message = payload.get(3..).unwrap_or_default();
    if message.first() == Some(&b'#') {
        message = message.get(6..).unwrap_or_default();
    }
    format!("{code}: {}", wire::printable(message))
}

fn not_mysql(what: &str) -> Report {
    wire::report(Code::L7Rsp, format!("not a MySQL reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, peer, read_to_end};
    use super::*;
    use crate::table::Probe;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn mysql(user: Option<&str>) -> Probe {
        Probe::Mysql(MysqlProbe {
            user: user.map(str::to_owned),
        })
    }

    /// A MariaDB protocol-10 greeting (sequence 0).
    fn greeting() -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"10.11.6-MariaDB\0");
        p.extend_from_slice(&[7, 0, 0, 0]); // connection id
        p.extend_from_slice(b"abcdefgh\0"); // scramble part 1, filler
        p.extend_from_slice(&[0xfe, 0xf7, 45, 2, 0, 0xff, 0x81, 21]);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        packet(0, &p)
    }

    fn login_packet(user: &str) -> Vec<u8> {
        let mut p = vec![0x01, 0x82, 0x08, 0x00, 0, 0, 0, 1, 45];
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.extend_from_slice(b"\0\0mysql_native_password\0");
        packet(1, &p)
    }

    async fn read_packet_bytes(s: &mut TcpStream) -> Vec<u8> {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        let mut out = head.to_vec();
        out.resize(
            4 + u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize,
            0,
        );
        s.read_exact(&mut out[4..]).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_greeting_passes_without_user() {
        let peer = peer(|mut s| async move {
            s.write_all(&greeting()).await.unwrap();
            assert_eq!(read_to_end(&mut s).await, b"");
        })
        .await;
        let report = check(&mysql(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(Code::L7Ok, "MySQL 10.11.6-MariaDB greeting")
        );
    }

    #[tokio::test]
    async fn a_login_passes_and_quits() {
        let peer = peer(|mut s| async move {
            s.write_all(&greeting()).await.unwrap();
            assert_eq!(read_packet_bytes(&mut s).await, login_packet("haproxy"));
            s.write_all(&packet(2, &[0, 0, 0, 2, 0, 0, 0]))
                .await
                .unwrap();
            assert_eq!(read_to_end(&mut s).await, [1, 0, 0, 0, 1]);
        })
        .await;
        let report = check(&mysql(Some("haproxy")), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(Code::L7Ok, "MySQL 10.11.6-MariaDB: logged in as haproxy")
        );
    }

    #[tokio::test]
    async fn an_auth_switch_is_answered_empty() {
        let peer = peer(|mut s| async move {
            s.write_all(&greeting()).await.unwrap();
            read_packet_bytes(&mut s).await;
            let switch = packet(2, b"\xfecaching_sha2_password\0scramble12345678901\0");
            s.write_all(&switch).await.unwrap();
            assert_eq!(read_packet_bytes(&mut s).await, [0, 0, 0, 3]);
            s.write_all(&packet(4, &[0x01, 0x03])).await.unwrap();
            s.write_all(&packet(5, &[0, 0, 0, 2, 0, 0, 0]))
                .await
                .unwrap();
            assert_eq!(read_to_end(&mut s).await, [1, 0, 0, 0, 1]);
        })
        .await;
        let report = check(&mysql(Some("haproxy")), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Ok, "{report}");
    }

    #[tokio::test]
    async fn a_refused_login_is_l7rsp() {
        let peer = peer(|mut s| async move {
            s.write_all(&greeting()).await.unwrap();
            read_packet_bytes(&mut s).await;
            let denied = b"\xff\x15\x04#28000Access denied for user 'haproxy'@'10.0.0.9'";
            s.write_all(&packet(2, denied)).await.unwrap();
        })
        .await;
        let report = check(&mysql(Some("haproxy")), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(
                Code::L7Rsp,
                "login as haproxy refused: 1045: Access denied for user 'haproxy'@'10.0.0.9'"
            )
        );
    }

    #[tokio::test]
    async fn an_error_greeting_is_l7rsp() {
        let peer = peer(|mut s| async move {
            let blocked = b"\xffi\x04Host '10.0.0.9' is blocked because of many connection errors";
            s.write_all(&packet(0, blocked)).await.unwrap();
        })
        .await;
        let report = check(&mysql(None), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert!(
            report
                .detail
                .starts_with("MySQL error 1129: Host '10.0.0.9' is blocked"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn replies_that_are_not_mysql_fail() {
        let cases: [(&'static [u8], &str); 4] = [
            (
                b"HTTP/1.1 400 Bad Request\r\n\r\n",
                "not a MySQL reply: \"HTTP\"",
            ),
            (b"\x03\0\0\0\x09ab", "not a MySQL reply: \"\\tab\""),
            (b"\x03\0\0\0\x0aab", "a greeting without a version"),
            (b"\x10\0\0\0\x0a5.7", "closed before a MySQL greeting"),
        ];
        for (reply, fragment) in cases {
            let peer = peer(move |mut s| async move {
                s.write_all(reply).await.unwrap();
            })
            .await;
            let report = check(&mysql(None), &peer.target).await;
            peer.finish().await;
            assert_eq!(report.code, Code::L7Rsp, "{reply:?}: {report}");
            assert!(report.detail.contains(fragment), "{reply:?}: {report}");
        }
    }
}
