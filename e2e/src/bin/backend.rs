//! `sluice-e2e-backend NAME [ADDR]`: one test backend (`sluice_e2e::backend`: the
//! same query parameters, `x-backend: NAME`) in its own process, so that a test can
//! SIGKILL it (see `sluice_e2e::backend_process`). Binds ADDR (default
//! 127.0.0.1:0), prints the bound address as one line on stdout, and serves until
//! killed or until its stdin closes (so it never outlives the test that started it).

use anyhow::{Context, Result};
use sluice_e2e::Backend;
use std::io::{Read, Write};
use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args
        .next()
        .context("usage: sluice-e2e-backend NAME [ADDR]")?;
    let addr: SocketAddr = match args.next() {
        Some(text) => text
            .parse()
            .with_context(|| format!("bad address {text:?}"))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let backend = Backend::start_at(&name, addr).await;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", backend.addr)?;
    stdout.flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    drop(backend);
    Ok(())
}
