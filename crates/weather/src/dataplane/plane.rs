//! The one owner of what the data plane has applied: the manifests' paths, the
//! stage they stand for, and the routing table compiled from them, swapped
//! together under one lock by [`Plane::switch`]. Every hop reads one
//! [`Applied`] snapshot and finishes on it, so a switch never drops a request.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mesh::{Manifests, Mesh};

use super::{
    error::Error,
    pods::{Pods, Rollout},
    stats::{ServiceRef, Stats},
};

/// How the hops behave, fixed for the life of the data plane.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One log line per hop (`weather::access`).
    pub access_log: bool,
    /// The timeout of a route whose VirtualService sets none (504 `UT` past
    /// it); `None`, the default, as Istio: no timeout.
    pub default_timeout: Option<Duration>,
    /// How long a client may leave its request body without a byte before the
    /// hop answers 408 (`SI`): Envoy's `stream_idle_timeout`, 5 minutes.
    pub stream_idle_timeout: Duration,
    /// Istio's standard metrics (`GET /stats/prometheus` on the admin listener).
    pub metrics: bool,
    /// The trace viewer the hops' spans go to (`weather up --traces`): its
    /// base URL, for the admin page's links.
    pub trace_viewer: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            access_log: true,
            default_timeout: None,
            stream_idle_timeout: Duration::from_secs(300),
            metrics: true,
            trace_viewer: None,
        }
    }
}

/// Routing objects applied over the manifests of the paths (`POST /apply` on
/// the admin listener, as `weather release` does): kept across file reloads,
/// dropped by a stage switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    /// The YAML as it was applied.
    pub text: String,
    /// What it holds: `VirtualService weather/forecast-route`, ...
    pub objects: Vec<String>,
    /// Who applied it and why, for the page: `release frontend-forecast-v2: step 2`.
    pub label: String,
}

/// The routing in force: where it was read from and what it compiled to.
pub struct Applied {
    pub paths: Vec<PathBuf>,
    /// The stage folder the paths stand for; `None` when started with `-f`.
    pub stage: Option<String>,
    pub overlay: Option<Arc<Overlay>>,
    pub mesh: Mesh,
    /// The address of each of `mesh.workloads`, by index, and its index in
    /// [`Stats::peers`].
    pods: Vec<Option<(SocketAddr, usize)>>,
    /// Each of `mesh.services` as the metrics name it.
    services: Vec<Arc<ServiceRef>>,
}

impl Applied {
    /// The pod address of the workload at `index` of the compiled mesh.
    pub fn addr(&self, index: usize) -> Option<SocketAddr> {
        self.pod(index).map(|(addr, _)| addr)
    }

    /// The pod address and metrics peer of the workload at `index`.
    pub(super) fn pod(&self, index: usize) -> Option<(SocketAddr, usize)> {
        self.pods.get(index).copied().flatten()
    }

    /// The Service at `index` of the compiled mesh, as the metrics name it.
    pub(super) fn service(&self, index: usize) -> Option<&Arc<ServiceRef>> {
        self.services.get(index)
    }
}

/// What came of the file watch's attempts to re-apply edited manifests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloads {
    pub applied: u64,
    pub refused: u64,
    /// Why the last refused edit was refused.
    pub last_error: Option<String>,
}

pub struct Plane {
    applied: RwLock<Arc<Applied>>,
    /// Deployment name -> the address its workload listens on. Fixed at start:
    /// a switch may route differently, never to new workloads.
    pods: HashMap<String, SocketAddr>,
    /// For fetching JWKS documents.
    pub(super) client: reqwest::Client,
    /// How many times the routing in force has changed since start.
    changes: tokio::sync::watch::Sender<u64>,
    /// The hops' connections to the workloads.
    pub(super) upstreams: super::upstream::Upstreams,
    /// Round-robin position over endpoints.
    next: AtomicUsize,
    pub settings: Settings,
    reloads: Mutex<Reloads>,
    /// Istio's standard metrics of every hop.
    pub stats: Arc<Stats>,
    /// The keys of RequestAuthentications' `jwksUri`s.
    pub(super) jwks: super::jwks::Jwks,
    /// Each hop's circuit breakers and outlier detection, per cluster.
    pub(super) circuits: super::circuit::Circuits,
    /// The workloads, rolled when applied manifests change their Deployment.
    workloads: OnceLock<Pods>,
}

/// Reads the manifests and compiles them. A rule that cannot be compiled is
/// in `Mesh::errors` and never matches.
pub fn load(paths: &[PathBuf]) -> Result<(Manifests, Mesh), Error> {
    let manifests = mesh::load_paths(paths).map_err(Error::Load)?;
    let mesh = Mesh::compile(&manifests);
    Ok((manifests, mesh))
}

/// Like [`load`] with `overlay` applied over the paths' objects, refusing
/// manifests with a rule that cannot be compiled: what replaces routes in
/// force must be whole.
fn load_whole(paths: &[PathBuf], overlay: Option<&Overlay>) -> Result<(Manifests, Mesh), Error> {
    let mut manifests = mesh::load_paths(paths).map_err(Error::Load)?;
    if let Some(o) = overlay {
        manifests
            .apply(parse_overlay(&o.text)?)
            .map_err(Error::Load)?;
    }
    let mesh = Mesh::compile(&manifests);
    if !mesh.errors.is_empty() {
        return Err(Error::Compile(mesh.errors));
    }
    Ok((manifests, mesh))
}

/// A switch or an apply may not leave an ingress that routed without any
/// route: refused, the routes in force stay.
fn keeps_ingress_routes(now: &Mesh, next: &Mesh) -> Result<(), Error> {
    if now.ingress_routes_anything() && !next.ingress_routes_anything() {
        return Err(Error::IngressLeftWithoutRoutes);
    }
    Ok(())
}

/// The objects of an overlay's YAML, strictly, as files are read.
fn parse_overlay(text: &str) -> Result<Manifests, Error> {
    let mut m = Manifests::default();
    m.add_yaml("applied", text).map_err(Error::Load)?;
    if m.origins.is_empty() {
        return Err(Error::EmptyOverlay);
    }
    Ok(m)
}

impl Plane {
    /// A plane routing `mesh` (read from `paths`) to the workloads at `pods`.
    pub fn new(
        paths: Vec<PathBuf>,
        stage: Option<String>,
        mesh: Mesh,
        pods: HashMap<String, SocketAddr>,
        settings: Settings,
    ) -> Result<Plane, Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(5))
            .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let stats = Arc::new(Stats::new(&mesh.ingress, &mesh.workloads, settings.metrics));
        let applied = prepare(&pods, &stats, paths, stage, None, mesh)?;
        Ok(Plane {
            applied: RwLock::new(Arc::new(applied)),
            pods,
            client,
            upstreams: super::upstream::Upstreams::new(weather_core::server::listen::POOL_IDLE),
            next: AtomicUsize::new(0),
            settings,
            reloads: Mutex::new(Reloads::default()),
            stats,
            jwks: Default::default(),
            circuits: Default::default(),
            workloads: OnceLock::new(),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Follows the changes of the routing in force: the value counts them,
    /// and `changed()` resolves at the next one.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Puts `applied` in force (the lock of the routing held) and says so.
    fn put(&self, current: &mut Arc<Applied>, applied: Applied) {
        *current = Arc::new(applied);
        self.changes.send_modify(|n| *n += 1);
    }

    /// The routing in force now.
    pub fn applied(&self) -> Arc<Applied> {
        self.applied
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies other manifests (a stage switch, an edit) without dropping a
    /// request: in-flight hops finish on the snapshot they started with. On any
    /// error nothing changes. Returns a one-line summary.
    pub fn switch(&self, paths: Vec<PathBuf>, stage: Option<String>) -> Result<String, Error> {
        let (manifests, mesh) = load_whole(&paths, None)?;
        keeps_ingress_routes(&self.applied().mesh, &mesh)?;
        let rollout = self.rollout(&manifests)?;
        let applied = prepare(&self.pods, &self.stats, paths, stage, None, mesh)?;
        let summary = summarize(&applied, &rollout);
        self.put(
            &mut self.applied.write().unwrap_or_else(|e| e.into_inner()),
            applied,
        );
        self.commit(rollout);
        Ok(summary)
    }

    /// Applies routing objects (YAML) over the manifests of the paths in force,
    /// replacing any overlay applied before, as `kubectl apply` replaces objects
    /// of the same name. Refused whole, changing nothing, when any object is not
    /// valid or a rule cannot be compiled.
    pub fn apply(&self, text: String, label: String) -> Result<String, Error> {
        let objects = parse_overlay(&text)?
            .origins
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let overlay = Overlay {
            text,
            objects,
            label,
        };
        let seen = self.applied();
        let (manifests, mesh) = load_whole(&seen.paths, Some(&overlay))?;
        keeps_ingress_routes(&seen.mesh, &mesh)?;
        let rollout = self.rollout(&manifests)?;
        let (paths, stage) = (seen.paths.clone(), seen.stage.clone());
        let overlay = Some(Arc::new(overlay));
        let applied = prepare(&self.pods, &self.stats, paths, stage, overlay, mesh)?;
        let summary = summarize(&applied, &rollout);
        self.put(
            &mut self.applied.write().unwrap_or_else(|e| e.into_inner()),
            applied,
        );
        self.commit(rollout);
        Ok(summary)
    }

    /// Re-reads the manifests of `seen` and applies them, unless something else
    /// was applied since `seen` was read: a stage switch wins over a file edit
    /// that raced with it. `None` when it was not applied for that reason.
    pub(super) fn reload(&self, seen: &Arc<Applied>) -> Option<Result<String, Error>> {
        let outcome = load_whole(&seen.paths, seen.overlay.as_deref()).and_then(|(m, mesh)| {
            let (paths, stage) = (seen.paths.clone(), seen.stage.clone());
            let rollout = self.rollout(&m)?;
            let applied = prepare(
                &self.pods,
                &self.stats,
                paths,
                stage,
                seen.overlay.clone(),
                mesh,
            )?;
            Ok((applied, rollout))
        });
        let mut current = self.applied.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, seen) {
            return None;
        }
        let mut reloads = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
        Some(match outcome {
            Ok((applied, rollout)) => {
                let summary = summarize(&applied, &rollout);
                self.put(&mut current, applied);
                self.commit(rollout);
                reloads.applied += 1;
                Ok(summary)
            }
            Err(e) => {
                reloads.refused += 1;
                reloads.last_error = Some(e.to_string());
                Err(e)
            }
        })
    }

    /// Hands the plane the workloads it runs, to roll them when applied
    /// manifests change their Deployments (once, at start).
    pub(super) fn run(&self, pods: Pods) {
        let _ = self.workloads.set(pods);
    }

    /// The workloads `manifests` would change, rebuilt (none without workloads).
    fn rollout(&self, manifests: &Manifests) -> Result<Option<Rollout>, Error> {
        self.workloads
            .get()
            .map(|p| p.prepare(&manifests.deployments))
            .transpose()
    }

    fn commit(&self, rollout: Option<Rollout>) {
        if let (Some(pods), Some(r)) = (self.workloads.get(), rollout) {
            pods.commit(r);
        }
    }

    /// What the file watch has done so far.
    pub fn reloads(&self) -> Reloads {
        self.reloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The next round-robin position.
    pub(super) fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// Pairs a compiled mesh with the pods' addresses, refusing workloads that were
/// not started.
fn prepare(
    pods: &HashMap<String, SocketAddr>,
    stats: &Stats,
    paths: Vec<PathBuf>,
    stage: Option<String>,
    overlay: Option<Arc<Overlay>>,
    mesh: Mesh,
) -> Result<Applied, Error> {
    let missing: Vec<String> = mesh
        .workloads
        .iter()
        .filter(|w| !pods.contains_key(&w.name) || stats.peer(&w.name).is_none())
        .map(|w| w.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(Error::NewWorkloads(missing));
    }
    let pods = mesh
        .workloads
        .iter()
        .map(|w| Some((*pods.get(&w.name)?, stats.peer(&w.name)?)))
        .collect();
    let services = mesh
        .services
        .iter()
        .map(|s| Arc::new(ServiceRef::of(s)))
        .collect();
    Ok(Applied {
        paths,
        stage,
        overlay,
        mesh,
        pods,
        services,
    })
}

/// The summary of a change: what is applied, and the workloads rolled.
fn summarize(applied: &Applied, rollout: &Option<Rollout>) -> String {
    let mut s = applied.summary();
    if let Some(names) = rollout.as_ref().map(Rollout::names)
        && !names.is_empty()
    {
        s.push_str(&format!("; rolled {}", names.join(", ")));
    }
    s
}

impl Applied {
    fn summary(&self) -> String {
        let n = self.mesh.routes_summary();
        match (&self.overlay, &self.stage) {
            (Some(o), _) => format!("applied {} over the manifests: {n}", o.objects.join(", ")),
            (None, Some(s)) => format!("applied stage {s}: {n}"),
            (None, None) => format!("applied {n}"),
        }
    }
}
