//! Bodies on their way through: a request body that comes back when none of it
//! was sent (so a failed connection can be retried), and a response body that
//! holds the endpoint's slot until the response ends (so `leastconn` and
//! `max_conn` count whole exchanges, not just the wait for the head).

use crate::balance::Lease;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

pub struct RequestBody {
    inner: Option<Incoming>,
    /// Set at the first poll: from then on, part of the body may be gone.
    polled: bool,
    give_back: Option<oneshot::Sender<Incoming>>,
}

impl RequestBody {
    pub fn new(inner: Incoming) -> Self {
        Self {
            inner: Some(inner),
            polled: false,
            give_back: None,
        }
    }

    /// A body handed back through the receiver if it is dropped unpolled.
    pub fn returnable(inner: Incoming) -> (Self, oneshot::Receiver<Incoming>) {
        let (tx, rx) = oneshot::channel();
        let body = Self {
            inner: Some(inner),
            polled: false,
            give_back: Some(tx),
        };
        (body, rx)
    }

    /// No body (a bodyless request sent again).
    pub fn empty() -> Self {
        Self {
            inner: None,
            polled: false,
            give_back: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        match &mut this.inner {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if !self.polled
            && let (Some(inner), Some(tx)) = (self.inner.take(), self.give_back.take())
        {
            let _ = tx.send(inner);
        }
    }
}

/// A backend's response body, holding the endpoint slot until it is dropped.
pub struct ResponseBody {
    inner: Incoming,
    _lease: Lease,
}

impl ResponseBody {
    pub fn new(inner: Incoming, lease: Lease) -> Self {
        Self {
            inner,
            _lease: lease,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
