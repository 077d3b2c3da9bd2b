//! Errors the proxy itself answers, classified once into a status and a side.

use super::ProxyBody;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

/// Who is at fault: used by logs now, by metrics and retry decisions later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("the client address is not allowed on this route")]
    Forbidden,
    #[error("the listener is no longer configured")]
    ListenerGone,
    #[error("backend `{0}` is not defined")]
    MissingBackend(std::sync::Arc<str>),
    #[error(transparent)]
    NoEndpoint(#[from] crate::balance::NoEndpoint),
    #[error("connection refused or failed: {0}")]
    Connect(String),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("no response within {0}")]
    ResponseTimeout(crate::table::Duration),
    #[error("backend failed: {0}")]
    Upstream(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Forbidden => StatusCode::FORBIDDEN,
            ProxyError::ListenerGone
            | ProxyError::MissingBackend(_)
            | ProxyError::NoEndpoint(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) | ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute | ProxyError::Forbidden => Side::Client,
            ProxyError::ListenerGone
            | ProxyError::MissingBackend(_)
            | ProxyError::NoEndpoint(_) => Side::Internal,
            _ => Side::Upstream,
        }
    }

    /// What the client sees: the reason only, never addresses or internals.
    fn public_reason(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route for this host and path",
            ProxyError::Forbidden => "access denied",
            ProxyError::ListenerGone => "listener is shutting down",
            ProxyError::MissingBackend(_) | ProxyError::NoEndpoint(_) => "no server is available",
            ProxyError::Connect(_) | ProxyError::Upstream(_) => "the server could not be reached",
            ProxyError::ConnectTimeout | ProxyError::ResponseTimeout(_) => {
                "the server did not answer in time"
            }
        }
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = format!(
            "{} {}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.public_reason()
        );
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Classifies a failure of the pooled client.
    pub fn from_client(err: &crate::upstream::Error) -> Self {
        let io_kind = find_io_kind(err);
        if err.is_connect() {
            if io_kind == Some(std::io::ErrorKind::TimedOut) {
                ProxyError::ConnectTimeout
            } else {
                ProxyError::Connect(chain(err))
            }
        } else {
            ProxyError::Upstream(chain(err))
        }
    }
}

fn find_io_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// "outer: inner: innermost", so one log line carries the whole cause.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cur = e.source();
    }
    text
}
