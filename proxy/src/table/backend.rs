//! Backends: endpoints and how requests are spread over them (HAProxy's `backend`
//! section: `balance`, server `weight`/`backup`/`maxconn`, `maxqueue`, `retries`,
//! `option redispatch`, `slowstart`; checks are in `health.rs`).

use super::{
    BackendTls, Duration, EndpointAddress, HeaderNameText, HealthCheck, PassiveCheck, SourceRef,
    Stickiness,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Absent: `least_conn` for a backend a `tcp` listener names (connections
    /// are long and uneven), `round_robin` otherwise (see [`Backend::balance_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    #[serde(default)]
    pub protocol: BackendProtocol,
    #[serde(default)]
    pub timeouts: BackendTimeouts,
    /// Further attempts after a failed connection (HAProxy `retries`). Which
    /// requests may be sent again is documented in docs/balancing.md.
    #[serde(
        default = "default_retries",
        skip_serializing_if = "is_default_retries"
    )]
    pub retries: u32,
    /// Retries go to another endpoint when one is available (`option redispatch`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub redispatch: bool,
    /// A returning or new endpoint's weight ramps up over this time (`slowstart`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<Duration>,
    /// When every primary endpoint is unavailable: balance over all backups
    /// (`option allbackups`) rather than only the first available one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_backups: bool,
    /// Requests waiting for an endpoint slot when every endpoint is at its
    /// `max_conn` (`maxqueue`). Absent: no limit; the queue timeout still applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
    /// Active checks that take failing endpoints out of rotation (`check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Failures of real traffic eject an endpoint for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_check: Option<PassiveCheck>,
    /// An idempotent request without a body whose response timed out is sent
    /// to another endpoint (within `retries`), as nginx's `proxy_next_upstream
    /// timeout` and HAProxy's `retry-on response-timeout`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_on_timeout: bool,
    /// Session persistence: a cookie keeps a client on its endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Stickiness>,
    /// TLS to the endpoints (re-encryption). Absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<BackendTls>,
    /// A PROXY protocol header sent first on every connection to an endpoint,
    /// naming the client (`send-proxy`, `send-proxy-v2`). Connections of `tcp`
    /// and `tls_passthrough` listeners only: pooled HTTP connections carry
    /// many clients' requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
}

/// PROXY protocol versions: v1 is text, v2 binary (both HAProxy's spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

fn default_retries() -> u32 {
    3
}
fn is_default_retries(n: &u32) -> bool {
    *n == default_retries()
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

impl Default for Backend {
    fn default() -> Self {
        Self {
            source: None,
            endpoints: Vec::new(),
            balance: None,
            protocol: BackendProtocol::default(),
            timeouts: BackendTimeouts::default(),
            retries: default_retries(),
            redispatch: true,
            slow_start: None,
            all_backups: false,
            max_queue: None,
            health_check: None,
            passive_check: None,
            retry_on_timeout: false,
            sticky: None,
            tls: None,
            proxy_protocol: None,
        }
    }
}

impl Backend {
    /// The algorithm in force: the one set, else the default for what the
    /// backend serves (`least_conn` when a `tcp` listener names it).
    pub fn balance_for(&self, connections: bool) -> Balance {
        match &self.balance {
            Some(balance) => balance.clone(),
            None if connections => Balance::LeastConn,
            None => Balance::RoundRobin,
        }
    }
}

/// How the proxy speaks to a backend's endpoints.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum BackendProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 over cleartext, by prior knowledge (gRPC backends).
    H2c,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: EndpointAddress,
    /// Relative share of requests, 0–256. 0 drains: the endpoint takes no new requests.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only when no primary endpoint is available (`backup`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backup: bool,
    /// Requests in flight to this endpoint at most (`maxconn`); more wait in the
    /// backend's queue. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_conn: Option<u32>,
}

impl Endpoint {
    pub fn new(address: impl Into<EndpointAddress>, weight: u32) -> Self {
        Self {
            address: address.into(),
            weight,
            backup: false,
            max_conn: None,
        }
    }
}

fn default_weight() -> u32 {
    1
}

pub const MAX_WEIGHT: u32 = 256;

/// Load-balancing algorithm (HAProxy's `balance`), one file each in `balance/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Smooth weighted round robin; weights may change at run time (slow start).
    #[default]
    RoundRobin,
    /// Weighted round robin over a fixed schedule (`static-rr`).
    StaticRr,
    /// Fewest requests in flight relative to weight; ties go round robin.
    LeastConn,
    /// The first endpoint in order with a free slot (needs `max_conn` to spread).
    First,
    /// Power of two choices: two weighted random draws, the less loaded wins.
    Random,
    /// Hash of the client address.
    Source(HashOptions),
    /// Hash of the path (and query when `whole`).
    Uri(UriHash),
    /// Hash of a query parameter; round robin when it is absent.
    UrlParam(NamedHash),
    /// Hash of a request header; round robin when it is absent.
    Header(HeaderHash),
    /// Hash of a cookie's value; round robin when it is absent.
    Cookie(NamedHash),
}

impl Balance {
    /// The hashing options of a hash-based algorithm.
    pub fn hash_options(&self) -> Option<HashOptions> {
        match self {
            Balance::Source(h) => Some(*h),
            Balance::Uri(u) => Some(HashOptions::new(u.hash, u.bounded_load)),
            Balance::UrlParam(n) | Balance::Cookie(n) => {
                Some(HashOptions::new(n.hash, n.bounded_load))
            }
            Balance::Header(h) => Some(HashOptions::new(h.hash, h.bounded_load)),
            _ => None,
        }
    }

    /// Algorithms that read the HTTP request, and so cannot balance TCP connections.
    pub fn needs_http(&self) -> bool {
        matches!(
            self,
            Balance::Uri(_) | Balance::UrlParam(_) | Balance::Header(_) | Balance::Cookie(_)
        )
    }

    /// HAProxy's name for the algorithm, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::StaticRr => "static_rr",
            Balance::LeastConn => "least_conn",
            Balance::First => "first",
            Balance::Random => "random",
            Balance::Source(_) => "source",
            Balance::Uri(_) => "uri",
            Balance::UrlParam(_) => "url_param",
            Balance::Header(_) => "header",
            Balance::Cookie(_) => "cookie",
        }
    }
}

/// `hash-type` and `hash-balance-factor`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashOptions {
    #[serde(default, skip_serializing_if = "HashMethod::is_map")]
    pub hash: HashMethod,
    /// Consistent hashing only: no endpoint takes more than this percentage of
    /// the average load (at least 100); keys of a busier one move to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<u32>,
}

impl HashOptions {
    pub fn new(hash: HashMethod, bounded_load: Option<u32>) -> Self {
        Self { hash, bounded_load }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashMethod {
    /// A weighted table indexed by hash modulo its size: even spread, but most
    /// keys move when the endpoint set changes (`map-based`).
    #[default]
    Map,
    /// A hash ring: about 1/N of the keys move when one of N endpoints comes or goes.
    Consistent,
}

impl HashMethod {
    fn is_map(&self) -> bool {
        *self == HashMethod::Map
    }
}

/// `balance uri [len N] [depth N] [whole]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriHash {
    /// Only the first N directories of the path count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// Only the first N characters count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u32>,
    /// The query string counts too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole: bool,
    #[serde(default, skip_serializing_if = "HashMethod::is_map")]
    pub hash: HashMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<u32>,
}

/// A named query parameter or cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedHash {
    pub name: String,
    #[serde(default, skip_serializing_if = "HashMethod::is_map")]
    pub hash: HashMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderHash {
    pub name: HeaderNameText,
    #[serde(default, skip_serializing_if = "HashMethod::is_map")]
    pub hash: HashMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendTimeouts {
    /// TCP connect to an endpoint.
    pub connect: Duration,
    /// From sending the request until the response head arrives.
    pub response: Duration,
    /// An idle pooled connection to an endpoint is closed after this long.
    pub pool_idle: Duration,
    /// How long a request waits for a slot when every endpoint is at `max_conn`
    /// (`timeout queue`); then 503.
    #[serde(skip_serializing_if = "is_default_queue")]
    pub queue: Duration,
}

fn is_default_queue(d: &Duration) -> bool {
    *d == BackendTimeouts::default().queue
}

impl Default for BackendTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(60),
            pool_idle: Duration::from_secs(90),
            queue: Duration::from_secs(5),
        }
    }
}

impl Backend {
    /// Settings that cannot work, as (field path below the backend, message). A
    /// table file with any is refused by `check`; the compiler serves such a
    /// backend with the setting replaced by its default and a warning.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |field: &str, message: String| out.push((field.to_owned(), message));
        let balance = self.balance.as_ref().unwrap_or(&Balance::RoundRobin);
        if let Some(options) = balance.hash_options()
            && let Some(factor) = options.bounded_load
        {
            let field = format!("balance.{}.bounded_load", balance.name());
            if options.hash != HashMethod::Consistent {
                push(&field, "needs `hash: consistent`".into());
            } else if factor < 100 {
                push(
                    &field,
                    format!("{factor} is below 100 (percent of the average load)"),
                );
            }
        }
        if let Balance::UrlParam(NamedHash { name, .. }) | Balance::Cookie(NamedHash { name, .. }) =
            balance
            && !is_token(name)
        {
            let field = format!("balance.{}.name", balance.name());
            push(
                &field,
                format!("{name:?} is not a valid parameter or cookie name"),
            );
        }
        for (i, ep) in self.endpoints.iter().enumerate() {
            if ep.max_conn == Some(0) {
                push(
                    &format!("endpoints[{i}].max_conn"),
                    "0 would admit no request; omit it for no limit".into(),
                );
            }
        }
        if let Some(check) = &self.health_check {
            for (field, message) in check.problems() {
                push(&format!("health_check.{field}"), message);
            }
        }
        if let Some(passive) = &self.passive_check {
            for (field, message) in passive.problems() {
                push(&format!("passive_check.{field}"), message);
            }
        }
        if let Some(sticky) = &self.sticky {
            for (field, message) in sticky.problems() {
                push(&format!("sticky.{field}"), message);
            }
        }
        out
    }
}

/// Query parameter and cookie names: visible ASCII without separators.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"=;,&?#\"\\".contains(&b))
}
