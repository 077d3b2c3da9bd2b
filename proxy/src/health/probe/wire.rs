//! What the protocol probes share: bounded, printable details and I/O whose
//! failures become `L7RSP` reports.

use super::{Code, Report};
use std::fmt::Write as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest piece of peer (or configured) text quoted in a detail, in chars;
/// short prefixes go around it, so details stay near 200.
const MAX_QUOTED: usize = 160;
/// Hard cap on a whole detail, in chars.
const MAX_DETAIL: usize = 200;

/// Bytes as one printable line: control characters and invalid UTF-8
/// escaped, cut at [`MAX_QUOTED`] chars with `…`.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if chars >= MAX_QUOTED {
                out.push('…');
                return out;
            }
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
            chars += 1;
        }
        for b in chunk.invalid() {
            if chars >= MAX_QUOTED {
                out.push('…');
                return out;
            }
            let _ = write!(out, "\\x{b:02x}");
            chars += 1;
        }
    }
    out
}

/// An error and its sources on one line (`hyper` and `rustls` put the useful
/// part in the source).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        // Some wrappers repeat their source's text; say it once.
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    printable(text.as_bytes())
}

/// A report whose detail is cut to [`MAX_DETAIL`] chars, whatever built it.
pub fn report(code: Code, detail: impl Into<String>) -> Report {
    let mut detail = detail.into();
    if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL) {
        detail.truncate(cut);
        detail.push('…');
    }
    Report::new(code, detail)
}

/// Whether `needle` occurs in `haystack` (the empty needle always does).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fills `buf`, or says the peer closed (or failed) before `what` arrived.
pub async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    what: &str,
) -> Result<(), Report> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(report(Code::L7Rsp, format!("closed before {what}")))
        }
        Err(e) => Err(report(Code::L7Rsp, format!("reading {what}: {e}"))),
    }
}

pub async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    what: &str,
) -> Result<(), Report> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| report(Code::L7Rsp, format!("sending {what}: {e}")))
}

/// Sends a goodbye (`QUIT`, `Terminate`) if the socket takes it at once: the
/// check is decided, so it must not wait on (or be timed out by) a peer that
/// stopped reading.
pub async fn send_goodbye<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    at_once(stream.write_all(bytes)).await;
}

/// Polls `future` once and drops it if it is not done by then.
pub async fn at_once(future: impl std::future::Future) {
    tokio::select! {
        biased;
        _ = future => {}
        () = std::future::ready(()) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(
            printable(b"ok\r\n\x00\xff\xfe tail"),
            "ok\\r\\n\\u{0}\\xff\\xfe tail"
        );
        assert_eq!(printable("rôle \"x\"".as_bytes()), "rôle \"x\"");
        let long = printable(&[b'a'; 1000]);
        assert_eq!(long.chars().count(), MAX_QUOTED + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn reports_are_capped() {
        let r = report(Code::L7Rsp, "é".repeat(500));
        assert_eq!(r.detail.chars().count(), MAX_DETAIL + 1);
        assert_eq!(report(Code::L7Ok, "short").detail, "short");
    }
}
