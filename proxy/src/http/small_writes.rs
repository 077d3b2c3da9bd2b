//! Small vectored writes sent as one buffer: `send(2)` rather than `writev(2)`.
//!
//! hyper writes a message as its head plus its body (two slices). On Linux,
//! writev goes through the VFS (fd position lock check, iovec import, fsnotify)
//! before reaching the socket, where std's `write` on a socket is a `send`
//! straight to it; for a few hundred bytes, copying them together is cheaper
//! than that detour. Large writes stay vectored, so big bodies are not copied.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Up to this many bytes are copied into one buffer.
const SMALL: usize = 1024;

/// Writes `bufs` to `io`: one non-empty slice, or several adding up to
/// [`SMALL`] bytes, with `poll_write`; more with `poll_write_vectored`.
pub fn poll_write_vectored<W: AsyncWrite + ?Sized>(
    io: Pin<&mut W>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    let mut slices = bufs.iter().filter(|b| !b.is_empty());
    let (first, second) = (slices.next(), slices.next());
    match (first, second) {
        (None, _) => io.poll_write(cx, &[]),
        (Some(only), None) => io.poll_write(cx, only),
        _ => {
            let total = bufs.iter().map(|b| b.len()).sum::<usize>();
            if total > SMALL {
                return io.poll_write_vectored(cx, bufs);
            }
            let mut joined = [0u8; SMALL];
            let mut len = 0;
            for b in bufs {
                joined[len..len + b.len()].copy_from_slice(b);
                len += b.len();
            }
            io.poll_write(cx, &joined[..len])
        }
    }
}

/// A stream whose small vectored writes go out as one `send`.
pub struct SmallWrites<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for SmallWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SmallWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        poll_write_vectored(Pin::new(&mut self.0), cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records each call: true for vectored.
    #[derive(Default)]
    struct Recorder {
        written: Vec<u8>,
        calls: Vec<bool>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls.push(false);
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls.push(true);
            let mut n = 0;
            for b in bufs {
                self.written.extend_from_slice(b);
                n += b.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_are_joined_and_large_ones_stay_vectored() {
        let mut io = SmallWrites(Recorder::default());
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n";
        let n = io
            .write_vectored(&[IoSlice::new(head), IoSlice::new(b""), IoSlice::new(b"abc")])
            .await
            .unwrap();
        assert_eq!(n, head.len() + 3);
        let big = vec![7u8; 4096];
        let n = io
            .write_vectored(&[IoSlice::new(head), IoSlice::new(&big)])
            .await
            .unwrap();
        assert_eq!(n, head.len() + big.len());
        let n = io.write_vectored(&[IoSlice::new(&big)]).await.unwrap();
        assert_eq!(n, big.len());
        assert_eq!(io.0.calls, [false, true, false]);
        let mut want = [&head[..], b"abc", head, &big, &big].concat();
        assert_eq!(io.0.written.len(), want.len());
        assert_eq!(std::mem::take(&mut io.0.written), std::mem::take(&mut want));
    }
}
