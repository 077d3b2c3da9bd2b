//! Builds the `sluice-proxy` and `sluice-controller` binaries once per test process.
//!
//! Cargo only builds binaries of the package under test for integration tests, and
//! both live in other packages, so the tests ask cargo for them. Cargo's JSON output
//! names the executable, which honours `CARGO_TARGET_DIR` and config files alike.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Path to a freshly built `sluice-proxy`. Built on first call; later calls (and
/// concurrent tests) wait for and share that result.
pub fn proxy_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&BINARY, "sluice-proxy")
}

/// Path to a freshly built `sluice-controller`, like [`proxy_binary`].
pub fn controller_binary() -> Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&BINARY, "sluice-controller")
}

fn built(cell: &OnceLock<Result<PathBuf, String>>, name: &str) -> Result<PathBuf> {
    cell.get_or_init(|| build(name).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `cargo build -p NAME --bin NAME` (package and binary share the name).
fn build(name: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "-p", name, "--bin", name])
        .arg("--message-format=json-render-diagnostics")
        .output()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!(
            "building {name} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let from_json = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from));
    let path = from_json.unwrap_or_else(|| default_target_dir(&root).join("debug").join(name));
    if !path.is_file() {
        bail!(
            "cargo reported success but {} does not exist",
            path.display()
        );
    }
    Ok(path)
}

/// Fallback when cargo's output names no executable: `CARGO_TARGET_DIR` (relative
/// to the workspace root, where cargo ran) or `<workspace>/target`.
fn default_target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
