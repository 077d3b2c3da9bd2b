//! Validation shared by the proxy's compiler and the controller's translation.

/// An exact host name or a `*.` wildcard covering one label, lower-case.
pub fn host(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    dns_name(name).map_err(|_| format!("host {host:?} is not a valid DNS name or `*.` wildcard"))
}

pub fn dns_name(name: &str) -> Result<(), String> {
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!("{name:?} is not a valid DNS name"));
    }
    Ok(())
}
