//! Endpoint addresses: an IP socket address, or `name:port` for endpoints known by
//! DNS name (Kubernetes ExternalName Services), resolved when connecting.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointAddress {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl EndpointAddress {
    /// A DNS name and port; the name must be a valid host name.
    pub fn host_port(host: &str, port: u16) -> Result<Self, String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        super::validate::dns_name(&host)?;
        if port == 0 {
            return Err(format!("invalid socket address {host}:0: port 0"));
        }
        Ok(Self::Name { host, port })
    }

    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            Self::Ip(a) => Some(*a),
            Self::Name { .. } => None,
        }
    }
}

impl From<SocketAddr> for EndpointAddress {
    fn from(a: SocketAddr) -> Self {
        Self::Ip(a)
    }
}

impl std::str::FromStr for EndpointAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self::Ip(a));
        }
        let invalid = |why: &str| format!("invalid socket address {s:?}: {why}");
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected IP:PORT or NAME:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port must be 1-65535"))?;
        if host.parse::<std::net::IpAddr>().is_ok()
            || host.starts_with('[')
            || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        {
            return Err(invalid("bad IP address or port"));
        }
        Self::host_port(host, port).map_err(|e| invalid(&e))
    }
}

impl std::fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(a) => write!(f, "{a}"),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl Serialize for EndpointAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EndpointAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ips_and_names() {
        assert_eq!(
            "10.0.0.1:80"
                .parse::<EndpointAddress>()
                .unwrap()
                .to_string(),
            "10.0.0.1:80"
        );
        assert_eq!(
            "[::1]:443".parse::<EndpointAddress>().unwrap().to_string(),
            "[::1]:443"
        );
        assert_eq!(
            "DB.Example.com.:5432"
                .parse::<EndpointAddress>()
                .unwrap()
                .to_string(),
            "db.example.com:5432"
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "127.0.0.1:99999",
            "localhost",
            "a b:80",
            "10.0.0:80",
            ":80",
            "x:0",
            "[::1:80",
        ] {
            let err = bad.parse::<EndpointAddress>().unwrap_err();
            assert!(err.contains("invalid socket address"), "{bad}: {err}");
        }
    }
}
