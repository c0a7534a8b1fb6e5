//! One proxy hop, as Envoy takes it for the ingress gateway or a sidecar: route
//! the request with the applied mesh, pick a destination by weight and an
//! endpoint round-robin, forward it over a pooled keep-alive connection with its
//! body streamed both ways, and answer as Envoy does when it cannot (404 `NR`,
//! 503 `NC`/`UH`/`UF`, 504 `UT`, with the flag in `x-weather-response-flags`).
//!
//! [`router`] makes a hop a `Router`, so `weather up` serves it on a listener and
//! tests call it in-process.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header},
};
use mesh::{
    Routed,
    model::Labels,
    routing::{Caller, Target},
};
use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{SpanKind, Status, TraceContextExt},
};
use weather_core::telemetry::{HeaderExtractor, HeaderInjector, Telemetry, propagator};

use super::{
    headers::{Headers, at_the_edge, strip_hop_by_hop, to_upstream},
    metered::Metered,
    plane::{Applied, Plane},
    stats::{Exchange, INGRESS_PEER, ServiceRef, UNKNOWN_PEER, is_tester},
};

/// Which proxy a listener stands for.
#[derive(Clone, Debug)]
pub enum Hop {
    /// Istio's ingress gateway: routes bound to the Gateway apply, and the
    /// request's own Host is its authority.
    Ingress,
    /// A workload's sidecar: routes bound to `mesh` apply, matched against the
    /// workload's pod labels; the app's outbound URL names the authority.
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
}

/// A hop of `plane` as a router: every path, every method.
pub fn router(plane: Arc<Plane>, hop: Hop, telemetry: Telemetry) -> Router {
    let peer = match &hop {
        Hop::Ingress => INGRESS_PEER,
        Hop::Sidecar { workload, .. } => plane.stats.peer(workload).unwrap_or(UNKNOWN_PEER),
    };
    let listener = Listener {
        plane,
        hop,
        peer,
        telemetry,
    };
    Router::new().fallback(proxy).with_state(Arc::new(listener))
}

/// Why the hop answers itself instead of the upstream.
struct Refusal {
    status: StatusCode,
    flag: &'static str,
    detail: String,
}

impl Refusal {
    fn new(status: StatusCode, flag: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            flag,
            detail: detail.into(),
        }
    }

    /// The plain-text answer Envoy gives.
    fn into_response(self) -> Response<Body> {
        let mut res = Response::new(Body::from(format!("{}\n", self.detail)));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        res.headers_mut().insert(
            "x-weather-response-flags",
            HeaderValue::from_static(self.flag),
        );
        res
    }
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
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let authority = match &l.hop {
        Hop::Sidecar { authority, .. } => authority.clone(),
        Hop::Ingress => req
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

    let target = match decide(&applied, &l.hop, &req, &mut record) {
        Ok(t) => t,
        Err(r) => return record.refuse(r),
    };
    let endpoints: Vec<(SocketAddr, usize)> = target
        .endpoints
        .iter()
        .filter_map(|&i| applied.pod(i))
        .collect();
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
    let res = forward(&l.plane, &endpoints, req, &mut record).await;
    if matrix && let Some(chain) = res.headers().get(weather_core::chain::CHAIN_HEADER) {
        l.plane
            .stats
            .visit(tester, &String::from_utf8_lossy(chain.as_bytes()));
    }
    res
}

/// Routes the request and picks its destination. Fills the record's rule and
/// destination names when they are logged or traced.
fn decide<'a>(
    applied: &'a Applied,
    hop: &Hop,
    req: &Request<Body>,
    record: &mut Record<'_>,
) -> Result<&'a Target, Refusal> {
    let authority = record.authority.as_str();
    let caller = match hop {
        Hop::Ingress => Caller::Ingress,
        Hop::Sidecar {
            namespace, labels, ..
        } => Caller::Workload { namespace, labels },
    };
    let headers = Headers(req.headers());
    let mreq = mesh::Request {
        authority,
        path: &record.path,
        method: req.method().as_str(),
        scheme: "http",
        headers: &headers,
    };
    let (rule, targets) = match applied.mesh.route(caller, &mreq) {
        Routed::NoRoute(why) => {
            let detail = format!("no route: {why:?}");
            return Err(Refusal::new(StatusCode::NOT_FOUND, "NR", detail));
        }
        Routed::Route { rule, targets } => (rule, targets),
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
    Ok(target)
}

/// Sends the request to an endpoint, round-robin. A request without a body whose
/// connection is refused goes to the next endpoint once (nothing reached the
/// upstream); a body can be sent once, so a request with one is never retried.
async fn forward(
    plane: &Plane,
    endpoints: &[(SocketAddr, usize)],
    req: Request<Body>,
    record: &mut Record<'_>,
) -> Response<Body> {
    let bodiless = !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING);
    let attempts = if bodiless { 2 } else { 1 };
    let first = plane.next() % endpoints.len();
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    for attempt in 0..attempts {
        let (addr, peer) = endpoints[(first + attempt) % endpoints.len()];
        record.destination = Some(peer);
        let Ok(uri) = Uri::try_from(format!("http://{addr}{}", record.path)) else {
            return record.refuse(Refusal::new(
                StatusCode::BAD_REQUEST,
                "-",
                "bad request path",
            ));
        };
        let mut up = Request::from_parts(parts.clone(), body.take().unwrap_or_else(Body::empty));
        *up.uri_mut() = uri;
        let sent = tokio::time::timeout(plane.settings.upstream_timeout, plane.client.request(up));
        match sent.await {
            Ok(Ok(res)) => {
                let (mut parts, incoming) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                if record.exporting {
                    record
                        .cx
                        .span()
                        .set_attribute(KeyValue::new("upstream_host", addr.to_string()));
                }
                let code = parts.status.as_u16();
                record.finish(code, "-");
                let body = if plane.stats.enabled() {
                    let e = record.exchange(code, "-", true);
                    let stats = plane.stats.clone();
                    Body::new(Metered::new(Body::new(incoming), stats, e, record.start))
                } else {
                    Body::new(incoming)
                };
                return Response::from_parts(parts, body);
            }
            Ok(Err(e)) if e.is_connect() && attempt + 1 < attempts => {
                tracing::debug!("connect to {addr} failed, retrying: {e}");
            }
            Ok(Err(e)) => {
                let detail = format!("upstream connect error: {e}");
                return record.refuse(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "UF", detail));
            }
            Err(_) => {
                return record.refuse(Refusal::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "UT",
                    "upstream request timeout",
                ));
            }
        }
    }
    record.refuse(Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "UF",
        "upstream connect error",
    ))
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
