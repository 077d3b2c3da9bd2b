//! TCP listeners: every connection to the port goes, byte for byte, to one
//! backend (HAProxy's `mode tcp` frontend with a `default_backend`): for
//! databases and anything else that is not HTTP.

use super::{BackendId, Duration, IpNet, SourceRef};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpListener {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    pub bind: SocketAddr,
    pub backend: BackendId,
    /// Connections open at once at most (a frontend's `maxconn`); one more is
    /// closed as soon as it is accepted, and counted. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conn: Option<u32>,
    /// Client addresses admitted (absent: everyone; empty: nobody); others
    /// are closed at once and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_sources: Option<Vec<IpNet>>,
    /// Client addresses closed at once, checked before `allow_sources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_sources: Vec<IpNet>,
    /// Connections start with a PROXY protocol header (v1 or v2) naming the
    /// real client (`accept-proxy`). Only `trusted` peers may send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_proxy: Option<AcceptProxy>,
    #[serde(default)]
    pub timeouts: TcpTimeouts,
}

/// Where PROXY protocol headers are believed from: the load balancers in
/// front. A connection from any other peer is closed (it could name any
/// client), as is one whose header is malformed or late; the `allow_sources`
/// and `deny_sources` of the listener then apply to the address the header names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptProxy {
    pub trusted: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpTimeouts {
    /// Closed when the client sends nothing for this long (`timeout client`).
    pub client_idle: Duration,
    /// Closed when the endpoint sends nothing for this long (`timeout server`).
    pub server_idle: Duration,
    /// When set, replaces both: closed when nothing moves either way for this
    /// long (`timeout tunnel`), for protocols where one side may stay silent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Duration>,
    /// The whole PROXY header must arrive within this from accept.
    pub proxy_header: Duration,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        Self {
            client_idle: Duration::from_secs(3600),
            server_idle: Duration::from_secs(3600),
            tunnel: None,
            proxy_header: Duration::from_secs(5),
        }
    }
}
