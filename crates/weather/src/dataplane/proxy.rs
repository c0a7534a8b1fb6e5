//! One proxy hop, as Envoy takes it for the ingress gateway or a sidecar: route
//! the request with the applied mesh, pick a destination by weight and an
//! endpoint round-robin, forward it over a pooled keep-alive connection with its
//! body streamed both ways, within the route's timeout and retries, and answer
//! as Envoy does when it cannot: a client's fault (400 `DPE`, 408 `SI`; see
//! [`super::downstream`]), no route (404 `NR`), no destination or endpoint
//! (503 `NC`/`UH`), an upstream's fault (503 `UF`, `UC`, with `URX` when
//! retries ran out; 502 `UPE`; 504 `UT`), the flags in
//! `x-weather-response-flags`.
//!
//! [`router`] makes a hop a `Router`, so `weather up` serves it on a listener and
//! tests call it in-process.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, State},
    http::{Request, Response, StatusCode, header},
};
use http_body::Body as _;
use mesh::{
    Routed,
    authn::Mtls,
    model::Labels,
    policy::Policy,
    routing::{Caller, Target},
    security::{Arrival, Dest},
    terms::WithClaims,
};
use opentelemetry::{KeyValue, propagation::TextMapPropagator, trace::TraceContextExt};
use weather_core::telemetry::{HeaderExtractor, HeaderInjector, Telemetry, propagator};

use super::{
    downstream::{self},
    headers::{Headers, at_the_edge, to_upstream},
    plane::{Applied, Plane},
    refusal::Refusal,
    stats::{INGRESS_PEER, UNKNOWN_PEER, is_tester},
};

mod forward;
mod mirror;
mod record;

use forward::forward;
use record::{Record, proxy_span};

/// Which proxy a listener stands for.
#[derive(Clone, Debug)]
pub enum Hop {
    /// Istio's ingress gateway: routes bound to the Gateway apply, and the
    /// request's own Host is its authority.
    Ingress,
    /// A workload's sidecar: routes bound to `mesh` apply, matched against the
    /// workload's pod labels; the app's outbound URL names the authority
    /// (empty: the request's Host does).
    Sidecar {
        workload: String,
        namespace: String,
        labels: Labels,
        authority: String,
    },
}

impl Hop {
    /// Who sends the hop's requests, for logs and spans: `ingress` or the
    /// Deployment's name.
    pub fn name(&self) -> &str {
        match self {
            Hop::Ingress => "ingress",
            Hop::Sidecar { workload, .. } => workload,
        }
    }
}

struct Listener {
    plane: Arc<Plane>,
    hop: Hop,
    /// The hop's proxy as the metrics name it: an index of `Stats::peers`.
    peer: usize,
    /// The proxy's own tracer: `istio-ingressgateway.istio-system`, or
    /// `APP.NAMESPACE` for a sidecar, as Istio's proxies report.
    telemetry: Telemetry,
    /// The mTLS identity it presents upstream: its workload's ServiceAccount's.
    identity: Option<String>,
}

/// A hop of `plane` as a router: every path, every method.
pub fn router(plane: Arc<Plane>, hop: Hop, telemetry: Telemetry) -> Router {
    let peer = match &hop {
        Hop::Ingress => INGRESS_PEER,
        Hop::Sidecar { workload, .. } => plane.stats.peer(workload).unwrap_or(UNKNOWN_PEER),
    };
    let identity = match &hop {
        Hop::Ingress => Some(plane.applied().mesh.ingress.principal()),
        Hop::Sidecar {
            workload,
            namespace,
            ..
        } => plane
            .applied()
            .mesh
            .workloads
            .iter()
            .find(|w| &w.name == workload && &w.namespace == namespace)
            .map(mesh::security::workload_principal),
    };
    let listener = Listener {
        plane,
        hop,
        peer,
        telemetry,
        identity,
    };
    Router::new().fallback(proxy).with_state(Arc::new(listener))
}

/// One hop: route, pick, forward, record.
async fn proxy(State(l): State<Arc<Listener>>, mut req: Request<Body>) -> Response<Body> {
    let start = Instant::now();
    let applied = l.plane.applied();
    // The path routed and forwarded; a refused request is logged as sent.
    let (path, refused) = match downstream::admit(&req) {
        Ok(p) => (p, None),
        Err(r) => {
            let sent = req.uri().path_and_query();
            let sent = sent.map_or_else(|| req.uri().to_string(), |p| p.as_str().to_owned());
            (sent, Some(r))
        }
    };
    let authority = match &l.hop {
        Hop::Sidecar { authority, .. } if !authority.is_empty() => authority.clone(),
        // The ingress, and a sidecar that takes any host: the request's own.
        _ => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_owned(),
    };
    let exporting = l.telemetry.is_exporting();
    let request_bytes = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    // Without an exporter the trace headers pass through untouched, as they came.
    let cx = if exporting {
        let parent = propagator().extract(&HeaderExtractor(req.headers()));
        parent.with_span(proxy_span(&l, &req, &authority, &path, &parent))
    } else {
        opentelemetry::Context::new()
    };
    let mut record = Record {
        l: &l,
        start,
        method: req.method().clone(),
        path,
        authority,
        cx,
        exporting,
        rule: String::new(),
        to: String::new(),
        service: None,
        destination: None,
        mtls: false,
        request_bytes,
        finished: Default::default(),
        delayed: Default::default(),
    };

    if let Some(r) = refused {
        return record.refuse(r);
    }
    // The gateway's own filters: JWT, then authorization; the claims of a
    // verified token are what `@request.auth.claims` routes read.
    let mut claims = None;
    if matches!(l.hop, Hop::Ingress) && !applied.mesh.security.is_open() {
        match admit(&l, &applied, Dest::Ingress, req.headers(), &record).await {
            Ok(c) => claims = c,
            Err(r) => return record.refuse(r),
        }
    }
    let (target, policy, lone) = match decide(&applied, &l.hop, &req, claims.as_ref(), &mut record)
    {
        Ok(t) => t,
        Err(r) => return record.refuse(r),
    };
    // The fault filter, before the router picks a pod (and sends any mirror).
    if let Err(aborted) = forward::fault(policy, &record).await {
        return aborted;
    }
    let mut endpoints: Vec<Endpoint> = Vec::with_capacity(target.endpoints.len());
    for &i in &target.endpoints {
        let Some((addr, peer)) = applied.pod(i) else {
            continue;
        };
        // What the destination's sidecar would do with the request.
        let refusal = if applied.mesh.security.is_open() {
            None
        } else {
            admit(&l, &applied, Dest::Workload(i), req.headers(), &record)
                .await
                .err()
        };
        // Istio's auto mTLS: sidecar to sidecar is mutual TLS unless the
        // destination's mode is DISABLE.
        let mtls = applied.mesh.security.mtls(Dest::Workload(i)).0 != Mtls::Disable;
        endpoints.push(Endpoint {
            addr,
            peer,
            refusal,
            mtls,
        });
    }
    if endpoints.is_empty() {
        let detail = format!("{}: no healthy upstream", record.to);
        return record.refuse(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "UH", detail));
    }
    // The cluster's circuit breakers and outlier detection, if its
    // DestinationRule sets them: ejected hosts are not picked.
    let hosts = endpoints.len();
    let circuit = if target.cluster.is_default() {
        None
    } else {
        cluster_name(&applied, target)
            .and_then(|name| l.plane.circuits.get(l.peer, &name, &target.cluster))
    };
    if let Some(c) = &circuit {
        let addrs: Vec<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
        let usable = c.usable(&addrs);
        if usable.is_empty() {
            // Every host ejected, and no panic threshold to fall back on.
            return record.refuse(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UH",
                "no healthy upstream",
            ));
        }
        if usable.len() < endpoints.len() {
            let mut i = 0;
            endpoints.retain(|_| {
                i += 1;
                usable.contains(&(i - 1))
            });
        }
    }

    to_upstream(req.headers_mut(), &record.authority);
    // The version matrix of the page: who called, at the ingress.
    let matrix = matches!(l.hop, Hop::Ingress) && l.plane.stats.enabled();
    let tester = matrix
        && is_tester(
            req.headers()
                .get_all(header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
        );
    if matches!(l.hop, Hop::Ingress) {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        at_the_edge(req.headers_mut(), peer);
    }
    if exporting {
        propagator().inject_context(&record.cx, &mut HeaderInjector(req.headers_mut()));
    }
    // Mirrors: a copy of the request, sent on the side, its answer dropped.
    // (A request with a body is not copied: the body streams once.)
    if !policy.mirrors.is_empty() && req.body().is_end_stream() {
        for m in &policy.mirrors {
            if fastrand::u32(0..mesh::fault::MILLION) < m.per_million {
                let (method, headers) = (req.method(), req.headers());
                mirror::send(&l, &applied, m, method, headers, &record, policy.timeout).await;
            }
        }
    }
    let headers = mesh::headers::effective(&policy.headers, &target.headers, lone);
    let to = forward::Destination {
        endpoints: &endpoints,
        circuit: circuit.as_ref(),
        hosts,
        headers: &headers,
    };
    let res = forward(&l.plane, to, policy, req, &mut record).await;
    if matrix && let Some(chain) = res.headers().get(weather_core::chain::CHAIN_HEADER) {
        let trace = exporting.then(|| record.cx.span().span_context().trace_id().to_string());
        l.plane
            .stats
            .visit(tester, &String::from_utf8_lossy(chain.as_bytes()), trace);
    }
    res
}

/// The cluster Envoy would send to: `outbound|PORT|SUBSET|FQDN`.
fn cluster_name(applied: &Applied, target: &Target) -> Option<String> {
    let svc = applied.mesh.services.get(target.service?)?;
    let port = svc.ports.first().copied().unwrap_or(80);
    let subset = target.subset.as_deref().unwrap_or("");
    Some(format!("outbound|{port}|{subset}|{}", svc.fqdn))
}

/// A pod the request may be sent to.
pub(super) struct Endpoint {
    addr: SocketAddr,
    /// Its index in `Stats::peers`.
    peer: usize,
    /// What its sidecar answers instead of the app, if it refuses the request.
    refusal: Option<Refusal>,
    /// Whether the hop reaches it over mutual TLS.
    mtls: bool,
}

/// mTLS, JWT and authorization of the request at `dest`, as its proxy takes
/// them: the claims of a verified token, or the proxy's refusal. Keys of a
/// `jwksUri` are fetched first when needed.
async fn admit(
    l: &Listener,
    applied: &Applied,
    dest: Dest,
    headers: &axum::http::HeaderMap,
    record: &Record<'_>,
) -> Result<Option<mesh::terms::Claims>, Refusal> {
    let security = &applied.mesh.security;
    for p in security.providers(dest) {
        if let Some(uri) = &p.jwks_uri {
            let pod = |i| applied.addr(i);
            l.plane
                .jwks
                .refresh(&l.plane.client, &applied.mesh, pod, uri)
                .await;
        }
    }
    let (path, query) = record.path.split_once('?').unwrap_or((&record.path, ""));
    let headers = Headers(headers);
    let arrival = Arrival {
        caller: l.identity.as_deref(),
        host: &record.authority,
        method: record.method.as_str(),
        path,
        query,
        headers: &headers,
    };
    let keys = |uri: &str| l.plane.jwks.get(uri);
    let admission = security.admit(dest, &arrival, &keys);
    if let Some(r) = admission.refusal() {
        let at = match dest {
            Dest::Ingress => "ingress",
            Dest::Workload(i) => applied.mesh.workloads.get(i).map_or("?", |w| &w.name),
        };
        tracing::debug!(
            "{at} refused {} {}: {}",
            record.method,
            record.path,
            admission.describe(at).join("; ")
        );
        let realm = format!("http://{}{path}", record.authority);
        return Err(Refusal::security(r, &realm));
    }
    Ok(admission.claims().cloned())
}

/// Routes the request and picks its destination; the route's timeout and
/// retries come with it. Fills the record's rule and destination names when
/// they are logged or traced.
fn decide<'a>(
    applied: &'a Applied,
    hop: &Hop,
    req: &Request<Body>,
    claims: Option<&mesh::terms::Claims>,
    record: &mut Record<'_>,
) -> Result<(&'a Target, &'a Policy, bool), Refusal> {
    let authority = record.authority.as_str();
    let caller = match hop {
        Hop::Ingress => Caller::Ingress,
        Hop::Sidecar {
            namespace, labels, ..
        } => Caller::Workload { namespace, labels },
    };
    let headers = WithClaims {
        headers: &Headers(req.headers()),
        claims,
    };
    let mreq = mesh::Request {
        authority,
        path: &record.path,
        method: req.method().as_str(),
        scheme: "http",
        headers: &headers,
    };
    let (rule, targets, policy) = match applied.mesh.route(caller, &mreq) {
        Routed::NoRoute(why) => {
            let detail = format!("no route: {why:?}");
            return Err(Refusal::new(StatusCode::NOT_FOUND, "NR", detail));
        }
        Routed::Route {
            rule,
            targets,
            policy,
        } => (rule, targets, policy),
        Routed::Blocked => {
            let detail = format!(
                "{authority}: not a host this workload's Sidecar resource reaches (REGISTRY_ONLY)"
            );
            return Err(Refusal::new(StatusCode::BAD_GATEWAY, "-", detail));
        }
        Routed::Passthrough => {
            // Envoy would connect to the address the app sent it to; weather up
            // reaches nothing outside its own workloads.
            let detail = format!(
                "{authority}: no Service on that host and port; a cluster's sidecar passes it through (PassthroughCluster), weather up does not leave this machine"
            );
            return Err(Refusal::new(StatusCode::BAD_GATEWAY, "-", detail));
        }
    };
    if record.verbose() {
        record.rule = rule.map_or_else(|| "default".into(), |r| r.to_string());
    }
    let total = Routed::total(targets);
    let picked = (total > 0)
        .then(|| Routed::pick(targets, fastrand::u32(..total)))
        .flatten();
    if let Some(t) = picked {
        record.service = t.service.and_then(|i| applied.service(i)).cloned();
    }
    let Some(target) = picked else {
        let detail = "every destination has weight 0";
        return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "NC", detail));
    };
    if record.verbose() {
        record.to = match &target.subset {
            Some(s) => format!("{}|{s}", target.host),
            None => target.host.clone(),
        };
    }
    if record.exporting
        && let Some(svc) = target.service.and_then(|i| applied.mesh.services.get(i))
    {
        let port = svc.ports.first().copied().unwrap_or(80);
        let span = record.cx.span();
        span.update_name(format!("{}:{port}/*", svc.fqdn));
        if let Some(cluster) = cluster_name(applied, target) {
            span.set_attribute(KeyValue::new("upstream_cluster", cluster));
        }
    }
    if let Some(p) = &target.problem {
        let detail = format!("{}: {p:?}", record.to);
        // 503, or 500 for an HTTPRoute's backend that is no Service.
        let status = StatusCode::from_u16(p.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Err(Refusal::new(status, p.flag(), detail));
    }
    // (A route's lone destination takes its headers with the route's.)
    Ok((target, policy, targets.len() == 1))
}
