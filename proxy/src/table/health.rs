//! Health checks in the table: active probes (HAProxy's `check`, `option httpchk`,
//! `tcp-check`, `pgsql-check`, `mysql-check`, `redis-check` with `inter`,
//! `fastinter`, `downinter`, `rise`, `fall`, `port`) and passive checks of real
//! traffic (`observe layer7` with `error-limit`, as ejection for a period).

use super::{Duration, MethodName, SearchPattern};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An active check. An endpoint is down after `fall` failures in a row and up
/// again after `rise` successes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// What one check does; a TCP connection when absent.
    #[serde(skip_serializing_if = "Probe::is_tcp")]
    pub probe: Probe,
    /// Between the starts of two checks (`inter`).
    pub interval: Duration,
    /// While the state is changing: after a failure of an up endpoint or a
    /// success of a down one (`fastinter`). Default: `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_interval: Option<Duration>,
    /// While the endpoint is down (`downinter`). Default: `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_interval: Option<Duration>,
    /// One check's whole exchange, connection included. Default: `interval`,
    /// as HAProxy without `timeout check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    /// The state before the first check completes (`init-state`).
    #[serde(skip_serializing_if = "InitialState::is_up")]
    pub initial: InitialState,
    /// Check this port rather than the endpoint's traffic port (`port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe: Probe::Tcp,
            interval: Duration::from_secs(2),
            fast_interval: None,
            down_interval: None,
            timeout: None,
            rise: 2,
            fall: 3,
            initial: InitialState::Up,
            port: None,
        }
    }
}

impl HealthCheck {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.interval)
    }
    pub fn fast_interval(&self) -> Duration {
        self.fast_interval.unwrap_or(self.interval)
    }
    pub fn down_interval(&self) -> Duration {
        self.down_interval.unwrap_or(self.interval)
    }
}

/// Where a checked endpoint starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialState {
    /// Up (Kubernetes already said it is ready); one failure short of `fall`
    /// would not take it out, `fall` failures do.
    #[default]
    Up,
    /// Down until `rise` checks pass (HAProxy's default for new servers).
    Down,
}

impl InitialState {
    fn is_up(&self) -> bool {
        *self == InitialState::Up
    }
}

/// One check's exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// The TCP connection is accepted.
    #[default]
    Tcp,
    /// An HTTP/1.1 request; the status (and optionally the body) decide.
    Http(HttpProbe),
    /// The TLS handshake completes (the certificate is not verified).
    Tls(TlsProbe),
    /// Steps over TCP: send bytes, expect bytes or a regex (`tcp-check`).
    SendExpect(SendExpect),
    /// PostgreSQL: a startup message answered by an authentication request or
    /// an error (`pgsql-check`).
    Postgres(PostgresProbe),
    /// MySQL / MariaDB: the server greeting, and a login when `user` is set
    /// (`mysql-check`).
    Mysql(MysqlProbe),
    /// Redis: `PING` answered by `+PONG`, after `AUTH` when a password is set
    /// (`redis-check`).
    Redis(RedisProbe),
}

impl Probe {
    fn is_tcp(&self) -> bool {
        *self == Probe::Tcp
    }

    /// The name used in logs and the admin output.
    pub fn name(&self) -> &'static str {
        match self {
            Probe::Tcp => "tcp",
            Probe::Http(p) if p.tls => "https",
            Probe::Http(_) => "http",
            Probe::Tls(_) => "tls",
            Probe::SendExpect(_) => "send_expect",
            Probe::Postgres(_) => "postgres",
            Probe::Mysql(_) => "mysql",
            Probe::Redis(_) => "redis",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpProbe {
    pub method: MethodName,
    /// Path and query.
    pub path: String,
    /// `Host` header; the endpoint's address when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Statuses that pass; 200–399 when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<StatusRange>,
    /// The body must contain this text (read up to 64 KiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_body: Option<String>,
    /// Speak HTTPS (`check-ssl`); the certificate is not verified.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

impl Default for HttpProbe {
    fn default() -> Self {
        Self {
            method: MethodName::get(),
            path: "/".into(),
            host: None,
            expect_status: Vec::new(),
            expect_body: None,
            tls: false,
        }
    }
}

impl HttpProbe {
    pub fn status_passes(&self, status: u16) -> bool {
        if self.expect_status.is_empty() {
            return (200..400).contains(&status);
        }
        self.expect_status
            .iter()
            .any(|r| (r.first..=r.last).contains(&status))
    }
}

/// A status or an inclusive range, written `200` or `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub first: u16,
    pub last: u16,
}

impl StatusRange {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a status (100–599) or a range like 200-299");
        let status = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(bad)
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (status(a)?, status(b)?),
            None => {
                let s = status(text)?;
                (s, s)
            }
        };
        if first > last {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl Serialize for StatusRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.serialize_str(&format!("{}-{}", self.first, self.last))
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Number(n) => n.to_string(),
            Written::Text(t) => t,
        };
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsProbe {
    /// Server name sent in the handshake; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendExpect {
    pub steps: Vec<Step>,
}

/// One step of a send/expect check. `expect*` reads until the bytes received
/// since the last send match, the peer closes, 16 KiB arrive, or time runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Text to send (YAML escapes such as `\r\n` apply).
    Send(String),
    /// Bytes to send, in hex.
    SendHex(HexBytes),
    /// The reply contains this text.
    Expect(String),
    /// The reply contains these bytes.
    ExpectHex(HexBytes),
    /// The reply (as text, invalid UTF-8 replaced) matches this regex.
    ExpectRegex(SearchPattern),
}

/// Bytes written as hex digits (spaces allowed between pairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexBytes(pub Vec<u8>);

impl HexBytes {
    pub fn parse(text: &str) -> Result<Self, String> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(format!("{text:?}: an odd number of hex digits"));
        }
        digits
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| format!("{text:?} is not hex"))
            })
            .collect::<Result<Vec<u8>, String>>()
            .map(Self)
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresProbe {
    /// The role named in the startup message. It need not exist: an error
    /// reply proves the server is serving.
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

impl Default for PostgresProbe {
    fn default() -> Self {
        Self {
            user: "sluice".into(),
            database: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MysqlProbe {
    /// Log in as this user (no password) and quit, as HAProxy's `mysql-check
    /// user`; the check then passes only on a successful login. Without it the
    /// greeting alone decides, which MySQL counts as an aborted connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisProbe {
    /// ACL user for `AUTH` (Redis 6+); needs `password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<super::SecretText>,
}

/// Passive checks: real traffic's failures eject an endpoint for a while
/// (HAProxy `observe layer7` + `error-limit` + `on-error`, Envoy's outlier
/// detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PassiveCheck {
    /// Failures in a row that eject: failed connections, response timeouts,
    /// and (with `count_5xx`) responses 500, 502, 503 and 504.
    pub consecutive_failures: u32,
    pub count_5xx: bool,
    /// How long an ejected endpoint gets no new requests.
    pub eject_for: Duration,
    /// At most this percentage of a backend's endpoints is ejected at once (at
    /// least one may always be).
    pub max_ejected_percent: u32,
}

impl Default for PassiveCheck {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            count_5xx: true,
            eject_for: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }
}

impl HealthCheck {
    /// Settings that cannot work, as (field below `health_check`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |field: &str, message: String| out.push((field.to_owned(), message));
        if self.rise == 0 {
            push("rise", "must be at least 1".into());
        }
        if self.fall == 0 {
            push("fall", "must be at least 1".into());
        }
        for (field, value) in [
            ("interval", Some(self.interval)),
            ("fast_interval", self.fast_interval),
            ("down_interval", self.down_interval),
            ("timeout", self.timeout),
        ] {
            if value.is_some_and(|d| d.as_millis() == 0) {
                push(field, "must be longer than 0".into());
            }
        }
        if self.port == Some(0) {
            push("port", "must be 1–65535".into());
        }
        match &self.probe {
            Probe::Http(http) => {
                if !http.path.starts_with('/')
                    || http::uri::PathAndQuery::try_from(http.path.as_str()).is_err()
                {
                    push(
                        "probe.http.path",
                        format!("{:?} is not a path starting with /", http.path),
                    );
                }
                if let Some(host) = &http.host
                    && http::HeaderValue::from_str(host).is_err()
                {
                    push("probe.http.host", format!("{host:?} is not a valid Host"));
                }
            }
            Probe::SendExpect(s) if s.steps.is_empty() => {
                push("probe.send_expect.steps", "needs at least one step".into());
            }
            Probe::Postgres(p) if p.user.is_empty() || p.user.contains('\0') => {
                push("probe.postgres.user", "must be a non-empty name".into());
            }
            Probe::Redis(r) if r.username.is_some() && r.password.is_none() => {
                push("probe.redis.username", "needs `password`".into());
            }
            _ => {}
        }
        out
    }
}

impl PassiveCheck {
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.consecutive_failures == 0 {
            out.push(("consecutive_failures".into(), "must be at least 1".into()));
        }
        if self.eject_for.as_millis() == 0 {
            out.push(("eject_for".into(), "must be longer than 0".into()));
        }
        if self.max_ejected_percent > 100 {
            out.push((
                "max_ejected_percent".into(),
                format!("{} is above 100", self.max_ejected_percent),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse_and_match() {
        assert_eq!(
            StatusRange::parse("200-299"),
            Ok(StatusRange {
                first: 200,
                last: 299
            })
        );
        assert!(StatusRange::parse("299-200").is_err());
        assert!(StatusRange::parse("99").is_err());
        assert!(StatusRange::parse("abc").is_err());
        let probe = HttpProbe {
            expect_status: vec![
                StatusRange::parse("204").unwrap(),
                StatusRange::parse("300-302").unwrap(),
            ],
            ..HttpProbe::default()
        };
        assert!(probe.status_passes(204) && probe.status_passes(301));
        assert!(!probe.status_passes(200) && !probe.status_passes(303));
        assert!(HttpProbe::default().status_passes(302));
        assert!(!HttpProbe::default().status_passes(503));
    }

    #[test]
    fn hex_bytes_parse() {
        assert_eq!(HexBytes::parse("0a ff").unwrap().0, vec![0x0a, 0xff]);
        assert!(HexBytes::parse("abc").is_err());
        assert!(HexBytes::parse("zz").is_err());
    }

    #[test]
    fn probes_read_from_yaml() {
        let yaml = "probe:\n  http:\n    path: /healthz\n    expect_status: [200, \"300-399\"]\n\
                    interval: 500ms\nfall: 2\n";
        let check: HealthCheck = serde_saphyr::from_str(yaml).unwrap();
        let Probe::Http(http) = &check.probe else {
            panic!("{check:?}")
        };
        assert_eq!(http.path, "/healthz");
        assert_eq!(http.method.as_str(), "GET");
        assert_eq!(check.timeout(), Duration::from_millis(500));
        let steps = "probe:\n  send_expect:\n    steps:\n      - send: \"PING\\r\\n\"\n      - expect_regex: '^\\+PONG'\n";
        let check: HealthCheck = serde_saphyr::from_str(steps).unwrap();
        assert_eq!(check.probe.name(), "send_expect");
        let redis = "probe:\n  redis:\n    password: hunter2\n";
        let check: HealthCheck = serde_saphyr::from_str(redis).unwrap();
        let shown = serde_json::to_string(&check).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
