//! Durations in the table: integer milliseconds inside, `"250ms"`, `"5s"`, `"2m"`,
//! `"1h"` or a bare integer of milliseconds in YAML.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }
    pub const fn as_millis(self) -> u64 {
        self.millis
    }
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(digits);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 250ms, 5s, 2m, 1h"))?;
        let factor = match unit {
            "" | "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(format!(
                    "invalid duration unit {unit:?} in {s:?}: use ms, s, m or h"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(Self::from_millis)
            .ok_or_else(|| format!("duration {s:?} is too large"))
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.millis;
        if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 250ms, 5s, 2m or 1h")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_millis(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_millis)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_round_trips() {
        for (text, ms) in [
            ("250ms", 250),
            ("5s", 5000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("7", 7),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_millis(), ms, "{text}");
            let again: Duration = d.to_string().parse().unwrap();
            assert_eq!(again, d);
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "s", "5 parsecs", "-1s", "1.5s", "99999999999999999999h"] {
            assert!(text.parse::<Duration>().is_err(), "{text}");
        }
    }
}
