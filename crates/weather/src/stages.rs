//! Release stages on disk: `istio/stages/NAME/` next to `k8s/` and `istio/base/`.

use std::path::{Path, PathBuf};

/// A stage that cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no istio/stages/ under {}: run weather from the repository root (or pass --root)",
        root.display()
    )]
    NoStages { root: PathBuf },
    #[error("no stage {stage:?}; the stages are: {}", known.join(", "))]
    Unknown { stage: String, known: Vec<String> },
}

/// The manifests of a stage, under the repository root `root`: `k8s/`,
/// `istio/base/`, `istio/security/` (when there is one) and the stage's folder.
pub fn paths(root: &Path, stage: &str) -> Result<Vec<PathBuf>, Error> {
    let known = names(root);
    if known.is_empty() {
        return Err(Error::NoStages {
            root: root.to_path_buf(),
        });
    }
    // Only a folder listed under istio/stages/ is a stage: a name with a path in
    // it (`../..`) is not one of them.
    if !known.iter().any(|k| k == stage) {
        return Err(Error::Unknown {
            stage: stage.to_owned(),
            known,
        });
    }
    let dir = root.join("istio/stages").join(stage);
    let mut paths = vec![root.join("k8s"), root.join("istio/base")];
    // The safe way, as scripts/demo applies it: mTLS, least privilege.
    let security = root.join("istio/security");
    if security.is_dir() {
        paths.push(security);
    }
    paths.push(dir);
    Ok(paths)
}

/// The stage folders, sorted.
pub fn names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("istio/stages"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The first comment line of a stage's kustomization: what it demonstrates.
pub fn summary(root: &Path, stage: &str) -> String {
    std::fs::read_to_string(root.join("istio/stages").join(stage).join("Kustomization"))
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_once(": "))
                .map(|(_, s)| s.to_owned())
        })
        .unwrap_or_default()
}

/// The root a stage's paths were made from: the folder above `istio/stages/NAME`.
pub fn root_of(paths: &[PathBuf], stage: &str) -> Option<PathBuf> {
    paths.iter().find_map(|p| {
        let parent = p.parent()?;
        (p.file_name()?.to_str()? == stage && parent.ends_with("istio/stages"))
            .then(|| parent.parent()?.parent().map(Path::to_path_buf))?
    })
}
