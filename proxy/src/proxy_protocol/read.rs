//! Reading a PROXY header off a connection, bounded in time and size.

use super::{MAX_V1, MAX_V2, Parsed, ProxyHeader, Rejection, parse};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 prefix, which gives the header's exact length.
const V2_PREFIX: usize = 16;

/// Why no PROXY header was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("the peer closed the connection before its PROXY header was complete")]
    Closed,
    #[error(transparent)]
    Invalid(Rejection),
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads `stream`'s PROXY header, within `limit`. Returns the header and the
/// bytes read past it, which are the start of the client's data and must be
/// forwarded first.
///
/// A v2 header is read exactly (its prefix gives the length), so nothing
/// after it is read. A v1 line has no length: reads ask for up to
/// [`MAX_V1`] bytes and the excess comes back. Before the first byte shows
/// the version, up to 16 bytes are asked for (no header is shorter than 15,
/// and a v1 line is read past its end anyway). The buffer never exceeds
/// [`MAX_V2`].
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<(ProxyHeader, Vec<u8>), ReadError> {
    let read = async {
        let mut buf = Vec::with_capacity(MAX_V1);
        loop {
            let need = match parse(&buf) {
                Parsed::Done { header, len } => {
                    let rest = buf.split_off(len.min(buf.len()));
                    return Ok((header, rest));
                }
                Parsed::Invalid(why) => return Err(ReadError::Invalid(why)),
                Parsed::Incomplete(need) => need,
            };
            let have = buf.len();
            // `parse` promises more than we have and at most the maximum; a
            // broken promise must not loop or grow the buffer.
            if need <= have || need > MAX_V2 {
                return Err(ReadError::Invalid(Rejection::TooLong));
            }
            let want = match buf.first() {
                None => need.max(V2_PREFIX),
                Some(b'P') => need.max(MAX_V1),
                Some(_) => need,
            };
            buf.resize(want, 0);
            let n = stream.read(&mut buf[have..]).await?;
            buf.truncate(have + n);
            if n == 0 {
                return Err(ReadError::Closed);
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or(Err(ReadError::Timeout(limit)))
}
