//! The file watch of `weather up`: re-applies the manifests in force when the
//! files under their paths change. A change is seen by content, not by
//! modification time, so an edit within the file system's time granularity is
//! not missed. A broken edit is refused and the routes in force stay.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use super::plane::Plane;

/// Polls every `every`; stops when the sender is told `true`.
pub(super) fn watch(plane: Arc<Plane>, every: Duration) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut seen = plane.applied();
        let mut last = fingerprint(&seen.paths);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            let current = plane.applied();
            if !Arc::ptr_eq(&current, &seen) {
                // Something else applied other manifests: watch those from now.
                seen = current;
                last = fingerprint(&seen.paths);
                continue;
            }
            let now = fingerprint(&seen.paths);
            if now == last {
                continue;
            }
            last = now;
            match plane.reload(&seen) {
                Some(Ok(summary)) => {
                    tracing::info!("manifests changed: {summary}");
                    seen = plane.applied();
                }
                Some(Err(e)) => tracing::error!(
                    "manifests changed but cannot be applied, keeping the routes in force:\n{e}"
                ),
                None => {}
            }
        }
    });
    (stop, task)
}

/// A hash of the names and contents of the files under `paths` (a folder's
/// files, not recursing, as the loader reads them).
fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in paths {
        let mut files: Vec<PathBuf> = if p.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        files.sort();
        for f in files {
            f.hash(&mut h);
            std::fs::read(&f).ok().hash(&mut h);
        }
    }
    h.finish()
}
