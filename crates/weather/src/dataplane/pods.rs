//! The workloads `weather up` runs, one per Deployment, each behind its
//! pod's listener; and their rollout: when applied manifests change a
//! Deployment's container (a stage that sets `FAULT_DELAY_MS` on
//! recommendation, say), its workload is rebuilt from the new environment
//! and put behind the same address, as a rollout replaces a pod. Requests
//! in flight finish on the workload they reached.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
};

use axum::{Router, body::Body, http::Request};
use mesh::model::{Container, Deployment};
use tower::ServiceExt;
use weather_core::{AppVersion, Health, telemetry::TelemetryArgs};

use super::error::Error;
use crate::workloads::{self, App, parse_image};

/// A Deployment's container as `weather up` reads it: its image and the
/// value of each variable. A change of either rolls the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Spec {
    image: String,
    env: Vec<(String, Option<String>)>,
}

impl Spec {
    pub(super) fn of(c: &Container) -> Spec {
        Spec {
            image: c.image.clone(),
            env: c
                .env
                .iter()
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect(),
        }
    }
}

/// What a Deployment's container makes of a workload.
pub(super) struct Configured {
    pub app: App,
    pub version: AppVersion,
    /// The environment the workload reads, the downstream URL still the
    /// manifest's.
    pub env: Vec<(String, String)>,
    /// The variable naming its downstream, and the authority it names.
    pub downstream: Option<(&'static str, String)>,
}

/// Reads a Deployment's first container as `weather up` runs it.
pub(super) fn configure(
    d: &Deployment,
    telemetry: &TelemetryArgs,
    jwt_key: impl Fn() -> Result<String, String>,
) -> Result<Configured, String> {
    let c = d
        .spec
        .template
        .spec
        .containers
        .first()
        .ok_or_else(|| "no containers".to_owned())?;
    let mut env = env(c, telemetry);
    // The Secret the manifest mounts the JWT key from: a local key.
    if let Some(slot) = env.iter_mut().find(|(k, _)| k == "JWT_KEY_FILE") {
        slot.1 = jwt_key().map_err(|e| format!("JWT_KEY_FILE: {e}"))?;
    }
    let (app, image_version) = parse_image(&c.image).map_err(|e| e.to_string())?;
    let version = match env.iter().find(|(k, _)| k == "APP_VERSION") {
        Some((_, v)) => v.parse().map_err(|e| format!("APP_VERSION: {e}"))?,
        None => image_version,
    };
    let downstream = match app.downstream(version) {
        None => None,
        Some((var, default)) => {
            let url = env
                .iter()
                .find(|(k, _)| k == var)
                .map_or(default, |(_, v)| v.as_str());
            let authority = url
                .strip_prefix("http://")
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                .ok_or_else(|| format!("{var}={url} is not an http:// URL"))?;
            Some((var, authority))
        }
    };
    Ok(Configured {
        app,
        version,
        env,
        downstream,
    })
}

impl Configured {
    /// The workload, its downstream reached through the sidecar at `outbound`.
    pub(super) fn router(&self, outbound: Option<SocketAddr>) -> Result<Router, String> {
        let mut env = self.env.clone();
        if let (Some((var, _)), Some(addr)) = (&self.downstream, outbound) {
            env.retain(|(k, _)| k != var);
            env.push(((*var).to_owned(), format!("http://{addr}")));
        }
        workloads::router(self.app, self.version, &env, Health::default())
            .map_err(|e| e.to_string())
    }
}

/// A workload behind its pod's listener, and what it was built from.
struct Pod {
    spec: Spec,
    app: App,
    version: AppVersion,
    downstream: Option<String>,
    /// Its sidecar's outbound listener, which its downstream URL names.
    outbound: Option<SocketAddr>,
    slot: Arc<RwLock<Router>>,
}

/// Every workload, by Deployment name.
pub(super) struct Pods {
    telemetry: TelemetryArgs,
    jwt_key: fn() -> Result<String, String>,
    pods: Mutex<HashMap<String, Pod>>,
}

/// Workloads rebuilt for manifests about to be applied: put in force by
/// [`Pods::commit`].
pub(super) struct Rollout(Vec<(String, Spec, Router)>);

impl Rollout {
    /// The Deployments rolled, for the summary.
    pub(super) fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _, _)| n.as_str()).collect()
    }
}

impl Pods {
    pub(super) fn new(telemetry: TelemetryArgs, jwt_key: fn() -> Result<String, String>) -> Pods {
        Pods {
            telemetry,
            jwt_key,
            pods: Mutex::default(),
        }
    }

    pub(super) fn configure(&self, d: &Deployment) -> Result<Configured, String> {
        configure(d, &self.telemetry, self.jwt_key)
    }

    /// Keeps the workload of `d`, built as `configured` with its sidecar at
    /// `outbound`, and returns the router its pod's listener serves: the
    /// workload in force, whichever it is.
    pub(super) fn keep(
        &self,
        d: &Deployment,
        configured: &Configured,
        outbound: Option<SocketAddr>,
        router: Router,
    ) -> Router {
        let slot = Arc::new(RwLock::new(router));
        let c = d.spec.template.spec.containers.first();
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).insert(
            d.metadata.name.clone(),
            Pod {
                spec: c.map(Spec::of).unwrap_or(Spec {
                    image: String::new(),
                    env: Vec::new(),
                }),
                app: configured.app,
                version: configured.version,
                downstream: configured.downstream.as_ref().map(|(_, a)| a.clone()),
                outbound,
                slot: slot.clone(),
            },
        );
        let serve = tower::service_fn(move |req: Request<Body>| {
            let current = slot.read().unwrap_or_else(|e| e.into_inner()).clone();
            async move { current.oneshot(req).await }
        });
        Router::new().fallback_service(serve)
    }

    /// The workloads `deployments` change, rebuilt; nothing is in force yet.
    /// A change this cannot roll (another app or version, another
    /// downstream) is an error that says to restart.
    pub(super) fn prepare(&self, deployments: &[Deployment]) -> Result<Rollout, Error> {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for d in deployments {
            let Some(pod) = pods.get(&d.metadata.name) else {
                continue;
            };
            let Some(c) = d.spec.template.spec.containers.first() else {
                continue;
            };
            let spec = Spec::of(c);
            if spec == pod.spec {
                continue;
            }
            let fail = |reason: String| Error::Deployment {
                name: d.metadata.name.clone(),
                reason,
            };
            let configured = self.configure(d).map_err(fail)?;
            let downstream = configured.downstream.as_ref().map(|(_, a)| a.clone());
            if configured.app != pod.app
                || configured.version != pod.version
                || downstream != pod.downstream
            {
                return Err(fail(
                    "its image, version or downstream changed: that needs a restart of weather up; only its environment can change while it runs".into(),
                ));
            }
            let router = configured.router(pod.outbound).map_err(fail)?;
            out.push((d.metadata.name.clone(), spec, router));
        }
        Ok(Rollout(out))
    }

    /// Puts the rebuilt workloads behind their pods' listeners.
    pub(super) fn commit(&self, rollout: Rollout) {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        for (name, spec, router) in rollout.0 {
            if let Some(pod) = pods.get_mut(&name) {
                *pod.slot.write().unwrap_or_else(|e| e.into_inner()) = router;
                pod.spec = spec;
                tracing::info!("rolled {name}: its workload now runs the new environment");
            }
        }
    }
}

/// The environment a Deployment's container gets. The cluster's telemetry
/// settings point at the cluster's collector; a local run uses weather up's own.
fn env(c: &Container, telemetry: &TelemetryArgs) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = c
        .env
        .iter()
        .filter(|e| !e.name.starts_with("OTEL_"))
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    if let Some(e) = &telemetry.otlp_endpoint {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), e.clone()));
    }
    if let Some(e) = &telemetry.otlp_traces_endpoint {
        env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(), e.clone()));
    }
    if telemetry.otel_sdk_disabled {
        env.push(("OTEL_SDK_DISABLED".into(), "true".into()));
    }
    if let Some(e) = &telemetry.traces_exporter {
        env.push(("OTEL_TRACES_EXPORTER".into(), e.clone()));
    }
    if let Some(e) = &telemetry.zipkin_endpoint {
        env.push(("OTEL_EXPORTER_ZIPKIN_ENDPOINT".into(), e.clone()));
    }
    env
}
