//! The keys of the `jwksUri`s of RequestAuthentications, fetched as a
//! cluster's proxies get them (istiod fetches the URI and pushes the keys; with
//! `PILOT_JWT_ENABLE_REMOTE_JWKS=envoy`, as `scripts/demo` installs Istio, the
//! gateway's Envoy fetches it through the mesh). A URI whose host is a Service
//! of the mesh is fetched from one of its pods; keys are kept five minutes, a
//! failed fetch is tried again after a second.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mesh::{
    authn::JwkSet,
    hosts::{resolve, split_authority},
};

use mesh::Mesh;

const FRESH: Duration = Duration::from_secs(300);
const RETRY: Duration = Duration::from_secs(1);
const MAX_JWKS: usize = 64 * 1024;

/// The keys fetched (`None`: the fetch failed) and when.
type Fetched = (Option<Arc<JwkSet>>, Instant);

#[derive(Default)]
pub struct Jwks {
    entries: Mutex<HashMap<String, Fetched>>,
}

impl Jwks {
    /// The keys of `uri` as last fetched, if fresh.
    pub fn get(&self, uri: &str) -> Option<Arc<JwkSet>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(uri).and_then(|(k, _)| k.clone())
    }

    /// Fetches `uri` unless its keys are fresh or a fetch failed a moment ago.
    /// A `jwksUri` whose host is a Service of `mesh` is fetched from one of
    /// its pods (`pod` gives a workload's address by its place in `mesh`).
    pub async fn refresh(
        &self,
        client: &reqwest::Client,
        mesh: &Mesh,
        pod: impl Fn(usize) -> Option<std::net::SocketAddr>,
        uri: &str,
    ) {
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((keys, at)) = entries.get(uri) {
                let keep = if keys.is_some() { FRESH } else { RETRY };
                if at.elapsed() < keep {
                    return;
                }
            }
        }
        let keys = match fetch(client, mesh, pod, uri).await {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                tracing::warn!("jwksUri {uri}: {e}");
                None
            }
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(uri.to_owned(), (keys, Instant::now()));
    }
}

async fn fetch(
    client: &reqwest::Client,
    mesh: &Mesh,
    pod: impl Fn(usize) -> Option<std::net::SocketAddr>,
    uri: &str,
) -> Result<JwkSet, String> {
    let rest = uri
        .strip_prefix("http://")
        .ok_or("only http:// URIs are fetched locally")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let (host, _) = split_authority(authority);
    // A Service of the mesh: one of its pods.
    let fqdn = resolve(&host, "default");
    let addr = mesh
        .service(&fqdn)
        .or_else(|| mesh.service(&host))
        .and_then(|s| mesh.endpoints(s).first())
        .and_then(|&i| pod(i));
    let target = match addr {
        Some(a) => format!("http://{a}{path}"),
        None => uri.to_owned(),
    };
    let cause = |e: reqwest::Error| weather_core::client::root_cause(&e);
    let mut res = client.get(&target).send().await.map_err(cause)?;
    if !res.status().is_success() {
        return Err(format!("answered {}", res.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(cause)? {
        if body.len() + chunk.len() > MAX_JWKS {
            return Err(format!("answered more than {MAX_JWKS} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))
}
