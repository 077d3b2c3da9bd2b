//! The table file a running proxy watches, in the on-disk layouts it must handle.

use crate::util::write_atomic;
use anyhow::Result;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A plain file, replaced by write-to-temporary + rename.
    #[default]
    Plain,
    /// The path is a symlink in the watched directory to a file in another,
    /// unwatched one: rewriting the target makes no event the proxy sees, so only
    /// SIGHUP can make it notice.
    Unwatched,
    /// What the kubelet does for a mounted ConfigMap: `table.yaml ->
    /// ..data/table.yaml`, `..data -> ..vN`; an update writes a new `..vN+1`
    /// directory and swaps `..data` by renaming a new symlink over it.
    ConfigMap,
}

pub struct ConfigFile {
    layout: Layout,
    /// The path given to `--config`.
    path: PathBuf,
    /// The directory holding the layout.
    root: PathBuf,
    version: AtomicUsize,
}

impl ConfigFile {
    pub fn create(parent: &Path, layout: Layout, yaml: &str) -> Result<Self> {
        let root = parent.join("config");
        std::fs::create_dir_all(&root)?;
        let path = match layout {
            Layout::Plain => root.join("table.yaml"),
            Layout::Unwatched => {
                let real = root.join("real");
                let watched = root.join("watched");
                std::fs::create_dir_all(&real)?;
                std::fs::create_dir_all(&watched)?;
                symlink(real.join("table.yaml"), watched.join("table.yaml"))?;
                watched.join("table.yaml")
            }
            Layout::ConfigMap => {
                symlink("..data/table.yaml", root.join("table.yaml"))?;
                root.join("table.yaml")
            }
        };
        let file = Self {
            layout,
            path,
            root,
            version: AtomicUsize::new(0),
        };
        file.rewrite(yaml)?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the contents atomically, the way this layout is updated in life.
    pub fn rewrite(&self, yaml: &str) -> Result<()> {
        match self.layout {
            Layout::Plain => write_atomic(&self.path, yaml),
            Layout::Unwatched => write_atomic(&self.root.join("real/table.yaml"), yaml),
            Layout::ConfigMap => {
                let n = self.version.fetch_add(1, Ordering::SeqCst);
                let dir = format!("..v{n}");
                std::fs::create_dir(self.root.join(&dir))?;
                std::fs::write(self.root.join(&dir).join("table.yaml"), yaml)?;
                let tmp = self.root.join("..data_tmp");
                symlink(&dir, &tmp)?;
                std::fs::rename(&tmp, self.root.join("..data"))?;
                if n > 0 {
                    std::fs::remove_dir_all(self.root.join(format!("..v{}", n - 1)))?;
                }
                Ok(())
            }
        }
    }
}

/// The simplest table: one listener on `listen` forwarding every request to one
/// backend with one endpoint.
pub fn forward_all(
    listen: std::net::SocketAddr,
    backend: &str,
    endpoint: std::net::SocketAddr,
) -> String {
    format!(
        "listeners:\n  - http: {{name: web, bind: {listen}, routes: [{{name: all, action: {{forward: {backend}}}}}]}}\n\
         backends:\n  {backend}: {{endpoints: [{{address: {endpoint}}}]}}\n"
    )
}

/// A `backends:` section with one backend per test backend, named like it, each
/// with that backend's one endpoint.
pub fn backends_yaml(backends: &[&crate::Backend]) -> String {
    let mut out = String::from("backends:\n");
    for b in backends {
        out.push_str(&format!(
            "  {}:\n    endpoints: [{{address: {}}}]\n",
            b.name(),
            b.addr
        ));
    }
    out
}
