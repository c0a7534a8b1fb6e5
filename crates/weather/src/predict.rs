//! What the model predicts a request through the ingress will meet: the chain of
//! `app:version` it will be served by, with probabilities. It follows the request
//! hop by hop, as each workload's sidecar would route its outbound call, with the
//! headers that service really forwards (never the cookie).

use std::collections::BTreeMap;

use mesh::{
    Manifests, Mesh, Routed,
    routing::{Caller, Request},
    terms::WithClaims,
};

use crate::workloads::parse_image;

/// The headers a Weather service forwards downstream that routing can match on.
const FORWARDED: [&str; 2] = ["user-agent", "x-request-id"];

/// Chain -> probability, for one request entering at the ingress.
pub type Prediction = BTreeMap<String, f64>;

pub fn predict(manifests: &Manifests, mesh: &Mesh, headers: &[(String, String)]) -> Prediction {
    let mut out = Prediction::new();
    // A JWT in the `token` cookie is one the frontend's own login issued to
    // `weather verify` a moment ago: its claims are what the gateway verifies.
    let claims = token_claims(headers);
    let with_claims = WithClaims {
        headers,
        claims: claims.as_ref(),
    };
    let req = Request {
        authority: "weather.local",
        path: "/",
        method: "GET",
        scheme: "http",
        headers: &with_claims,
    };
    let mut first = Vec::new();
    let mut failed = 0.0;
    spread(
        mesh.route(Caller::Ingress, &req),
        1.0,
        &mut |w, p| first.push((w, p)),
        &mut |p| failed += p,
    );
    for (w, p) in first {
        follow(manifests, mesh, w, headers, String::new(), p, 0, &mut out);
    }
    if failed > 0.0 {
        out.insert("(no answer)".into(), failed);
    }
    out
}

/// The claims of the JWT in the `token` cookie, read without verifying it.
fn token_claims(headers: &[(String, String)]) -> Option<mesh::terms::Claims> {
    use base64::Engine;
    let cookie = headers.iter().find(|(k, _)| k == "cookie")?;
    let token = mesh::authn::cookie(&cookie.1, "token")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Calls `to(workload, p)` for each endpoint a routing outcome spreads over, and
/// `fail(p)` for the share that cannot be served.
fn spread(routed: Routed<'_>, p: f64, to: &mut dyn FnMut(usize, f64), fail: &mut dyn FnMut(f64)) {
    let Routed::Route { targets, .. } = routed else {
        fail(p);
        return;
    };
    let total = Routed::total(targets) as f64;
    if total == 0.0 {
        fail(p);
        return;
    }
    for t in targets.iter().filter(|t| t.weight > 0) {
        let share = p * t.weight as f64 / total;
        if t.problem.is_some() || t.endpoints.is_empty() {
            fail(share);
            continue;
        }
        // Envoy balances evenly over the endpoints of a cluster.
        for &w in &t.endpoints {
            to(w, share / t.endpoints.len() as f64);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn follow(
    manifests: &Manifests,
    mesh: &Mesh,
    workload: usize,
    headers: &[(String, String)],
    prefix: String,
    p: f64,
    depth: usize,
    out: &mut Prediction,
) {
    let w = &mesh.workloads[workload];
    let Some(d) = manifests
        .deployments
        .iter()
        .find(|d| d.metadata.name == w.name)
    else {
        return;
    };
    let Some(c) = d.spec.template.spec.containers.first() else {
        return;
    };
    let Ok((app, image_version)) = parse_image(&c.image) else {
        *out.entry(format!("{prefix}{}:?", w.name)).or_default() += p;
        return;
    };
    let version = c
        .env("APP_VERSION")
        .and_then(|v| v.parse().ok())
        .unwrap_or(image_version);
    let chain = if prefix.is_empty() {
        format!("{}:{version}", app.name())
    } else {
        format!("{prefix},{}:{version}", app.name())
    };
    let next = app.downstream(version).filter(|_| depth < 5);
    let Some((var, default)) = next else {
        *out.entry(chain).or_default() += p;
        return;
    };
    let url = c.env(var).unwrap_or(default);
    let authority = url
        .strip_prefix("http://")
        .map(|r| r.split('/').next().unwrap_or(r))
        .unwrap_or(url);
    let forwarded: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| FORWARDED.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let req = Request {
        authority,
        path: "/",
        method: "GET",
        scheme: "http",
        headers: forwarded.as_slice(),
    };
    let routed = mesh.route(
        Caller::Workload {
            namespace: &w.namespace,
            labels: &w.labels,
        },
        &req,
    );
    // A failed call leaves the chain at this app: frontend answers 503 with only
    // itself, forecast v2 answers 200 without advice.
    let mut failed = 0.0;
    let mut hops = Vec::new();
    spread(routed, p, &mut |nw, np| hops.push((nw, np)), &mut |fp| {
        failed += fp
    });
    for (nw, np) in hops {
        follow(
            manifests,
            mesh,
            nw,
            &forwarded,
            chain.clone(),
            np,
            depth + 1,
            out,
        );
    }
    if failed > 0.0 {
        *out.entry(chain).or_default() += failed;
    }
}
