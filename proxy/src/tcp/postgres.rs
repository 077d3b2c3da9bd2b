//! PostgreSQL's `SSLRequest` in front of TLS, so classic PostgreSQL clients
//! (every version before 17, and 17 without `sslnegotiation=direct`) can be
//! routed by SNI on a `tls_passthrough` listener: the proxy answers the
//! request with `S` itself, reads the ClientHello that follows, and replays
//! the request to the chosen server before the hello.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Length 8, then the code 80877103 (`1234 5679`).
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How a passthrough connection opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Opening {
    /// A PostgreSQL `SSLRequest`, answered `S`; the ClientHello comes next.
    SslRequest,
    /// Anything else: these first bytes start what should be a ClientHello.
    Other(Vec<u8>),
}

/// Reads the client's first byte and, when it may start an `SSLRequest`
/// (a TLS record starts with 22, never 0), the rest of the request.
pub async fn opening<S: AsyncRead + AsyncWrite + Unpin>(client: &mut S) -> io::Result<Opening> {
    let mut first = [0u8; 1];
    if client.read(&mut first).await? == 0 {
        return Ok(Opening::Other(Vec::new()));
    }
    if first[0] != SSL_REQUEST[0] {
        return Ok(Opening::Other(first.to_vec()));
    }
    let mut request = [0u8; 8];
    request[0] = first[0];
    client.read_exact(&mut request[1..]).await?;
    if request != SSL_REQUEST {
        // Not TLS and not the one PostgreSQL request we understand.
        return Ok(Opening::Other(request.to_vec()));
    }
    client.write_all(b"S").await?;
    Ok(Opening::SslRequest)
}

/// Sends `preamble` (a PROXY header, or nothing) and an `SSLRequest` to a
/// server and waits, at most `limit`, for its `S`.
pub async fn request_ssl<S: AsyncRead + AsyncWrite + Unpin>(
    server: &mut S,
    preamble: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let exchange = async {
        let mut out = preamble.to_vec();
        out.extend_from_slice(&SSL_REQUEST);
        server.write_all(&out).await?;
        let mut answer = [0u8; 1];
        server.read_exact(&mut answer).await?;
        match answer[0] {
            b'S' => Ok(()),
            b'N' => Err(io::Error::other(
                "the server does not accept TLS (answered N)",
            )),
            other => Err(io::Error::other(format!(
                "not a PostgreSQL answer to SSLRequest (byte {other})"
            ))),
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::other(format!(
                "no answer to SSLRequest within {limit:?}"
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ssl_request_is_answered_and_anything_else_is_handed_back() {
        let (mut near, mut far) = tokio::io::duplex(64);
        far.write_all(&SSL_REQUEST).await.unwrap();
        far.write_all(&[22, 3, 1]).await.unwrap();
        assert_eq!(opening(&mut near).await.unwrap(), Opening::SslRequest);
        let mut answer = [0u8; 1];
        far.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"S");
        let mut rest = [0u8; 3];
        near.read_exact(&mut rest).await.unwrap();
        assert_eq!(rest, [22, 3, 1], "the ClientHello is left to be read");

        let (mut near, mut far) = tokio::io::duplex(64);
        far.write_all(&[22, 3, 1, 0, 5]).await.unwrap();
        assert_eq!(opening(&mut near).await.unwrap(), Opening::Other(vec![22]));

        // A startup message (protocol 3.0) is not an SSLRequest: no answer.
        let (mut near, mut far) = tokio::io::duplex(64);
        far.write_all(&[0, 0, 0, 8, 0, 3, 0, 0]).await.unwrap();
        assert_eq!(
            opening(&mut near).await.unwrap(),
            Opening::Other(vec![0, 0, 0, 8, 0, 3, 0, 0])
        );
    }

    #[tokio::test]
    async fn the_server_must_answer_s() {
        for (answer, ok) in [(b'S', true), (b'N', false), (b'E', false)] {
            let (mut near, mut far) = tokio::io::duplex(64);
            let server = tokio::spawn(async move {
                let mut got = [0u8; 12];
                far.read_exact(&mut got).await.unwrap();
                far.write_all(&[answer]).await.unwrap();
                got
            });
            let result = request_ssl(&mut near, b"PRE:", Duration::from_secs(5)).await;
            assert_eq!(result.is_ok(), ok, "{answer}: {result:?}");
            let got = server.await.unwrap();
            assert_eq!(&got[..4], b"PRE:");
            assert_eq!(got[4..], SSL_REQUEST);
        }
    }
}
