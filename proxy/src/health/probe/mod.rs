//! One check's exchange with an endpoint, per probe kind (one file each), and
//! its result in HAProxy's terms (`L4OK`, `L4CON`, `L7STS 503`, …).
//!
//! A probe never enforces the check's timeout itself: the caller wraps it in
//! one, and reads the [`PhaseTracker`] to tell a connect timeout (`L4TOUT`)
//! from a TLS one (`L6TOUT`) or a silent application (`L7TOUT`).

mod http;
mod mysql;
mod postgres;
mod redis;
mod send_expect;
mod tcp;
#[cfg(test)]
mod testing;
mod tls;
mod wire;

use crate::table::{Duration, EndpointAddress, Probe};
use std::sync::atomic::{AtomicU8, Ordering};

/// Where a check goes: the endpoint's host and the checked port (the traffic
/// port unless the check overrides it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An IP address (without brackets) or a DNS name, resolved on connect.
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn new(address: &EndpointAddress, port_override: Option<u16>) -> Self {
        let (host, port) = match address {
            EndpointAddress::Ip(a) => (a.ip().to_string(), a.port()),
            EndpointAddress::Name { host, port } => (host.clone(), *port),
        };
        Self {
            host,
            port: port_override.unwrap_or(port),
        }
    }

    /// `host:port`, bracketing IPv6, for `Host` headers and messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How far a check got, so a timeout can be named by the layer that was silent.
#[derive(Debug, Default)]
pub struct PhaseTracker(AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Connect = 0,
    Tls = 1,
    Reply = 2,
}

impl PhaseTracker {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            0 => Phase::Connect,
            1 => Phase::Tls,
            _ => Phase::Reply,
        }
    }

    /// The report for a check that ran out of time in its current phase.
    pub fn timed_out(&self, timeout: Duration) -> Report {
        let code = match self.get() {
            Phase::Connect => Code::L4Tout,
            Phase::Tls => Code::L6Tout,
            Phase::Reply => Code::L7Tout,
        };
        Report::new(code, format!("no answer within {timeout}"))
    }
}

/// A check's outcome, HAProxy's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Connected (TCP check).
    L4Ok,
    /// TLS handshake completed (TLS check).
    L6Ok,
    /// The application answered as expected.
    L7Ok,
    /// Connection refused, reset or unreachable.
    L4Con,
    L4Tout,
    /// The TLS handshake failed.
    L6Rsp,
    L6Tout,
    /// An unexpected or malformed reply, or the peer closed early.
    L7Rsp,
    /// An HTTP status outside the expected ones.
    L7Sts(u16),
    L7Tout,
}

impl Code {
    pub fn passed(self) -> bool {
        matches!(self, Code::L4Ok | Code::L6Ok | Code::L7Ok)
    }

    /// `L7STS` without the status; see `Display` for the full form.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::L4Ok => "L4OK",
            Code::L6Ok => "L6OK",
            Code::L7Ok => "L7OK",
            Code::L4Con => "L4CON",
            Code::L4Tout => "L4TOUT",
            Code::L6Rsp => "L6RSP",
            Code::L6Tout => "L6TOUT",
            Code::L7Rsp => "L7RSP",
            Code::L7Sts(_) => "L7STS",
            Code::L7Tout => "L7TOUT",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::L7Sts(status) => write!(f, "L7STS {status}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A code and what was seen, e.g. `L7STS 503: HTTP/1.1 503 Service Unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub code: Code,
    pub detail: String,
}

impl Report {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.detail)
        }
    }
}

/// Runs one check; the caller bounds it with the check's timeout.
pub async fn run(probe: &Probe, target: &Target, phase: &PhaseTracker) -> Report {
    match probe {
        Probe::Tcp => tcp::check(target, phase).await,
        Probe::Http(http) => http::check(http, target, phase).await,
        Probe::Tls(tls) => tls::check(tls, target, phase).await,
        Probe::SendExpect(steps) => send_expect::check(steps, target, phase).await,
        Probe::Postgres(postgres) => postgres::check(postgres, target, phase).await,
        Probe::Mysql(mysql) => mysql::check(mysql, target, phase).await,
        Probe::Redis(redis) => redis::check(redis, target, phase).await,
    }
}
