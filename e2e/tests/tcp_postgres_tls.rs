//! Several PostgreSQL servers behind one port, routed by the name the client
//! asks for (SNI), each keeping its own certificate. Real servers (`ssl=on`)
//! and the real `psql`, which verifies the server's certificate against that
//! server's own (self-signed) certificate and its name (`sslmode=verify-full`).
//!
//! - Classic negotiation (Debian's PostgreSQL 15): the `tls_passthrough`
//!   listener answers the client's `SSLRequest` itself, reads the ClientHello
//!   that follows, and replays the request to the chosen server.
//! - Direct TLS (PostgreSQL 17, `sslnegotiation=direct`): the client opens with
//!   the ClientHello (ALPN `postgresql`), which the listener forwards as any
//!   other; the same libpq 17 without that option still works through the
//!   same port.

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::databases::{DbServer, postgres17_dir};
use sluice_e2e::passthrough::{TestCert, test_cert};
use sluice_e2e::tools::{Ran, require, run_bounded};
use sluice_e2e::util::TempDir;
use sluice_e2e::{ProxyProcess, free_addr};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The PostgreSQL superuser password `DbServer::postgres` sets.
const PASSWORD: &str = "sluice-e2e-superuser";

const NAMES: [&str; 2] = ["db1.test", "db2.test"];

/// A certificate per name of [`NAMES`].
fn certs() -> Vec<TestCert> {
    NAMES.iter().map(|name| test_cert(&[name])).collect()
}

/// `psql`, with the libpq of `libpq` (a directory put on `LD_LIBRARY_PATH`)
/// when given: the conninfo, `sslnegotiation` included, is libpq's to parse.
struct Psql {
    program: PathBuf,
    libpq: Option<PathBuf>,
}

impl Psql {
    /// Runs `sql` on `name` at `at`, verifying the server certificate against
    /// `root`; `extra` adds conninfo options.
    async fn run(&self, at: SocketAddr, name: &str, root: &Path, extra: &str, sql: &str) -> Ran {
        let conninfo = format!(
            "host={name} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
             sslmode=verify-full sslrootcert={} connect_timeout=10 {extra}",
            at.port(),
            root.display()
        );
        let mut command = Command::new(&self.program);
        command
            .args(["-X", "-A", "-t", "-c", sql, &conninfo])
            .env("PGPASSWORD", PASSWORD);
        if let Some(lib) = &self.libpq {
            command.env("LD_LIBRARY_PATH", lib);
        }
        run_bounded(command, Duration::from_secs(30)).await.unwrap()
    }

    /// What `SHOW port` prints (the server's own port), asserting success.
    async fn server_port(&self, at: SocketAddr, name: &str, root: &Path, extra: &str) -> String {
        let ran = self.run(at, name, root, extra, "SHOW port").await;
        assert!(
            ran.status.success(),
            "psql to {name} ({extra}) failed: {}{}",
            ran.stdout,
            ran.stderr
        );
        ran.stdout.trim().to_owned()
    }
}

/// A `tls_passthrough` listener routing [`NAMES`] to `servers` in order, and
/// each server's certificate as a file to verify it with.
struct OnePort {
    listen: SocketAddr,
    roots: Vec<PathBuf>,
    _proxy: ProxyProcess,
    _dir: TempDir,
}

async fn one_port(servers: &[DbServer], certs: &[TestCert]) -> OnePort {
    let listen = free_addr().unwrap();
    let table = format!(
        "listeners:
  - tls_passthrough:
      name: pg
      bind: {listen}
      routes:
        - {{name: one, hosts: [db1.test], backend: one}}
        - {{name: two, hosts: [db2.test], backend: two}}
backends:
  one: {{endpoints: [{{address: {}}}]}}
  two: {{endpoints: [{{address: {}}}]}}
",
        servers[0].addr, servers[1].addr
    );
    let proxy = ProxyProcess::start(&table).await.unwrap();
    let dir = TempDir::new("pg-roots").unwrap();
    let roots = certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let path = dir.path().join(format!("root{i}.crt"));
            std::fs::write(&path, &cert.chain).unwrap();
            path
        })
        .collect();
    OnePort {
        listen,
        roots,
        _proxy: proxy,
        _dir: dir,
    }
}

/// Asserts that `name` with the other server's certificate as root fails
/// verification: each name gets its own server's certificate.
async fn wrong_root_refused(psql: &Psql, port: &OnePort, extra: &str) {
    let ran = psql
        .run(port.listen, NAMES[0], &port.roots[1], extra, "SELECT 1")
        .await;
    assert!(
        !ran.status.success() && ran.stderr.contains("certificate"),
        "db1.test ({extra}) must present db1's certificate: {}{}",
        ran.stdout,
        ran.stderr
    );
}

/// A relay to `to` that records the first byte of each connection: a TLS
/// record opens with 0x16 (handshake), an `SSLRequest` with its length's high
/// byte, 0x00. Proves which negotiation a client really used.
struct Tap {
    addr: SocketAddr,
    firsts: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(to: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let seen = firsts.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut first = [0_u8; 1];
                    if client.peek(&mut first).await.unwrap_or(0) == 1 {
                        seen.lock().unwrap().push(first[0]);
                    }
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Tap { addr, firsts, task }
    }

    fn firsts(&self) -> Vec<u8> {
        self.firsts.lock().unwrap().clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn postgres_servers_share_one_port_by_sni_after_sslrequest() {
    let Some(program) = require(&["psql"], "apt-get install postgresql-client").unwrap() else {
        return;
    };
    let psql = Psql {
        program,
        libpq: None,
    };
    let certs = certs();
    let mut servers = Vec::new();
    for cert in &certs {
        match DbServer::postgres_tls(&cert.chain, &cert.key)
            .await
            .unwrap()
        {
            Some(server) => servers.push(server),
            None => return,
        }
    }
    let port = one_port(&servers, &certs).await;

    for round in 0..2 {
        for (i, name) in NAMES.iter().enumerate() {
            let got = psql
                .server_port(port.listen, name, &port.roots[i], "")
                .await;
            assert_eq!(
                got,
                servers[i].addr.port().to_string(),
                "round {round}: {name} reached the wrong server"
            );
        }
    }
    wrong_root_refused(&psql, &port, "").await;
}

#[tokio::test]
async fn postgres17_direct_tls_shares_one_port_by_sni() {
    let Some(program) = require(&["psql"], "apt-get install postgresql-client").unwrap() else {
        return;
    };
    let Some(pg17) = postgres17_dir().unwrap() else {
        return;
    };
    // Debian's psql 15 with PostgreSQL 17's libpq (same soname).
    let psql = Psql {
        program,
        libpq: Some(pg17.join("lib")),
    };
    let certs = certs();
    let mut servers = Vec::new();
    for cert in &certs {
        match DbServer::postgres17_tls(&cert.chain, &cert.key)
            .await
            .unwrap()
        {
            Some(server) => servers.push(server),
            None => return,
        }
    }
    let port = one_port(&servers, &certs).await;

    const DIRECT: &str = "sslnegotiation=direct";
    for round in 0..2 {
        for (i, name) in NAMES.iter().enumerate() {
            let want = servers[i].addr.port().to_string();
            // Direct TLS, then the default SSLRequest from the same libpq.
            for extra in [DIRECT, ""] {
                let got = psql
                    .server_port(port.listen, name, &port.roots[i], extra)
                    .await;
                assert_eq!(
                    got, want,
                    "round {round}: {name} ({extra}) reached the wrong server"
                );
            }
        }
    }
    wrong_root_refused(&psql, &port, DIRECT).await;

    // What went over the wire: a ClientHello first with direct TLS, an
    // SSLRequest otherwise.
    let tap = Tap::start(port.listen).await;
    for extra in [DIRECT, ""] {
        let got = psql
            .server_port(tap.addr, NAMES[1], &port.roots[1], extra)
            .await;
        assert_eq!(got, servers[1].addr.port().to_string());
    }
    assert_eq!(
        tap.firsts(),
        [0x16, 0x00],
        "first bytes of the direct and the classic connection"
    );
}
