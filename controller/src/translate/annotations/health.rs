//! `sluice.dev/health-check*` (HAProxy's `check`, `option httpchk`, `inter`,
//! `fastinter`, `downinter`, `rise`, `fall`, `port`) and `sluice.dev/passive-check*`
//! (`observe layer7` / outlier ejection): how the Ingress's backends are checked.
//!
//! Gathered while the annotations are read and resolved once all are known: any
//! `health-check-*` key turns active checks on (HTTP when a path is given, else
//! TCP, unless `health-check-type` says otherwise), any `passive-check-*` key
//! turns passive checks on. An invalid value is ignored with a warning; the rest
//! still apply.

use sluice_proxy::table::{
    Duration, HealthCheck, HttpProbe, InitialState, MysqlProbe, PassiveCheck, PostgresProbe, Probe,
    RedisProbe, StatusRange, TlsProbe,
};

const TYPES: &str = "tcp, http, https, tls, postgres, mysql or redis";

/// The raw (trimmed) values, by name without the `sluice.dev/` prefix.
#[derive(Debug, Default)]
pub struct HealthAnnotations<'a> {
    active: Vec<(&'a str, &'a str)>,
    passive: Vec<(&'a str, &'a str)>,
}

impl<'a> HealthAnnotations<'a> {
    /// Keeps `value` if `name` is a health annotation; returns whether it was.
    pub fn take(&mut self, name: &'a str, value: &'a str) -> bool {
        if name == "health-check" || name.starts_with("health-check-") {
            self.active.push((name, value));
        } else if name == "passive-check" || name.starts_with("passive-check-") {
            self.passive.push((name, value));
        } else {
            return false;
        }
        true
    }

    pub fn resolve(
        self,
        warnings: &mut Vec<String>,
    ) -> (Option<HealthCheck>, Option<PassiveCheck>) {
        (
            active(&self.active, warnings),
            passive(&self.passive, warnings),
        )
    }
}

fn warn(warnings: &mut Vec<String>, name: &str, value: &str, problem: &str) {
    warnings.push(format!(
        "annotation sluice.dev/{name}={value:?}: {problem}; ignored"
    ));
}

fn active(given: &[(&str, &str)], warnings: &mut Vec<String>) -> Option<HealthCheck> {
    if given.is_empty() {
        return None;
    }
    let mut check = HealthCheck::default();
    let mut enabled = true;
    let mut kind: Option<&str> = None;
    let mut http = HttpProbe::default();
    let mut http_given = false;
    for &(name, value) in given {
        let result = match name {
            "health-check" => super::parse_bool(value).map(|on| enabled = on),
            "health-check-type" => match value {
                "tcp" | "http" | "https" | "tls" | "postgres" | "mysql" | "redis" => {
                    kind = Some(value);
                    Ok(())
                }
                _ => Err(format!("must be one of {TYPES}")),
            },
            "health-check-path" => {
                http_given = true;
                {
                    http.path = value.to_owned();
                    Ok(())
                }
            }
            "health-check-host" => {
                http_given = true;
                {
                    http.host = Some(value.to_owned());
                    Ok(())
                }
            }
            "health-check-status" => value
                .split(',')
                .map(|s| StatusRange::parse(s.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map(|ranges| {
                    http_given = true;
                    http.expect_status = ranges;
                }),
            "health-check-interval" => duration(value).map(|d| check.interval = d),
            "health-check-fast-interval" => duration(value).map(|d| check.fast_interval = Some(d)),
            "health-check-down-interval" => duration(value).map(|d| check.down_interval = Some(d)),
            "health-check-timeout" => duration(value).map(|d| check.timeout = Some(d)),
            "health-check-rise" => count(value).map(|n| check.rise = n),
            "health-check-fall" => count(value).map(|n| check.fall = n),
            "health-check-port" => match value.parse::<u16>() {
                Ok(port) if port > 0 => {
                    check.port = Some(port);
                    Ok(())
                }
                _ => Err("must be a port from 1 to 65535".into()),
            },
            "health-check-initial" => match value {
                "up" | "down" => {
                    check.initial = if value == "up" {
                        InitialState::Up
                    } else {
                        InitialState::Down
                    };
                    Ok(())
                }
                _ => Err("must be `up` or `down`".into()),
            },
            _ => Err("unknown annotation".into()),
        };
        if let Err(problem) = result {
            warn(warnings, name, value, &problem);
        }
    }
    if !enabled {
        return None;
    }
    let kind = kind.unwrap_or(if http_given { "http" } else { "tcp" });
    if http_given && !matches!(kind, "http" | "https") {
        warnings.push(format!(
            "annotations sluice.dev/health-check-path, -host and -status apply to http and https checks, not {kind}; ignored"
        ));
    }
    check.probe = match kind {
        "http" => Probe::Http(http),
        "https" => Probe::Http(HttpProbe { tls: true, ..http }),
        "tls" => Probe::Tls(TlsProbe::default()),
        "postgres" => Probe::Postgres(PostgresProbe::default()),
        "mysql" => Probe::Mysql(MysqlProbe::default()),
        "redis" => Probe::Redis(RedisProbe::default()),
        _ => Probe::Tcp,
    };
    let problems = check.problems();
    if !problems.is_empty() {
        for (field, message) in problems {
            warnings.push(format!(
                "annotations sluice.dev/health-check-*: {field} {message}; the health check is off"
            ));
        }
        return None;
    }
    Some(check)
}

fn passive(given: &[(&str, &str)], warnings: &mut Vec<String>) -> Option<PassiveCheck> {
    if given.is_empty() {
        return None;
    }
    let mut check = PassiveCheck::default();
    let mut enabled = true;
    for &(name, value) in given {
        let result = match name {
            "passive-check" => super::parse_bool(value).map(|on| enabled = on),
            "passive-check-failures" => count(value).map(|n| check.consecutive_failures = n),
            "passive-check-5xx" => super::parse_bool(value).map(|on| check.count_5xx = on),
            "passive-check-eject-for" => duration(value).map(|d| check.eject_for = d),
            "passive-check-max-ejected-percent" => match value.parse::<u32>() {
                Ok(n) if n <= 100 => {
                    check.max_ejected_percent = n;
                    Ok(())
                }
                _ => Err("must be a whole number from 0 to 100".into()),
            },
            _ => Err("unknown annotation".into()),
        };
        if let Err(problem) = result {
            warn(warnings, name, value, &problem);
        }
    }
    enabled.then_some(check)
}

fn duration(value: &str) -> Result<Duration, String> {
    super::parse_duration(value).map_err(|e| e.trim_end_matches("; ignored").to_owned())
}

/// `rise`, `fall` and failure counts: 1–100, as HAProxy's bounds are in practice.
fn count(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=100).contains(&n) && value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err("must be a whole number from 1 to 100".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        pairs: &[(&'static str, &'static str)],
    ) -> (Option<HealthCheck>, Option<PassiveCheck>, Vec<String>) {
        let mut h = HealthAnnotations::default();
        for (name, value) in pairs {
            assert!(h.take(name, value), "{name}");
        }
        let mut warnings = Vec::new();
        let (a, p) = h.resolve(&mut warnings);
        (a, p, warnings)
    }

    #[test]
    fn nothing_given_means_no_checks() {
        assert_eq!(resolve(&[]), (None, None, vec![]));
        assert!(!HealthAnnotations::default().take("balance", "x"));
    }

    #[test]
    fn a_path_makes_an_http_check() {
        let (check, passive, warnings) = resolve(&[
            ("health-check-path", "/healthz"),
            ("health-check-interval", "500ms"),
            ("health-check-fall", "2"),
            ("health-check-status", "200-299, 301"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(passive, None);
        let check = check.unwrap();
        assert_eq!(check.interval, Duration::from_millis(500));
        assert_eq!(check.fall, 2);
        let Probe::Http(http) = check.probe else {
            panic!()
        };
        assert_eq!(http.path, "/healthz");
        assert!(http.status_passes(301) && !http.status_passes(302));
    }

    #[test]
    fn types_ports_and_initial_state() {
        let (check, _, warnings) = resolve(&[
            ("health-check-type", "postgres"),
            ("health-check-port", "5433"),
            ("health-check-initial", "down"),
            ("health-check-rise", "3"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let check = check.unwrap();
        assert_eq!(check.probe, Probe::Postgres(PostgresProbe::default()));
        assert_eq!(check.port, Some(5433));
        assert_eq!(check.initial, InitialState::Down);
        assert_eq!(check.rise, 3);
        let (check, _, _) = resolve(&[("health-check", "true")]);
        assert_eq!(check.unwrap().probe, Probe::Tcp);
        let (check, _, _) = resolve(&[("health-check", "false"), ("health-check-fall", "2")]);
        assert_eq!(check, None);
    }

    #[test]
    fn invalid_values_warn_and_the_rest_applies() {
        let (check, _, warnings) = resolve(&[
            ("health-check-type", "ldap"),
            ("health-check-fall", "0"),
            ("health-check-port", "70000"),
            ("health-check-interval", "soon"),
            ("health-check-initial", "maybe"),
            ("health-check-status", "200-100"),
            ("health-check-rise", "4"),
        ]);
        assert_eq!(warnings.len(), 6, "{warnings:#?}");
        assert!(warnings[0].contains("health-check-type=\"ldap\": must be one of"));
        assert!(
            warnings[1].contains("health-check-fall=\"0\": must be a whole number from 1 to 100")
        );
        let check = check.unwrap();
        assert_eq!(check.probe, Probe::Tcp);
        assert_eq!(check.rise, 4);
        assert_eq!(check.fall, HealthCheck::default().fall);
    }

    #[test]
    fn a_path_with_a_non_http_type_warns() {
        let (check, _, warnings) =
            resolve(&[("health-check-type", "redis"), ("health-check-path", "/x")]);
        assert_eq!(check.unwrap().probe, Probe::Redis(RedisProbe::default()));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("not redis"));
    }

    #[test]
    fn an_unusable_check_is_off_with_a_warning() {
        let (check, _, warnings) = resolve(&[("health-check-path", "no-slash")]);
        assert_eq!(check, None);
        assert!(warnings[0].contains("probe.http.path"), "{warnings:?}");
    }

    #[test]
    fn passive_checks() {
        let (_, passive, warnings) = resolve(&[
            ("passive-check-failures", "3"),
            ("passive-check-eject-for", "10s"),
            ("passive-check-max-ejected-percent", "30"),
            ("passive-check-5xx", "false"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            passive,
            Some(PassiveCheck {
                consecutive_failures: 3,
                count_5xx: false,
                eject_for: Duration::from_secs(10),
                max_ejected_percent: 30,
            })
        );
        let (_, passive, _) = resolve(&[("passive-check", "true")]);
        assert_eq!(passive, Some(PassiveCheck::default()));
        let (_, passive, warnings) = resolve(&[("passive-check-max-ejected-percent", "101")]);
        assert_eq!(passive, Some(PassiveCheck::default()));
        assert_eq!(warnings.len(), 1);
    }
}
