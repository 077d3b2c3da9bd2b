//! External programs the TLS tests run: `openssl s_client` and the scanners,
//! each with stdin closed and a time limit. A missing program skips the test
//! with a notice, except under `CI=true` (`.ci/run` installs them), where the
//! test fails saying how to install it.

use crate::cluster::{in_ci, notice};
use crate::util::TempDir;
use anyhow::{Context, Result, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The path of the first of `names` found (one program's names, e.g. Debian's
/// `testssl` and upstream's `testssl.sh`): on `PATH`, else where `.ci/run`
/// installs it, else in the sbin directories. `Ok(None)` (after a notice) when missing outside CI; an error
/// under `CI=true`.
pub fn require(names: &[&str], install: &str) -> Result<Option<PathBuf>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let venv = ci_cache().map(|c| c.join("sslyze-venv/bin"));
    // Daemons (haproxy) live in /usr/sbin, which a non-root PATH may lack.
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(venv)
        .chain(sbin)
        .collect();
    let found = names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|p| p.is_file());
    found_or_skip(found, &names.join(" or "), install, in_ci())
}

/// Where `.ci/run` installs what Debian lacks:
/// `${XDG_CACHE_HOME:-$HOME/.cache}/sluice-ci`.
pub fn ci_cache() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("sluice-ci"))
}

fn found_or_skip(
    found: Option<PathBuf>,
    program: &str,
    install: &str,
    ci: bool,
) -> Result<Option<PathBuf>> {
    match found {
        Some(path) => Ok(Some(path)),
        None if ci => bail!(
            "{program} is not installed: {install} (.ci/run installs it; CI=true, so the test \
             cannot be skipped)"
        ),
        None => {
            notice(&format!(
                "SKIPPED: {program} is not installed ({install}; .ci/run does it)"
            ));
            Ok(None)
        }
    }
}

/// What a program printed, and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with stdin closed, killing it after `limit`. Output goes to
/// files, so a talkative program cannot fill a pipe and stall.
pub async fn run_bounded(mut command: Command, limit: Duration) -> Result<Ran> {
    let dir = TempDir::new("tool")?;
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?);
    let what = format!("{command:?}");
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} still running after {limit:?}; output:\n{}",
                read_lossy(&out)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ok(Ran {
        status,
        stdout: read_lossy(&out),
        stderr: read_lossy(&err),
    })
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// One `openssl s_client` handshake as the CLI saw it.
#[derive(Debug)]
pub struct SClient {
    /// The first certificate of `-showcerts`: the leaf the server sent.
    pub leaf: Option<Vec<u8>>,
    pub output: String,
}

impl SClient {
    /// The value of a `Name: value` line of the summary (`Peer signature type`).
    pub fn field(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}:");
        self.output
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .map(str::trim)
    }

    /// `Verify return code: 0 (ok)` and the like.
    pub fn verify_code(&self) -> Option<&str> {
        self.field("Verify return code")
    }
}

/// `openssl s_client` against `addr` with `sni` (none: `-noservername`),
/// verifying against `ca_file` for `sni`; `extra` adds options (`-tls1_2`).
pub async fn s_client(
    openssl: &Path,
    addr: SocketAddr,
    sni: Option<&str>,
    ca_file: &Path,
    extra: &[&str],
) -> Result<SClient> {
    let mut command = Command::new(openssl);
    command
        .args(["s_client", "-connect", &addr.to_string(), "-showcerts"])
        .arg("-CAfile")
        .arg(ca_file)
        .args(extra);
    match sni {
        Some(name) => command.args(["-servername", name, "-verify_hostname", name]),
        None => command.arg("-noservername"),
    };
    let ran = run_bounded(command, Duration::from_secs(10)).await?;
    let output = format!("{}\n{}", ran.stdout, ran.stderr);
    let leaf = CertificateDer::pem_slice_iter(ran.stdout.as_bytes())
        .next()
        .transpose()
        .with_context(|| format!("s_client printed a bad certificate:\n{output}"))?
        .map(|c| c.as_ref().to_vec());
    Ok(SClient { leaf, output })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_skips_except_in_ci() {
        let install = "apt-get install testssl.sh";
        let err = found_or_skip(None, "testssl or testssl.sh", install, true).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("testssl or testssl.sh is not installed: apt-get install testssl.sh"),
            "{err}"
        );
        assert!(found_or_skip(None, "x", install, false).unwrap().is_none());
        let there = PathBuf::from("/usr/bin/testssl");
        let found = found_or_skip(Some(there.clone()), "x", install, true).unwrap();
        assert_eq!(found, Some(there));
    }
}
