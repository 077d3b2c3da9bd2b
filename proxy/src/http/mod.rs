//! The HTTP data plane: connections → route → forward (pooled) → response.

pub mod body;
pub mod conn;
pub mod errors;
pub mod headers;
pub mod secure;
pub mod service;
pub mod small_writes;

/// Response body: streamed from a backend, or a small proxy-generated one.
pub type ProxyBody = http_body_util::Either<body::ResponseBody, http_body_util::Full<bytes::Bytes>>;
