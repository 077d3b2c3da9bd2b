//! Hot reload of a table file: on change (inotify on the directory, so the
//! symlink swap of a Kubernetes ConfigMap counts) and on SIGHUP. A file that does
//! not parse or compile keeps the last good table and is logged with its location.

use crate::server::Proxy;
use crate::table;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Coalesces the several events one editor save produces.
const SETTLE: Duration = Duration::from_millis(50);
/// Used when inotify is unavailable (limits reached, exotic filesystem).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Loads `path`, applies it, and logs the outcome. Returns whether it is now live.
pub async fn load_and_apply(proxy: &Arc<Proxy>, path: &Path) -> bool {
    let parsed = match table::from_yaml_file(path) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}; keeping the last good table");
            return false;
        }
    };
    match proxy.apply(parsed).await {
        Ok(applied) => {
            for w in &applied.warnings {
                warn!(file = %path.display(), "{w}");
            }
            for e in &applied.bind_errors {
                error!(file = %path.display(), "{e}");
            }
            info!(file = %path.display(), warnings = applied.warnings.len(), "table loaded");
            true
        }
        Err(e) => {
            error!(file = %path.display(), "{e}; keeping the last good table");
            false
        }
    }
}

/// Watches `path` until the process ends.
pub async fn watch(proxy: Arc<Proxy>, path: PathBuf) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    // The watcher stops when dropped, so it is held for the life of this loop.
    let watcher = start_watcher(&path, tx.clone());
    if watcher.is_none() {
        warn!(file = %path.display(), "file events unavailable; polling every {POLL_INTERVAL:?}");
        tokio::spawn(poll(tx.clone()));
    }
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let mut last = std::fs::read(&path).ok();
    loop {
        let forced = tokio::select! {
            Some(()) = rx.recv() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            else => return,
        };
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        let current = std::fs::read(&path).ok();
        if !forced && current == last {
            continue;
        }
        if forced {
            info!(file = %path.display(), "SIGHUP: reloading");
        }
        load_and_apply(&proxy, &path).await;
        last = current;
    }
}

fn start_watcher(path: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|e| warn!("cannot create file watcher: {e}"))
    .ok()?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| warn!(dir = %dir.display(), "cannot watch directory: {e}"))
        .ok()?;
    Some(watcher)
}

/// Fallback when file events are unavailable: a signal each interval; the loop
/// compares contents, so unchanged files cost one read.
async fn poll(tx: mpsc::UnboundedSender<()>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tick.tick().await;
        if tx.send(()).is_err() {
            return;
        }
    }
}
