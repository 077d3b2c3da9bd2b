//! Several PostgreSQL servers behind one port, routed by the name the client
//! asks for (SNI), each keeping its own certificate: a `tls_passthrough`
//! listener answers the classic `SSLRequest` of `psql` itself, reads the
//! ClientHello that follows, and replays the request to the chosen server.
//! Real servers (Debian's PostgreSQL, `ssl=on`) and the real `psql`, which
//! verifies the server's certificate against that server's own (self-signed)
//! certificate and its name (`sslmode=verify-full`).

// clippy allows unwrap in #[test] fns only; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sluice_e2e::databases::DbServer;
use sluice_e2e::passthrough::{TestCert, test_cert};
use sluice_e2e::tools::{require, run_bounded};
use sluice_e2e::util::TempDir;
use sluice_e2e::{ProxyProcess, free_addr};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The PostgreSQL superuser password `DbServer::postgres` sets.
const PASSWORD: &str = "sluice-e2e-superuser";

/// `psql` to `name` through `listen`, verifying the server certificate
/// against `root`; returns what `SHOW port` printed (the server's own port).
async fn server_port(psql: &Path, listen: SocketAddr, name: &str, root: &Path) -> String {
    let conninfo = format!(
        "host={name} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={} connect_timeout=10",
        listen.port(),
        root.display()
    );
    let mut command = Command::new(psql);
    command
        .args(["-X", "-A", "-t", "-c", "SHOW port", &conninfo])
        .env("PGPASSWORD", PASSWORD);
    let ran = run_bounded(command, Duration::from_secs(30)).await.unwrap();
    assert!(
        ran.status.success(),
        "psql to {name} failed: {}{}",
        ran.stdout,
        ran.stderr
    );
    ran.stdout.trim().to_owned()
}

#[tokio::test]
async fn postgres_servers_share_one_port_by_sni_after_sslrequest() {
    let Some(psql) = require(&["psql"], "apt-get install postgresql-client").unwrap() else {
        return;
    };
    let certs: Vec<TestCert> = ["db1.test", "db2.test"]
        .iter()
        .map(|name| test_cert(&[name]))
        .collect();
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
    let _proxy = ProxyProcess::start(&table).await.unwrap();
    let dir = TempDir::new("pg-roots").unwrap();
    let roots: Vec<_> = certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let path = dir.path().join(format!("root{i}.crt"));
            std::fs::write(&path, &cert.chain).unwrap();
            path
        })
        .collect();

    for round in 0..2 {
        for (i, name) in ["db1.test", "db2.test"].iter().enumerate() {
            let port = server_port(&psql, listen, name, &roots[i]).await;
            assert_eq!(
                port,
                servers[i].addr.port().to_string(),
                "round {round}: {name} reached the wrong server"
            );
        }
    }

    // The other server's certificate does not verify: each name gets its own
    // server's certificate, so psql refuses this one.
    let conninfo = format!(
        "host=db1.test hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={} connect_timeout=10",
        listen.port(),
        roots[1].display()
    );
    let mut command = Command::new(&psql);
    command
        .args(["-X", "-A", "-t", "-c", "SELECT 1", &conninfo])
        .env("PGPASSWORD", PASSWORD);
    let ran = run_bounded(command, Duration::from_secs(30)).await.unwrap();
    assert!(
        !ran.status.success() && ran.stderr.contains("certificate"),
        "db1.test must present db1's certificate: {}{}",
        ran.stdout,
        ran.stderr
    );
}
