//! Redis (`redis-check`): `PING` answered by `+PONG`, after `AUTH` when a
//! password is set. Error replies (`-NOAUTH`, `-LOADING`, `-MASTERDOWN`)
//! mean down. The password never appears in a detail.

use super::{Code, PhaseTracker, Report, Target, tcp, wire};
use crate::table::RedisProbe;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest reply line read; Redis error lines are far shorter.
const MAX_LINE: usize = 4096;

pub async fn check(probe: &RedisProbe, target: &Target, phase: &PhaseTracker) -> Report {
    let mut stream = match tcp::connect(target, phase).await {
        Ok(stream) => stream,
        Err(report) => return report,
    };
    let password = probe
        .password
        .as_ref()
        .map(crate::table::SecretText::expose);
    let report = exchange(probe, password, &mut stream)
        .await
        .unwrap_or_else(|report| report);
    wire::send_goodbye(&mut stream, &command(&["QUIT"])).await;
    report
}

async fn exchange(
    probe: &RedisProbe,
    password: Option<&str>,
    stream: &mut TcpStream,
) -> Result<Report, Report> {
    let mut lines = Lines {
        buffer: Vec::new(),
        secret: password.filter(|p| !p.is_empty()),
    };
    if let Some(password) = password {
        let mut auth = vec!["AUTH"];
        auth.extend(probe.username.as_deref());
        auth.push(password);
        wire::write_all(stream, &command(&auth), "AUTH").await?;
        let reply = lines.next(stream, "the AUTH reply").await?;
        if reply != b"+OK" {
            return Err(refused("AUTH", &lines.quote(&reply), &reply));
        }
    }
    wire::write_all(stream, &command(&["PING"]), "PING").await?;
    let reply = lines.next(stream, "the PING reply").await?;
    if reply == b"+PONG" {
        return Ok(Report::new(Code::L7Ok, "+PONG"));
    }
    Err(refused("PING", &lines.quote(&reply), &reply))
}

fn refused(command: &str, line: &str, reply: &[u8]) -> Report {
    if reply.starts_with(b"-") {
        wire::report(Code::L7Rsp, format!("{command}: {line}"))
    } else {
        wire::report(
            Code::L7Rsp,
            format!("{command}: unexpected reply \"{line}\""),
        )
    }
}

/// A RESP array of bulk strings, as clients send commands.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reply lines (`\r\n`-terminated), keeping bytes read past a line for the next.
struct Lines<'a> {
    buffer: Vec<u8>,
    /// The password, hidden wherever reply bytes are quoted: belt and braces
    /// against a server that echoes it.
    secret: Option<&'a str>,
}

impl Lines<'_> {
    /// Reply bytes for a detail, the password replaced before cutting.
    fn quote(&self, bytes: &[u8]) -> String {
        let Some(secret) = self.secret.map(str::as_bytes) else {
            return wire::printable(bytes);
        };
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while let Some((&first, tail)) = rest.split_first() {
            if rest.starts_with(secret) {
                out.extend_from_slice(b"<password>");
                rest = &rest[secret.len()..];
            } else {
                out.push(first);
                rest = tail;
            }
        }
        wire::printable(&out)
    }

    async fn next(&mut self, stream: &mut TcpStream, what: &str) -> Result<Vec<u8>, Report> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line = self.buffer[..end].to_vec();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            if self.buffer.len() >= MAX_LINE {
                let start = self.quote(&self.buffer);
                return Err(wire::report(
                    Code::L7Rsp,
                    format!("{what} is not a line: \"{start}\""),
                ));
            }
            let room = (MAX_LINE - self.buffer.len()) as u64;
            match (&mut *stream).take(room).read_buf(&mut self.buffer).await {
                Ok(0) if self.buffer.is_empty() => {
                    return Err(wire::report(Code::L7Rsp, format!("closed before {what}")));
                }
                Ok(0) => {
                    let start = self.quote(&self.buffer);
                    return Err(wire::report(
                        Code::L7Rsp,
                        format!("closed within {what}: \"{start}\""),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(wire::report(Code::L7Rsp, format!("reading {what}: {e}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, peer, read_to_end};
    use super::*;
    use crate::table::{Probe, SecretText};
    use tokio::io::AsyncWriteExt;

    fn redis(username: Option<&str>, password: Option<&str>) -> Probe {
        Probe::Redis(RedisProbe {
            username: username.map(str::to_owned),
            password: password.map(|p| SecretText::new(p.to_owned())),
        })
    }

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    const QUIT: &[u8] = b"*1\r\n$4\r\nQUIT\r\n";

    async fn expect(s: &mut TcpStream, bytes: &[u8]) {
        let mut got = vec![0u8; bytes.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(bytes)
        );
    }

    #[tokio::test]
    async fn pong_passes_and_the_check_quits() {
        let peer = peer(|mut s| async move {
            expect(&mut s, PING).await;
            s.write_all(b"+PONG\r\n").await.unwrap();
            assert_eq!(read_to_end(&mut s).await, QUIT);
        })
        .await;
        let report = check(&redis(None, None), &peer.target).await;
        peer.finish().await;
        assert_eq!(report, Report::new(Code::L7Ok, "+PONG"));
    }

    #[tokio::test]
    async fn auth_comes_first_with_the_acl_user() {
        let peer = peer(|mut s| async move {
            expect(
                &mut s,
                b"*3\r\n$4\r\nAUTH\r\n$6\r\nhealth\r\n$7\r\nhunter2\r\n",
            )
            .await;
            s.write_all(b"+OK\r\n").await.unwrap();
            expect(&mut s, PING).await;
            s.write_all(b"+PONG\r\n").await.unwrap();
        })
        .await;
        let report = check(&redis(Some("health"), Some("hunter2")), &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Ok, "{report}");
    }

    #[tokio::test]
    async fn a_refused_auth_fails_without_showing_the_password() {
        let peer = peer(|mut s| async move {
            expect(&mut s, b"*2\r\n$4\r\nAUTH\r\n$7\r\nhunter2\r\n").await;
            // A server that (unlike Redis) echoes the argument.
            s.write_all(b"-WRONGPASS invalid password hunter2\r\n")
                .await
                .unwrap();
        })
        .await;
        let report = check(&redis(None, Some("hunter2")), &peer.target).await;
        peer.finish().await;
        assert_eq!(
            report,
            Report::new(Code::L7Rsp, "AUTH: -WRONGPASS invalid password <password>")
        );
    }

    #[tokio::test]
    async fn error_replies_to_ping_are_down() {
        for line in [
            "-LOADING Redis is loading the dataset in memory",
            "-NOAUTH Authentication required.",
        ] {
            let reply = format!("{line}\r\n");
            let peer = peer(move |mut s| async move {
                expect(&mut s, PING).await;
                s.write_all(reply.as_bytes()).await.unwrap();
            })
            .await;
            let report = check(&redis(None, None), &peer.target).await;
            peer.finish().await;
            assert_eq!(report, Report::new(Code::L7Rsp, format!("PING: {line}")));
        }
    }

    #[tokio::test]
    async fn other_replies_fail() {
        let cases: [(&'static [u8], &str); 4] = [
            (b"$4\r\nPONG\r\n", "PING: unexpected reply \"$4\""),
            (b"+PONG", "closed within the PING reply: \"+PONG\""),
            (b"", "closed before the PING reply"),
            (&[b'x'; MAX_LINE + 1], "the PING reply is not a line"),
        ];
        for (reply, fragment) in cases {
            let peer = peer(move |mut s| async move {
                expect(&mut s, PING).await;
                let _ = s.write_all(reply).await;
            })
            .await;
            let report = check(&redis(None, None), &peer.target).await;
            peer.finish().await;
            assert_eq!(report.code, Code::L7Rsp, "{report}");
            assert!(report.detail.starts_with(fragment), "{report}");
        }
    }
}
