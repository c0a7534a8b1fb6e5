//! Starting the data plane: a loopback port per Deployment, the workload behind
//! its image configured from the Deployment's environment, a sidecar listener
//! for each workload that calls another service (its outbound URL pointed at
//! it), and the ingress.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use mesh::model::Deployment;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use weather_core::{
    server::{self, RunningServer},
    telemetry::{Telemetry, TelemetryArgs},
};

use super::{
    error::Error,
    plane::{Plane, Settings, load},
    pods::Pods,
    proxy::{self, Hop},
    reload,
};

/// What `weather up` starts from.
#[derive(Clone, Debug)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub stage: Option<String>,
    pub listen: SocketAddr,
    pub settings: Settings,
    /// Where the proxy hops and the workloads send their spans.
    pub telemetry: TelemetryArgs,
}

impl Options {
    /// The manifests at `paths`, served on a free loopback port, quietly: what
    /// tests and embedders start from.
    /// These options with every workload and hop sending its spans to the
    /// Zipkin collector at `collector`, whose UI at `viewer` the admin page
    /// links to (`weather up --traces`).
    pub fn traced(mut self, collector: String, viewer: String) -> Options {
        self.telemetry = TelemetryArgs::to_zipkin(collector);
        self.settings.trace_viewer = Some(viewer);
        self
    }

    pub fn local(paths: Vec<PathBuf>, stage: Option<String>) -> Options {
        Options {
            paths,
            stage,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings {
                access_log: false,
                ..Settings::default()
            },
            telemetry: TelemetryArgs::default(),
        }
    }
}

/// A running data plane: its listeners, its workloads, and the [`Plane`] that
/// routes them.
pub struct Running {
    pub ingress: SocketAddr,
    pub plane: Arc<Plane>,
    /// Deployment name and the address its workload listens on.
    pub workloads: Vec<(String, SocketAddr)>,
    /// Deployment name and the address of its outbound "sidecar": what the
    /// app calls its downstream through, or, for an app that calls nobody
    /// (recommendation), a listener routing by the request's Host, to try
    /// what its pod could reach (`curl -H 'Host: forecast:3002' ...`).
    pub sidecars: Vec<(String, SocketAddr)>,
    servers: Vec<RunningServer>,
    watcher: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    /// Watches the applied manifests' files and applies them again when one
    /// changes; [`Plane::reloads`] tells what came of it.
    pub fn watch(&mut self, every: Duration) {
        self.watcher = Some(reload::watch(self.plane.clone(), every));
    }

    /// Stops watching, then stops every listener, letting in-flight requests end.
    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.watcher {
            let _ = stop.send(true);
            let _ = task.await;
        }
        for s in self.servers.into_iter().rev() {
            let _ = s.shutdown().await;
        }
    }
}

/// A free loopback port.
const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Binds `addr`, returning the listener and the address it got.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let bound = async {
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        Ok((l, local))
    };
    bound.await.map_err(|source| Error::Bind { addr, source })
}

fn serve(listener: TcpListener, router: axum::Router) -> Result<RunningServer, Error> {
    let addr = listener.local_addr().unwrap_or(LOOPBACK);
    server::spawn(listener, router).map_err(|source| Error::Bind { addr, source })
}

/// Serves a proxy hop: as [`serve`], and a request whose client hangs up
/// ends there, as in Envoy (flag `DC`), instead of going on to the upstream.
fn serve_hop(listener: TcpListener, router: axum::Router) -> Result<RunningServer, Error> {
    let addr = listener.local_addr().unwrap_or(LOOPBACK);
    let limits = server::listen::Limits {
        drain: Duration::from_secs(10),
        end_on_hangup: true,
        ..server::listen::Limits::default()
    };
    server::spawn_with(listener, router, limits).map_err(|source| Error::Bind { addr, source })
}

/// Starts every workload of the manifests, their sidecars and the ingress.
pub async fn start(opts: Options) -> Result<Running, Error> {
    let (manifests, mesh) = load(&opts.paths)?;
    for w in &manifests.warnings {
        tracing::warn!("{w}");
    }
    // What istiod would refuse is not served: the cluster would not take it.
    if !mesh.errors.is_empty() {
        return Err(Error::Compile(mesh.errors));
    }
    if manifests.deployments.is_empty() {
        return Err(Error::NoDeployments);
    }

    // Bind every pod first: the sidecars need nothing but addresses.
    let mut pods = HashMap::new();
    let mut pod_listeners = Vec::new();
    for d in &manifests.deployments {
        let (l, addr) = bind(LOOPBACK).await?;
        pods.insert(d.metadata.name.clone(), addr);
        pod_listeners.push((l, addr));
    }
    let plane = Arc::new(Plane::new(
        opts.paths.clone(),
        opts.stage.clone(),
        mesh,
        pods,
        opts.settings.clone(),
    )?);

    let mut servers = Vec::new();
    let mut workloads = Vec::new();
    let mut sidecars = Vec::new();
    let pods = Pods::new(opts.telemetry.clone(), local_jwt_key);
    for (d, (pod, addr)) in manifests.deployments.iter().zip(pod_listeners) {
        let fail = |reason: String| Error::Deployment {
            name: d.metadata.name.clone(),
            reason,
        };
        let configured = pods.configure(d).map_err(fail)?;
        // The outbound "sidecar": the app's downstream URL points at a
        // listener that routes as this workload's Envoy would; an app that
        // calls no one gets one too, routing by the request's Host.
        let authority = configured
            .downstream
            .as_ref()
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let (out, out_addr) = bind(LOOPBACK).await?;
        let hop = sidecar(d, authority);
        let telemetry = sidecar_telemetry(d, configured.version.as_str(), &opts.telemetry);
        servers.push(serve_hop(
            out,
            proxy::router(plane.clone(), hop, telemetry),
        )?);
        sidecars.push((d.metadata.name.clone(), out_addr));
        let outbound = configured.downstream.is_some().then_some(out_addr);
        let router = configured.router(outbound).map_err(fail)?;
        let router = pods.keep(d, &configured, outbound, router);
        servers.push(serve(pod, router)?);
        workloads.push((d.metadata.name.clone(), addr));
    }
    plane.run(pods);

    let (ingress, ingress_addr) = bind(opts.listen).await?;
    let gateway = Telemetry::new(
        "istio-ingressgateway.istio-system",
        "",
        &opts.telemetry,
        &[("component", "proxy".into())],
    );
    servers.push(serve_hop(
        ingress,
        proxy::router(plane.clone(), Hop::Ingress, gateway),
    )?);
    Ok(Running {
        ingress: ingress_addr,
        plane,
        workloads,
        sidecars,
        servers,
        watcher: None,
    })
}

fn sidecar(d: &Deployment, authority: String) -> Hop {
    Hop::Sidecar {
        workload: d.metadata.name.clone(),
        namespace: d.metadata.ns().to_owned(),
        labels: d.spec.template.metadata.labels.clone(),
        authority,
    }
}

/// A sidecar reports as `APP.NAMESPACE`, as Istio's proxies do.
fn sidecar_telemetry(d: &Deployment, version: &str, args: &TelemetryArgs) -> Telemetry {
    let labels = &d.spec.template.metadata.labels;
    let app = labels.get("app").unwrap_or(&d.metadata.name);
    Telemetry::new(
        &format!("{app}.{}", d.metadata.ns()),
        version,
        args,
        &[
            ("k8s.pod.name", d.metadata.name.clone()),
            ("component", "proxy".into()),
        ],
    )
}

/// The key `weather up` gives a frontend whose manifest names `JWT_KEY_FILE`
/// (on a cluster, the Secret frontend-jwt-key): made once, kept in
/// `$TMPDIR/weather-up/jwt-key.pem` (mode 0600) so that tokens outlive a
/// restart.
fn local_jwt_key() -> Result<String, String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let dir = std::env::temp_dir().join("weather-up");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("jwt-key.pem");
    let usable = std::fs::read_to_string(&path)
        .ok()
        .is_some_and(|pem| frontend::token::Signer::from_pem(&pem).is_ok());
    if !usable {
        let pem = frontend::token::generate_pem()?;
        let tmp = dir.join(format!("jwt-key.{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(pem.as_bytes())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        // A link, unlike a rename, never replaces a key another weather up
        // made meanwhile: every frontend of this machine signs with one key.
        let linked = std::fs::hard_link(&tmp, &path).or_else(|_| {
            let made_meanwhile = std::fs::read_to_string(&path)
                .ok()
                .is_some_and(|pem| frontend::token::Signer::from_pem(&pem).is_ok());
            if made_meanwhile {
                return Ok(());
            }
            // Not a key: replaced.
            let _ = std::fs::remove_file(&path);
            std::fs::hard_link(&tmp, &path)
        });
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(path.to_string_lossy().into_owned())
}
