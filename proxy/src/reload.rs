//! Hot reload of a table file: on change (inotify on the directory, so the
//! symlink swap of a Kubernetes ConfigMap counts) and on SIGHUP. A file that does
//! not parse or compile keeps the last good table and is logged with its location.
//!
//! The watcher and the SIGHUP handler are registered before the first read, so a
//! change or a signal during start-up is never lost (nor fatal).

use crate::server::Proxy;
use crate::table::{self, RoutingTable};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Coalesces the several events one editor save produces.
const SETTLE: Duration = Duration::from_millis(50);
/// Used when inotify is unavailable (limits reached, exotic filesystem).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

pub struct Reloader {
    path: PathBuf,
    events: mpsc::UnboundedReceiver<()>,
    hangup: Option<Signal>,
    /// The watcher stops when dropped, so it lives as long as the reloader.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Reloader {
    /// Starts watching `path` and handling SIGHUP. Must run inside the runtime.
    pub fn start(path: PathBuf) -> Self {
        let (tx, events) = mpsc::unbounded_channel::<()>();
        let watcher = start_watcher(&path, tx.clone());
        if watcher.is_none() {
            warn!(file = %path.display(), "file events unavailable; polling every {POLL_INTERVAL:?}");
            tokio::spawn(poll(tx));
        }
        let hangup = signal(SignalKind::hangup())
            .map_err(|e| warn!("cannot listen for SIGHUP: {e}"))
            .ok();
        Self {
            path,
            events,
            hangup,
            _watcher: watcher,
        }
    }

    /// Reads and parses the file once; returns the bytes too, for `run`.
    pub fn read(&self) -> Result<(Vec<u8>, RoutingTable), table::LoadError> {
        let bytes = std::fs::read(&self.path).map_err(|source| table::LoadError::Read {
            path: self.path.clone(),
            source,
        })?;
        let parsed = table::from_yaml_bytes(&bytes, &self.path)?;
        Ok((bytes, parsed))
    }

    /// Applies changes until the process ends. `applied` is what the live table
    /// was parsed from; anything different on disk is loaded at once.
    pub async fn run(mut self, proxy: Arc<Proxy>, applied: Vec<u8>) {
        let mut last = Some(applied);
        let mut forced = false;
        loop {
            let current = std::fs::read(&self.path).ok();
            if forced || current != last {
                if forced {
                    info!(file = %self.path.display(), "SIGHUP: reloading");
                }
                load_and_apply(&proxy, &self.path).await;
                last = current;
            }
            forced = tokio::select! {
                Some(()) = self.events.recv() => false,
                Some(()) = next_hangup(&mut self.hangup) => true,
                else => return,
            };
            tokio::time::sleep(SETTLE).await;
            while self.events.try_recv().is_ok() {}
        }
    }
}

async fn next_hangup(hangup: &mut Option<Signal>) -> Option<()> {
    match hangup {
        Some(h) => h.recv().await,
        None => std::future::pending().await,
    }
}

/// Loads `path`, applies it, and logs the outcome. Returns whether it is now live.
pub async fn load_and_apply(proxy: &Arc<Proxy>, path: &Path) -> bool {
    let parsed = match table::from_yaml_file(path) {
        Ok(t) => t,
        // One line per problem, so a reload shows every mistake at once.
        Err(table::LoadError::Invalid { origin, errors }) => {
            for e in &errors {
                error!("{origin}: {e}; keeping the last good table");
            }
            return false;
        }
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

fn start_watcher(path: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| may_change(&e.kind)) {
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

/// Whether an event can mean new contents. Opening or reading a file cannot,
/// and `run` reads the file after every event: counting those made each
/// reload's own read trigger the next one, 20 times a second.
fn may_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(access) => *access == AccessKind::Close(AccessMode::Write),
        _ => true,
    }
}

/// Fallback when file events are unavailable: a nudge each interval; `run`
/// compares contents, so an unchanged file costs one read.
async fn poll(tx: mpsc::UnboundedSender<()>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tick.tick().await;
        if tx.send(()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};

    #[test]
    fn reading_the_file_is_not_a_change_but_writing_it_is() {
        let reads = [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
        ];
        for access in reads {
            assert!(!may_change(&EventKind::Access(access)), "{access:?}");
        }
        let changes = [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Create(CreateKind::File),
            EventKind::Any,
        ];
        for kind in changes {
            assert!(may_change(&kind), "{kind:?}");
        }
    }
}
