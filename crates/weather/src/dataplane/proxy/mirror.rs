//! A route's mirror, as Envoy's shadow does it with istiod's settings: a copy
//! of the request sent on the side to the mirror's cluster, with the same
//! Host (istiod sets `disable_shadow_host_suffix_append`) and its trace not
//! sampled (`trace_sampled: false`); nobody waits for it and its answer is
//! dropped. Envoy sends it from outside the calling proxy's filters, so only
//! its destination reports it in the metrics: the edge to the mirror is there,
//! and the caller's own figures are untouched.

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{HeaderMap, Method, Request, Uri},
};
use mesh::{authn::Mtls, policy::Mirror, security::Dest};
use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{SpanContext, TraceContextExt, TraceFlags},
};
use weather_core::telemetry::{HeaderInjector, propagator};

use super::{
    super::{plane::Applied, stats::Exchange},
    Listener,
    record::Record,
};

/// How long a copy may take when the route sets no timeout.
const UNBOUNDED: Duration = Duration::from_secs(60);

/// Sends a copy of the request (`method`, `headers`, no body) to an endpoint of `m`, in the
/// background.
pub(super) async fn send(
    l: &std::sync::Arc<Listener>,
    applied: &std::sync::Arc<Applied>,
    m: &Mirror,
    method: &Method,
    headers: &HeaderMap,
    record: &Record<'_>,
    timeout: Option<Duration>,
) {
    let t = &m.target;
    if t.problem.is_some() || t.endpoints.is_empty() {
        // No cluster or no pod: Envoy has nowhere to send it either.
        return;
    }
    let i = t.endpoints[l.plane.next() % t.endpoints.len()];
    let Some((addr, peer)) = applied.pod(i) else {
        return;
    };
    let Ok(uri) = Uri::try_from(record.path.as_str()) else {
        return;
    };
    let mut copy = Request::new(Body::empty());
    *copy.method_mut() = method.clone();
    *copy.uri_mut() = uri;
    *copy.headers_mut() = headers.clone();
    if record.exporting {
        // The same trace, not sampled: the mirror's spans are not kept.
        let sc = record.cx.span().span_context().clone();
        let unsampled = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            TraceFlags::default(),
            true,
            sc.trace_state().clone(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(unsampled);
        propagator().inject_context(&cx, &mut HeaderInjector(copy.headers_mut()));
    }
    // What the mirror's own proxy makes of it.
    let refused = if applied.mesh.security.is_open() {
        None
    } else {
        super::admit(l, applied, Dest::Workload(i), headers, record)
            .await
            .err()
    };
    let mtls = applied.mesh.security.mtls(Dest::Workload(i)).0 != Mtls::Disable;
    let service = t.service.and_then(|s| applied.service(s)).cloned();
    let (plane, source) = (l.plane.clone(), l.peer);
    tokio::spawn(async move {
        let start = Instant::now();
        let (code, response_bytes) = match refused {
            Some(r) => (r.status.as_u16(), r.detail.len() as u64 + 1),
            None => {
                let sent = plane.upstreams.send(addr, copy);
                match tokio::time::timeout(timeout.unwrap_or(UNBOUNDED), sent).await {
                    Ok(Ok(res)) => {
                        let code = res.status().as_u16();
                        let body = axum::body::to_bytes(Body::new(res.into_body()), usize::MAX);
                        (code, body.await.map_or(0, |b| b.len() as u64))
                    }
                    // Unanswered: nothing reached the mirror's proxy to report.
                    _ => {
                        tracing::debug!("mirror to {addr}: no answer");
                        return;
                    }
                }
            }
        };
        let Some(service) = service else { return };
        if plane.stats.enabled() {
            plane.stats.record(&Exchange {
                source,
                destination: Some(peer),
                service,
                code,
                flags: "-",
                reached: true,
                destination_only: true,
                mtls,
                duration: start.elapsed(),
                request_bytes: 0,
                response_bytes,
            });
        }
    });
}
