//! HAProxy from Debian (`/usr/sbin/haproxy`, `.ci/run` installs it) as a
//! backend that reads the PROXY protocol: an HTTP frontend with
//! `bind ... accept-proxy` answering every request with the addresses the
//! header carried, `<src>:<src_port> <dst>:<dst_port>`. HAProxy is the
//! reference implementation of the protocol, so what it reads is what any
//! backend would.
//!
//! A missing binary skips the test with a notice, except under `CI=true`.

use crate::tools::require;
use crate::util::{TempDir, eventually, free_addr};
use anyhow::{Context, Result, ensure};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Haproxy {
    /// The `accept-proxy` HTTP frontend.
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
    // Last, so the directory outlives the child.
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy and returns once its port accepts connections; `None`
    /// when it is not installed (outside CI).
    pub async fn reporting_addresses() -> Result<Option<Self>> {
        let Some(program) = require(&["haproxy"], "apt-get install haproxy")? else {
            return Ok(None);
        };
        let dir = TempDir::new("haproxy")?;
        let addr = free_addr()?;
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend report
    bind {addr} accept-proxy
    http-request return status 200 content-type text/plain lf-string \"%[src]:%[src_port] %[dst]:%[dst_port]\"
"
            ),
        )?;
        let log = dir.path().join("haproxy.log");
        let child = Command::new(&program)
            // -db: stay in the foreground, no daemon.
            .args(["-db", "-f"])
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut haproxy = Self {
            addr,
            child,
            log,
            _dir: dir,
        };
        let ready = eventually("HAProxy listening", Duration::from_secs(10), || async {
            TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        if let Err(e) = ready {
            let exited = haproxy.child.try_wait()?;
            anyhow::bail!("{e:#} (exit: {exited:?}); log:\n{}", haproxy.logs());
        }
        Ok(Some(haproxy))
    }

    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- haproxy log ({}) ----\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}

/// Sends `prefix` (a PROXY header, or nothing when a proxy in between adds
/// it) and an HTTP/1.0 GET on `stream`, and returns the body of a 200 answer:
/// the addresses HAProxy read, `<src>:<port> <dst>:<port>`.
pub async fn report(mut stream: TcpStream, prefix: &[u8]) -> Result<String> {
    let exchange = async {
        let mut request = prefix.to_vec();
        request.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        stream.write_all(&request).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("no answer within 10 s")??;
    ensure!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "not a 200: {answer:?}"
    );
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_owned())
        .with_context(|| format!("no body in {answer:?}"))?;
    Ok(body)
}
