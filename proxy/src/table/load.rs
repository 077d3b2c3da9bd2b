//! Reading the table from YAML, with errors that say where (file:line:column).

use super::RoutingTable;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `origin` is the file name (or `<string>`); line and column are 1-based.
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{origin}: {message}")]
    Unlocated { origin: String, message: String },
    /// Well-formed, but inconsistent (see `check`); every problem is listed.
    #[error("{origin}: {}{}", errors[0], more(errors.len()))]
    Invalid {
        origin: String,
        errors: Vec<super::TableError>,
    },
}

fn more(count: usize) -> String {
    match count {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    }
}

pub fn from_yaml_file(path: &Path) -> Result<RoutingTable, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_yaml_bytes(&bytes, path)
}

/// Parses bytes already read from `path` (so a caller can compare what it parsed
/// with what the file holds later). A table file is held to [`super::check`]: an
/// operator gets every inconsistency at once instead of a degraded proxy.
pub fn from_yaml_bytes(bytes: &[u8], path: &Path) -> Result<RoutingTable, LoadError> {
    let origin = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| LoadError::Unlocated {
        origin: origin.clone(),
        message: format!("not UTF-8: {e}"),
    })?;
    let table = parse(text, &origin)?;
    super::check(&table).map_err(|errors| LoadError::Invalid { origin, errors })?;
    Ok(table)
}

pub fn from_yaml_str(text: &str) -> Result<RoutingTable, LoadError> {
    parse(text, "<string>")
}

fn parse(text: &str, origin: &str) -> Result<RoutingTable, LoadError> {
    // An empty document is an empty table, not an error.
    if text.trim().is_empty() {
        return Ok(RoutingTable::default());
    }
    // serde_path_to_error names the field (`listeners[0].http.bind`); serde-saphyr
    // gives the line and column.
    let mut field = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, RoutingTable>(de).map_err(|e| {
            field = e.path().to_string();
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let mut message = strip_location_prefix(&first_line(&e.to_string())).to_owned();
        if !field.is_empty() && field != "." {
            message = format!("{field}: {message}");
        }
        match e.location() {
            Some(loc) => LoadError::Syntax {
                origin: origin.to_owned(),
                line: loc.line(),
                column: loc.column(),
                message,
            },
            None => LoadError::Unlocated {
                origin: origin.to_owned(),
                message,
            },
        }
    })
}

/// serde-saphyr renders a multi-line snippet; logs and `check` want one line.
/// serde-saphyr repeats the location in its message ("error: line 4 column 13: ...");
/// ours is already in front.
fn strip_location_prefix(message: &str) -> &str {
    let rest = message.strip_prefix("error: ").unwrap_or(message);
    match rest.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((_, tail)) => tail,
        None => rest,
    }
}

fn first_line(rendered: &str) -> String {
    rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

pub fn to_yaml(table: &RoutingTable) -> String {
    serde_saphyr::to_string(table).unwrap_or_else(|e| format!("# cannot render table: {e}\n"))
}
