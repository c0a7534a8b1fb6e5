//! Release stages on disk, one folder per stage, per routing API:
//! `istio/stages/NAME/` (VirtualServices, over `istio/base/` and
//! `istio/security/`) and `istio/gateway-api/stages/NAME/` (HTTPRoutes, over
//! `istio/gateway-api/base/`, and `istio/security/` with sidecars), each
//! beside `k8s/`.

use std::path::{Path, PathBuf};

/// The API a release is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Istio's VirtualServices and DestinationRules, with sidecars.
    #[default]
    Istio,
    /// Gateway API's Gateway and HTTPRoutes (edge and GAMMA), with sidecars.
    GatewayApi,
    /// The Gateway API release in ambient mode: no sidecars, a waypoint
    /// applies forecast's route (istio/ambient/).
    Ambient,
}

impl Api {
    /// Its stage folders, under the repository root.
    pub fn stages_dir(self) -> &'static str {
        match self {
            Api::Istio => "istio/stages",
            Api::GatewayApi | Api::Ambient => "istio/gateway-api/stages",
        }
    }

    /// What every stage is applied over, after `k8s/`.
    fn bases(self) -> &'static [&'static str] {
        match self {
            // The safe way, as scripts/demo applies it: mTLS, least privilege.
            Api::Istio => &["istio/base", "istio/security"],
            Api::GatewayApi => &["istio/gateway-api/base", "istio/security"],
            // Not istio/security: in ambient mode ztunnel enforces a policy
            // that selects pods, and fails closed on its HTTP rules; a
            // waypoint's policies target it (docs/lanes.md).
            Api::Ambient => &["istio/gateway-api/base", "istio/ambient"],
        }
    }

    /// What the admin page and the banner call it.
    pub fn title(self) -> &'static str {
        match self {
            Api::Istio => "Istio API (VirtualServices)",
            Api::GatewayApi => "Gateway API (HTTPRoutes)",
            Api::Ambient => "Gateway API (HTTPRoutes) in ambient mode (a waypoint, no sidecars)",
        }
    }

    /// The name `--api` takes.
    pub fn name(self) -> &'static str {
        match self {
            Api::Istio => "istio",
            Api::GatewayApi => "gateway-api",
            Api::Ambient => "ambient",
        }
    }

    /// The API of a set of stage paths: the one whose stage folder they hold.
    pub fn of(paths: &[PathBuf]) -> Api {
        if paths.iter().any(|p| p.ends_with("istio/ambient")) {
            return Api::Ambient;
        }
        if paths.iter().any(|p| {
            p.parent()
                .is_some_and(|d| d.ends_with(Api::GatewayApi.stages_dir()))
        }) {
            Api::GatewayApi
        } else {
            Api::Istio
        }
    }
}

/// A stage that cannot be found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no {dir}/ under {}: run weather from the repository root (or pass --root)",
        root.display()
    )]
    NoStages { root: PathBuf, dir: &'static str },
    #[error("no stage {stage:?}; the stages are: {}", known.join(", "))]
    Unknown { stage: String, known: Vec<String> },
}

/// The manifests of a stage, under the repository root `root`: `k8s/`,
/// `istio/base/`, `istio/security/` (when there is one) and the stage's folder.
pub fn paths(root: &Path, stage: &str) -> Result<Vec<PathBuf>, Error> {
    paths_for(root, Api::Istio, stage)
}

/// The manifests of a stage of `api`: `k8s/`, the API's bases (those there
/// are) and the stage's folder.
pub fn paths_for(root: &Path, api: Api, stage: &str) -> Result<Vec<PathBuf>, Error> {
    let known = names_for(root, api);
    if known.is_empty() {
        return Err(Error::NoStages {
            root: root.to_path_buf(),
            dir: api.stages_dir(),
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
    let dir = root.join(api.stages_dir()).join(stage);
    let mut paths = vec![root.join("k8s")];
    paths.extend(
        api.bases()
            .iter()
            .map(|b| root.join(b))
            .filter(|b| b.is_dir()),
    );
    paths.push(dir);
    Ok(paths)
}

/// The stage folders, sorted.
pub fn names(root: &Path) -> Vec<String> {
    names_for(root, Api::Istio)
}

/// The stage folders of `api`, sorted.
pub fn names_for(root: &Path, api: Api) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(api.stages_dir()))
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
    summary_for(root, Api::Istio, stage)
}

/// [`summary`], for a stage of `api`.
pub fn summary_for(root: &Path, api: Api, stage: &str) -> String {
    std::fs::read_to_string(
        root.join(api.stages_dir())
            .join(stage)
            .join("Kustomization"),
    )
    .ok()
    .and_then(|t| {
        t.lines()
            .next()
            .and_then(|l| l.split_once(": "))
            .map(|(_, s)| s.to_owned())
    })
    .unwrap_or_default()
}

/// The root a stage's paths were made from: the folder above
/// `istio/stages/NAME` (or `istio/gateway-api/stages/NAME`).
pub fn root_of(paths: &[PathBuf], stage: &str) -> Option<PathBuf> {
    let api = Api::of(paths);
    paths.iter().find_map(|p| {
        let parent = p.parent()?;
        if p.file_name()?.to_str()? != stage || !parent.ends_with(api.stages_dir()) {
            return None;
        }
        let mut root = parent.to_path_buf();
        for _ in Path::new(api.stages_dir()).components() {
            root = root.parent()?.to_path_buf();
        }
        Some(root)
    })
}
