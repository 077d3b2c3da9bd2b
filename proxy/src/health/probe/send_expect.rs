//! Send/expect steps over TCP (`tcp-check send` / `expect`). Each `expect*`
//! looks at everything received since the last send, reading more until it
//! matches, the peer closes, or [`MAX_REPLY`] bytes have arrived.

use super::{Code, PhaseTracker, Report, Target, tcp, wire};
use crate::table::{SendExpect, Step};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const MAX_REPLY: usize = 16 * 1024;

pub async fn check(probe: &SendExpect, target: &Target, phase: &PhaseTracker) -> Report {
    let mut stream = match tcp::connect(target, phase).await {
        Ok(stream) => stream,
        Err(report) => return report,
    };
    let mut received = Vec::new();
    for (index, step) in probe.steps.iter().enumerate() {
        let number = index + 1;
        let outcome = match step {
            Step::Send(text) => send(&mut stream, &mut received, text.as_bytes(), number).await,
            Step::SendHex(bytes) => send(&mut stream, &mut received, &bytes.0, number).await,
            expect => match Expectation::of(expect) {
                Some(expectation) => {
                    expectation
                        .await_in(&mut stream, &mut received, number)
                        .await
                }
                None => Ok(()),
            },
        };
        if let Err(report) = outcome {
            return report;
        }
    }
    Report::new(Code::L7Ok, format!("{} steps passed", probe.steps.len()))
}

async fn send(
    stream: &mut TcpStream,
    received: &mut Vec<u8>,
    bytes: &[u8],
    number: usize,
) -> Result<(), Report> {
    // A new exchange: later expects look at the answer to this send only.
    received.clear();
    wire::write_all(stream, bytes, &format!("step {number}")).await
}

enum Expectation<'a> {
    Bytes(&'a [u8]),
    Regex(&'a regex::Regex, &'a str),
}

impl<'a> Expectation<'a> {
    fn of(step: &'a Step) -> Option<Self> {
        match step {
            Step::Expect(text) => Some(Self::Bytes(text.as_bytes())),
            Step::ExpectHex(bytes) => Some(Self::Bytes(&bytes.0)),
            Step::ExpectRegex(pattern) => Some(Self::Regex(pattern.regex(), pattern.as_str())),
            Step::Send(_) | Step::SendHex(_) => None,
        }
    }

    fn matches(&self, received: &[u8]) -> bool {
        match self {
            Self::Bytes(needle) => wire::contains(received, needle),
            Self::Regex(regex, _) => regex.is_match(&String::from_utf8_lossy(received)),
        }
    }

    /// What was expected, for details: `"text"` or `/regex/`.
    fn describe(&self) -> String {
        match self {
            Self::Bytes(needle) => format!("\"{}\"", wire::printable(needle)),
            Self::Regex(_, source) => format!("/{}/", wire::printable(source.as_bytes())),
        }
    }

    async fn await_in(
        &self,
        stream: &mut TcpStream,
        received: &mut Vec<u8>,
        number: usize,
    ) -> Result<(), Report> {
        loop {
            if self.matches(received) {
                return Ok(());
            }
            if received.len() >= MAX_REPLY {
                let what = format!("no {} in 16 KiB", self.describe());
                return Err(failure(number, &what, received));
            }
            let room = MAX_REPLY - received.len();
            let what = match (&mut *stream).take(room as u64).read_buf(received).await {
                Ok(0) => format!("closed before {}", self.describe()),
                Ok(_) => continue,
                Err(e) => format!("{e} before {}", self.describe()),
            };
            return Err(failure(number, &what, received));
        }
    }
}

/// The `L7RSP` for a failed step, quoting the start of what did arrive.
fn failure(number: usize, what: &str, received: &[u8]) -> Report {
    let seen = wire::printable(received);
    wire::report(
        Code::L7Rsp,
        format!("step {number}: {what} (got \"{seen}\")"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check, peer, read_to_end};
    use super::*;
    use crate::table::{HexBytes, Probe, SearchPattern};
    use tokio::io::AsyncWriteExt;

    fn steps(steps: Vec<Step>) -> Probe {
        Probe::SendExpect(SendExpect { steps })
    }

    #[tokio::test]
    async fn steps_run_in_order_over_a_split_reply() {
        let peer = peer(|mut s| async move {
            let mut hello = [0u8; 6];
            s.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"HELLO\n");
            // The expected text arrives in two segments.
            s.write_all(b"220 ser").await.unwrap();
            s.flush().await.unwrap();
            s.write_all(b"vice ready\r\n").await.unwrap();
            let mut quit = [0u8; 2];
            s.read_exact(&mut quit).await.unwrap();
            assert_eq!(quit, [0x01, 0xff]);
            s.write_all(&[0x00, 0xbe, 0xef]).await.unwrap();
            let _ = read_to_end(&mut s).await;
        })
        .await;
        let probe = steps(vec![
            Step::Send("HELLO\n".into()),
            Step::Expect("service ready".into()),
            Step::ExpectRegex(SearchPattern::new(r"^220 \w+").unwrap()),
            Step::SendHex(HexBytes(vec![0x01, 0xff])),
            Step::ExpectHex(HexBytes(vec![0xbe, 0xef])),
        ]);
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report, Report::new(Code::L7Ok, "5 steps passed"));
    }

    #[tokio::test]
    async fn a_send_forgets_what_came_before() {
        let peer = peer(|mut s| async move {
            s.write_all(b"banner OK\n").await.unwrap();
            let mut ping = [0u8; 5];
            s.read_exact(&mut ping).await.unwrap();
            s.write_all(b"nope\n").await.unwrap();
        })
        .await;
        let probe = steps(vec![
            Step::Expect("OK".into()),
            Step::Send("PING\n".into()),
            Step::Expect("OK".into()),
        ]);
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert_eq!(
            report.detail,
            "step 3: closed before \"OK\" (got \"nope\\n\")"
        );
    }

    #[tokio::test]
    async fn a_regex_reads_invalid_utf8_as_replaced() {
        let peer = peer(|mut s| async move {
            s.write_all(b"\xff\xfeSTATUS=down\n").await.unwrap();
        })
        .await;
        let probe = steps(vec![Step::ExpectRegex(
            SearchPattern::new("STATUS=(up|ok)").unwrap(),
        )]);
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert_eq!(
            report.detail,
            "step 1: closed before /STATUS=(up|ok)/ (got \"\\xff\\xfeSTATUS=down\\n\")"
        );
    }

    #[tokio::test]
    async fn reading_stops_at_16_kib() {
        let peer = peer(|mut s| async move {
            let junk = vec![b'x'; MAX_REPLY + 10];
            let _ = s.write_all(&junk).await;
            let _ = read_to_end(&mut s).await;
        })
        .await;
        let probe = steps(vec![Step::Expect("never".into())]);
        let report = check(&probe, &peer.target).await;
        peer.finish().await;
        assert_eq!(report.code, Code::L7Rsp, "{report}");
        assert!(
            report.detail.starts_with("step 1: no \"never\" in 16 KiB"),
            "{report}"
        );
        assert!(report.detail.chars().count() <= 201, "{report}");
    }
}
