//! What the model predicts a request through the ingress will meet: the chain of
//! `app:version` it will be served by, with probabilities. It follows the request
//! hop by hop, as each workload's sidecar would route its outbound call, with the
//! headers that service really forwards (never the cookie). A call the route's
//! fault aborts, or that the fault's delay or the callee's slowness keeps past
//! the route's timeout or the caller's patience, ends the chain at the caller
//! (the resilience lab's stages); circuit breakers depend on the load and are
//! not predicted.

use std::{collections::BTreeMap, time::Duration};

use mesh::{
    Manifests, Mesh, Routed,
    model::Container,
    policy::Policy,
    routing::{Caller, Request},
    terms::WithClaims,
};

use crate::workloads::parse_image;

/// The headers a Weather service forwards downstream that routing can match
/// on: the request id and user agent, copied, and the W3C baggage, passed on
/// by OpenTelemetry's propagator (a lane, say).
const FORWARDED: [&str; 3] = ["user-agent", "x-request-id", "baggage"];

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
        &mut |w, p, ops| first.push((w, p, rewrite(headers, ops))),
        &mut |p| failed += p,
    );
    for (w, p, sent) in first {
        follow(manifests, mesh, w, &sent, String::new(), p, 0, &mut out);
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

/// What a hop does to the request it forwards: the route's and the
/// destination's header operations ([`mesh::headers`]).
type Ops = mesh::headers::Ops;

/// Calls `to(workload, p, ops)` for each endpoint a routing outcome spreads
/// over (`ops`: what the hop does to the request's headers on the way), and
/// `fail(p)` for the share that cannot be served.
fn spread(
    routed: Routed<'_>,
    p: f64,
    to: &mut dyn FnMut(usize, f64, &Ops),
    fail: &mut dyn FnMut(f64),
) {
    let Routed::Route {
        targets, policy, ..
    } = routed
    else {
        fail(p);
        return;
    };
    let lone = targets.len() == 1;
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
        let ops = mesh::headers::effective(&policy.headers, &t.headers, lone).request;
        // Envoy balances evenly over the endpoints of a cluster.
        for &w in &t.endpoints {
            to(w, share / t.endpoints.len() as f64, &ops);
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
    let Some(c) = container(manifests, &w.name) else {
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
    let policy = match routed {
        Routed::Route { policy, .. } => Some(policy),
        _ => None,
    };
    let patience = app.downstream_timeout(|v| c.env(v).map(str::to_owned));
    // A failed call leaves the chain at this app: frontend answers 503 with only
    // itself, forecast v2 answers 200 without advice.
    let mut failed = 0.0;
    let mut hops = Vec::new();
    spread(
        routed,
        p,
        &mut |nw, np, ops| hops.push((nw, np, rewrite(&forwarded, ops))),
        &mut |fp| failed += fp,
    );
    for (nw, np, sent) in hops {
        // The share of calls the route's fault, the callee's own failures and
        // the caller's patience lose.
        let callee = container(manifests, &mesh.workloads[nw].name);
        let lost = match (policy, callee) {
            (Some(policy), Some(callee)) => np * lost_share(policy, callee, patience),
            _ => 0.0,
        };
        failed += lost;
        let np = np - lost;
        if np <= 0.0 {
            continue;
        }
        follow(
            manifests,
            mesh,
            nw,
            &sent,
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

/// The first container of the Deployment named `name`.
fn container<'m>(manifests: &'m Manifests, name: &str) -> Option<&'m Container> {
    manifests
        .deployments
        .iter()
        .find(|d| d.metadata.name == name)?
        .spec
        .template
        .spec
        .containers
        .first()
}

/// The share of calls over a route with `policy` to a workload run as
/// `callee` that get no answer from it, for a caller that waits `patience`
/// ms: aborted by the route's fault, delayed by it past the caller's
/// patience, or slower (`FAULT_DELAY_MS`) than the route's timeout, its
/// per-try timeout or what is left of the caller's patience. Those calls end
/// the chain at the caller. An answer, an error too (`FAULT_ERROR_RATE`),
/// carries the callee's chain, so retries change no chain. Circuit breakers
/// are left out: they depend on the load.
fn lost_share(policy: &Policy, callee: &Container, patience: Option<u64>) -> f64 {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let slow = callee
        .env("FAULT_DELAY_MS")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let patience = patience.map_or(f64::INFINITY, |p| p as f64);
    let share = |per_million: u32| f64::from(per_million) / f64::from(mesh::fault::MILLION);
    let (abort, delayed, delay) = match &policy.fault {
        None => (0.0, 0.0, 0.0),
        Some(f) => (
            f.abort.as_ref().map_or(0.0, |a| share(a.per_million)),
            f.delay.as_ref().map_or(0.0, |d| share(d.per_million)),
            f.delay.as_ref().map_or(0.0, |d| ms(d.fixed)),
        ),
    };
    // Whether a call past the fault filter, held `held` ms by it, goes
    // unanswered.
    let lost = |held: f64| -> f64 {
        let timeout = policy.timeout.map_or(f64::INFINITY, ms);
        let per_try = policy.retries.per_try_timeout.map_or(f64::INFINITY, ms);
        let late = held >= patience || slow >= timeout.min(per_try).min(patience - held);
        if late { 1.0 } else { 0.0 }
    };
    abort + (1.0 - abort) * (delayed * lost(delay) + (1.0 - delayed) * lost(0.0))
}

/// `headers` as a hop with `ops` forwards them: the removals, then each
/// `set` (replacing every value of its name) or `add`.
fn rewrite(headers: &[(String, String)], ops: &Ops) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !ops.remove.iter().any(|r| k.eq_ignore_ascii_case(r)))
        .cloned()
        .collect();
    for (k, v, append) in &ops.add {
        if !append {
            out.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        }
        out.push((k.clone(), v.clone()));
    }
    out
}
