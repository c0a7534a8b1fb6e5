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
    http::{Method, Request, Response, StatusCode, Uri, header},
};
use http_body::Body as _;
use mesh::{
    Routed,
    model::Labels,
    policy::Policy,
    routing::{Caller, Target},
    security::{Arrival, Dest},
    terms::WithClaims,
};
use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{SpanKind, Status, TraceContextExt},
};
use weather_core::telemetry::{HeaderExtractor, HeaderInjector, Telemetry, propagator};

use super::upstream::SendError;

use super::{
    downstream::{self, ClientFault, Outgoing},
    headers::{Headers, at_the_edge, strip_hop_by_hop, to_upstream},
    metered::Metered,
    plane::{Applied, Plane},
    refusal::Refusal,
    stats::{Exchange, INGRESS_PEER, ServiceRef, UNKNOWN_PEER, is_tester},
};

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
        Hop::Ingress => Some(mesh::security::ingress_principal()),
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

/// The hop's span, access-log line and metrics, finished once with the
/// outcome. Names are built only when the log or the span is on.
struct Record<'a> {
    l: &'a Listener,
    start: Instant,
    method: Method,
    path: String,
    authority: String,
    cx: opentelemetry::Context,
    exporting: bool,
    rule: String,
    to: String,
    /// The Service and the workload (an index of `Stats::peers`) the request
    /// was sent to, once chosen.
    service: Option<Arc<ServiceRef>>,
    destination: Option<usize>,
    request_bytes: u64,
}

impl Record<'_> {
    fn verbose(&self) -> bool {
        self.exporting || self.l.plane.settings.access_log
    }

    fn finish(&self, status: u16, flags: &str) {
        if self.exporting {
            let span = self.cx.span();
            span.set_attribute(KeyValue::new("http.status_code", i64::from(status)));
            span.set_attribute(KeyValue::new("response_flags", flags.to_owned()));
            if status >= 500 {
                span.set_status(Status::error(format!("{status} {flags}")));
            }
            span.end();
        }
        if self.l.plane.settings.access_log {
            let from = self.l.hop.name();
            let (rule, to) = (or_dash(&self.rule), or_dash(&self.to));
            tracing::info!(
                target: "weather::access",
                "\"{} {}\" {status} {flags} from={from} to={to} rule={rule} {:.1}ms",
                self.method,
                self.path,
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }

    /// What the metrics get of this exchange; the duration and response size
    /// are filled in when the response ends.
    fn exchange(&self, code: u16, flags: &'static str, reached: bool) -> Exchange {
        let service = self
            .service
            .clone()
            .unwrap_or_else(|| Arc::new(ServiceRef::unresolved(&self.authority)));
        Exchange {
            source: self.l.peer,
            destination: self.destination,
            service,
            code,
            flags,
            reached,
            duration: self.start.elapsed(),
            request_bytes: self.request_bytes,
            response_bytes: 0,
        }
    }

    /// The hop answers itself: the destination never saw the request.
    fn refuse(&self, r: Refusal) -> Response<Body> {
        let code = r.status.as_u16();
        self.finish(code, r.flag);
        let stats = &self.l.plane.stats;
        if stats.enabled() {
            let mut e = self.exchange(code, r.flag, false);
            e.response_bytes = r.detail.len() as u64 + 1;
            stats.record(&e);
        }
        r.into_response()
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
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
        request_bytes,
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
    let (target, policy) = match decide(&applied, &l.hop, &req, claims.as_ref(), &mut record) {
        Ok(t) => t,
        Err(r) => return record.refuse(r),
    };
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
        endpoints.push(Endpoint {
            addr,
            peer,
            refusal,
        });
    }
    if endpoints.is_empty() {
        let detail = format!("{}: no healthy upstream", record.to);
        return record.refuse(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "UH", detail));
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
    let res = forward(&l.plane, &endpoints, policy, req, &mut record).await;
    if matrix && let Some(chain) = res.headers().get(weather_core::chain::CHAIN_HEADER) {
        l.plane
            .stats
            .visit(tester, &String::from_utf8_lossy(chain.as_bytes()));
    }
    res
}

/// A pod the request may be sent to.
struct Endpoint {
    addr: SocketAddr,
    /// Its index in `Stats::peers`.
    peer: usize,
    /// What its sidecar answers instead of the app, if it refuses the request.
    refusal: Option<Refusal>,
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
) -> Result<(&'a Target, &'a Policy), Refusal> {
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
        let subset = target.subset.as_deref().unwrap_or("");
        span.set_attribute(KeyValue::new(
            "upstream_cluster",
            format!("outbound|{port}|{subset}|{}", svc.fqdn),
        ));
    }
    if let Some(p) = &target.problem {
        let detail = format!("{}: {p:?}", record.to);
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            p.flag(),
            detail,
        ));
    }
    Ok((target, policy))
}

/// How one attempt went wrong.
enum Failure {
    /// The connection could not be made (`UF`).
    Connect(String),
    /// The connection closed or reset before the response began (`UC`).
    Reset,
    /// The upstream did not speak HTTP (`UPE`).
    Protocol,
    /// The attempt's own timeout ran out (`UT`).
    PerTryTimeout,
}

/// What the upstream's failure was, in Envoy's terms.
fn classify(e: &SendError) -> Failure {
    match e {
        SendError::Connect(reason) => Failure::Connect(reason.clone()),
        SendError::Http(h) if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() => {
            Failure::Protocol
        }
        SendError::Http(_) => Failure::Reset,
    }
}

impl Failure {
    /// Envoy's answer once no attempt is left; `retried`: some attempt was
    /// retried (the flags then carry `URX`).
    fn refusal(&self, retried: bool) -> Refusal {
        const BEFORE: &str = "upstream connect error or disconnect/reset before headers.";
        let latest = if retried {
            "retried and the latest reset reason"
        } else {
            "reset reason"
        };
        match self {
            Failure::Connect(why) => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                if retried { "URX,UF" } else { "UF" },
                format!(
                    "{BEFORE} {latest}: remote connection failure, transport failure reason: {why}"
                ),
            ),
            Failure::Reset => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                if retried { "URX,UC" } else { "UC" },
                format!("{BEFORE} {latest}: connection termination"),
            ),
            Failure::Protocol => Refusal::new(
                StatusCode::BAD_GATEWAY,
                "UPE",
                format!("{BEFORE} {latest}: protocol error"),
            ),
            Failure::PerTryTimeout => Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                "UT",
                "upstream request timeout",
            ),
        }
    }

    fn retriable(&self, policy: &Policy) -> bool {
        let on = &policy.retries.on;
        match self {
            Failure::Connect(_) => on.connect_failure(),
            Failure::Reset => on.reset(),
            Failure::Protocol => false,
            Failure::PerTryTimeout => on.per_try_timeout(),
        }
    }
}

/// Envoy's back-off before retry `n` (1, 2, ...): a random wait in
/// (0, (2^n - 1) x 25 ms].
fn backoff(n: u32) -> std::time::Duration {
    let ceiling = ((1u64 << n.min(10)) - 1) * 25_000;
    std::time::Duration::from_micros(fastrand::u64(1..=ceiling.max(1)))
}

/// Sends the request to an endpoint, round-robin, within the route's policy:
/// its timeout over all attempts, and its retries, each on the next endpoint
/// (Envoy's `previous_hosts`). A retry re-sends a body only if no attempt
/// began to read it.
async fn forward(
    plane: &Plane,
    endpoints: &[Endpoint],
    policy: &Policy,
    req: Request<Body>,
    record: &mut Record<'_>,
) -> Response<Body> {
    // (The framing headers are gone by now: hop-by-hop. The body knows.)
    let bodiless = req.body().is_end_stream();
    let timeout = policy.timeout.or(plane.settings.default_timeout);
    let deadline = timeout.map(|t| tokio::time::Instant::from_std(record.start) + t);
    let first = plane.next() % endpoints.len();
    let (parts, body) = req.into_parts();
    let outgoing = if bodiless {
        None
    } else {
        let chunked = body.size_hint().exact().is_none();
        match Outgoing::new(body, chunked, plane.settings.stream_idle_timeout).await {
            Ok(o) => Some(o),
            Err(r) => return record.refuse(r),
        }
    };
    let Ok(uri_path) = axum::http::uri::PathAndQuery::try_from(record.path.as_str()) else {
        return record.refuse(Refusal::new(
            StatusCode::BAD_REQUEST,
            "-",
            "bad request path",
        ));
    };
    // What broke on the client's side while its body was being sent, if anything.
    let client_fault = || outgoing.as_ref().and_then(|o| o.fault.get()).copied();
    let mut attempt = 0u32;
    loop {
        let endpoint = &endpoints[(first + attempt as usize) % endpoints.len()];
        let (addr, peer) = (endpoint.addr, endpoint.peer);
        record.destination = Some(peer);
        // The destination's proxy refuses it: its answer, never retried (a
        // 401 or 403 is no reason to retry; a plaintext reset is not sent).
        if let Some(r) = &endpoint.refusal {
            return record.refuse(r.clone());
        }
        let body = match &outgoing {
            None => Some(Body::empty()),
            Some(o) => o.attempt(),
        };
        // (Retries are only made while the body is unsent.)
        let Some(body) = body else {
            return record.refuse(Failure::Reset.refusal(attempt > 0));
        };
        let mut up = Request::from_parts(parts.clone(), body);
        *up.uri_mut() = Uri::from(uri_path.clone());
        let per_try = policy.retries.per_try_timeout;
        let limit = match (deadline, per_try) {
            (Some(d), Some(p)) => Some(d.min(tokio::time::Instant::now() + p)),
            (Some(d), None) => Some(d),
            (None, Some(p)) => Some(tokio::time::Instant::now() + p),
            (None, None) => None,
        };
        let sent = plane.upstreams.send(addr, up);
        let outcome = match limit {
            Some(at) => tokio::time::timeout_at(at, sent).await.ok(),
            None => Some(sent.await),
        };
        let failure = match outcome {
            Some(Ok(res))
                if attempt < policy.retries.attempts
                    && policy.retries.on.status(res.status().as_u16())
                    && outgoing.as_ref().is_none_or(Outgoing::unsent) =>
            {
                tracing::debug!("{addr} answered {}, retrying", res.status());
                None
            }
            // The client's body broke while the upstream answered: a client
            // fault, as Envoy's codec would have found it first.
            Some(Ok(_)) if client_fault().is_some() => {
                let fault = client_fault().unwrap_or(ClientFault::Protocol);
                return record.refuse(fault.refusal());
            }
            Some(Ok(res)) => {
                let retried_out = attempt > 0 && policy.retries.on.status(res.status().as_u16());
                return deliver(plane, res, addr, retried_out, record);
            }
            Some(Err(e)) => {
                if let Some(fault) = client_fault() {
                    return record.refuse(fault.refusal());
                }
                Some(classify(&e))
            }
            None if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                return record.refuse(Refusal::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "UT",
                    "upstream request timeout",
                ));
            }
            None => Some(Failure::PerTryTimeout),
        };
        let can_resend = outgoing.as_ref().is_none_or(Outgoing::unsent);
        let retry = attempt < policy.retries.attempts
            && can_resend
            && failure.as_ref().is_none_or(|f| f.retriable(policy));
        if !retry {
            let failure = failure.unwrap_or(Failure::Reset);
            return record.refuse(failure.refusal(attempt > 0));
        }
        attempt += 1;
        let wait = backoff(attempt);
        if deadline.is_some_and(|d| tokio::time::Instant::now() + wait >= d) {
            return record.refuse(Refusal::new(
                StatusCode::GATEWAY_TIMEOUT,
                "UT",
                "upstream request timeout",
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

/// The upstream's response, sent on: hop-by-hop headers out, metered to its
/// last byte.
fn deliver(
    plane: &Plane,
    res: Response<hyper::body::Incoming>,
    addr: SocketAddr,
    retried_out: bool,
    record: &mut Record<'_>,
) -> Response<Body> {
    let (mut parts, incoming) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if record.exporting {
        record
            .cx
            .span()
            .set_attribute(KeyValue::new("upstream_host", addr.to_string()));
    }
    let code = parts.status.as_u16();
    let flags = if retried_out { "URX" } else { "-" };
    record.finish(code, flags);
    let body = if plane.stats.enabled() {
        let e = record.exchange(code, flags, true);
        let stats = plane.stats.clone();
        Body::new(Metered::new(Body::new(incoming), stats, e, record.start))
    } else {
        Body::new(incoming)
    };
    Response::from_parts(parts, body)
}

/// The proxy's span, like an Envoy's: a child of the caller's context, the
/// parent of the upstream's server span.
fn proxy_span(
    l: &Listener,
    req: &Request<Body>,
    authority: &str,
    path: &str,
    parent: &opentelemetry::Context,
) -> opentelemetry::global::BoxedSpan {
    let attributes = vec![
        KeyValue::new("component", "proxy"),
        KeyValue::new("http.method", req.method().to_string()),
        KeyValue::new("http.url", format!("http://{authority}{path}")),
        KeyValue::new("downstream_cluster", l.hop.name().to_owned()),
    ];
    l.telemetry.start(
        format!("{authority}/*"),
        SpanKind::Client,
        attributes,
        req.headers(),
        parent,
    )
}
