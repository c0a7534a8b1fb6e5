//! Sending a routed request on: to an endpoint round-robin, within the
//! route's timeout and retries, each failure named as Envoy names it, and
//! the answer delivered back metered to its last byte.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    http::{HeaderValue, Request, Response, StatusCode, Uri, header},
};
use http_body::Body as _;
use mesh::policy::Policy;
use opentelemetry::{KeyValue, trace::TraceContextExt};

use super::super::upstream::SendError;

use super::super::{
    circuit::{Circuit, Holding, Outcome, Permit},
    downstream::{ClientFault, Outgoing},
    headers::{apply, strip_hop_by_hop},
    metered::Metered,
    plane::Plane,
    refusal::{FLAGS_HEADER, Refusal},
};

use super::{Endpoint, record::Record};

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

/// The route's fault, as the fault filter applies it before the router: a
/// delay (the record notes it), then an abort, answered at once without
/// sending the request on (docs/architecture.md). `Err` is the abort's answer.
pub(super) async fn fault(policy: &Policy, record: &Record<'_>) -> Result<(), Response<Body>> {
    let Some(fault) = &policy.fault else {
        return Ok(());
    };
    let hits = |per_million: u32| fastrand::u32(0..mesh::fault::MILLION) < per_million;
    let mut delayed = false;
    if let Some(d) = &fault.delay
        && hits(d.per_million)
    {
        record
            .delayed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(d.fixed).await;
        delayed = true;
    }
    if let Some(a) = &fault.abort
        && hits(a.per_million)
    {
        let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let flags = if delayed { "DI,FI" } else { "FI" };
        return Err(record.refuse(Refusal::new(status, flags, "fault filter abort")));
    }
    Ok(())
}

/// Where a routed request goes: the destination's pods (ejected ones left
/// out), its cluster's circuit (when its DestinationRule sets one) and size,
/// and the header operations of its route and itself.
pub(super) struct Destination<'a> {
    pub(super) endpoints: &'a [Endpoint],
    pub(super) circuit: Option<&'a Arc<Circuit>>,
    pub(super) hosts: usize,
    pub(super) headers: &'a mesh::headers::Headers,
}

/// Sends the request to an endpoint, round-robin, within the route's policy:
/// its timeout over all attempts, and its retries, each on the next endpoint
/// (Envoy's `previous_hosts`). A retry re-sends a body only if no attempt
/// began to read it.
///
/// With a `circuit` (the cluster's DestinationRule sets a pool or outlier
/// detection), each attempt takes a place in it first (503 `UO` when full),
/// each outcome is counted against its host, and a retry needs a place
/// among `maxRetries`; `hosts` is the cluster's size, ejected hosts included.
pub(super) async fn forward(
    plane: &Plane,
    to: Destination<'_>,
    policy: &Policy,
    req: Request<Body>,
    record: &mut Record<'_>,
) -> Response<Body> {
    let Destination {
        endpoints,
        circuit,
        hosts,
        headers,
    } = to;
    let delayed = record.delayed.load(std::sync::atomic::Ordering::Relaxed);
    // (The framing headers are gone by now: hop-by-hop. The body knows.)
    let bodiless = req.body().is_end_stream();
    let timeout = policy.timeout.or(plane.settings.default_timeout);
    // The route's timeout starts in the router, after any injected delay.
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let first = plane.next() % endpoints.len();
    let (mut parts, body) = req.into_parts();
    // The route's header operations, as the router applies them to what it
    // forwards.
    apply(&headers.request, &mut parts.headers);
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
    // The retry in flight, counted against `maxRetries`.
    let mut _retrying = None;
    loop {
        let endpoint = &endpoints[(first + attempt as usize) % endpoints.len()];
        let (addr, peer) = (endpoint.addr, endpoint.peer);
        record.destination = Some(peer);
        record.mtls = endpoint.mtls;
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
        // A place in the circuit, waited for within the timeout.
        let admitted = async {
            match circuit {
                Some(c) => c.admit().await.map(Some),
                None => Ok(None),
            }
        };
        let admitted = match limit {
            Some(at) => tokio::time::timeout_at(at, admitted).await,
            None => Ok(admitted.await),
        };
        let permit: Option<Permit> = match admitted {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return record.refuse(Refusal::overflow()),
            Err(_) => {
                return record.refuse(Refusal::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "UT",
                    "upstream request timeout",
                ));
            }
        };
        let sent = plane.upstreams.send(addr, up);
        let outcome = match limit {
            Some(at) => tokio::time::timeout_at(at, sent).await.ok(),
            None => Some(sent.await),
        };
        if let Some(c) = circuit {
            let o = match &outcome {
                Some(Ok(res)) => Outcome::Status(res.status().as_u16()),
                _ => Outcome::Failed,
            };
            c.report(addr, o, hosts);
        }
        // An answer to retry: a retriable status, attempts left, the body
        // unsent, and (with circuit breakers) a place among `maxRetries`;
        // else the answer is delivered as it is.
        let mut slot = None;
        let retry_answer = matches!(&outcome, Some(Ok(res))
            if attempt < policy.retries.attempts
                && policy.retries.on.status(res.status().as_u16())
                && outgoing.as_ref().is_none_or(Outgoing::unsent))
            && match circuit {
                Some(c) => {
                    slot = c.retry();
                    slot.is_some()
                }
                None => true,
            };
        let failure = match outcome {
            Some(Ok(res)) if retry_answer => {
                tracing::debug!("{addr} answered {}, retrying", res.status());
                record.retried(res.status().as_u16());
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
                let mut res = deliver(plane, res, addr, retried_out, delayed, record, permit);
                apply(&headers.response, res.headers_mut());
                // Answered before the client's body was all read: the
                // connection closes after the answer, and says so, as
                // Envoy's connection manager does on HTTP/1 (the client
                // would otherwise send its next request on a connection
                // about to close).
                if outgoing.as_ref().is_some_and(|o| !o.ended()) {
                    res.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                return res;
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
        drop(permit);
        let can_resend = outgoing.as_ref().is_none_or(Outgoing::unsent);
        let mut retry = attempt < policy.retries.attempts
            && can_resend
            && failure.as_ref().is_none_or(|f| f.retriable(policy));
        if retry && let Some(c) = circuit {
            // `maxRetries` retries in flight at most: past it, no retry.
            _retrying = slot.or_else(|| c.retry());
            retry = _retrying.is_some();
        }
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
    delayed: bool,
    record: &mut Record<'_>,
    permit: Option<Permit>,
) -> Response<Body> {
    let (mut parts, incoming) = res.into_parts();
    // The connection is the circuit's until the body's last byte.
    let incoming = Holding::new(incoming, permit);
    strip_hop_by_hop(&mut parts.headers);
    if record.exporting {
        record
            .cx
            .span()
            .set_attribute(KeyValue::new("upstream_host", addr.to_string()));
    }
    let flags = match (retried_out, delayed) {
        (false, false) => "-",
        (false, true) => "DI",
        (true, false) => "URX",
        (true, true) => "DI,URX",
    };
    if flags != "-" {
        // As on the hop's own answers: what it flagged, for the curious.
        parts
            .headers
            .insert(FLAGS_HEADER, HeaderValue::from_static(flags));
    }
    let code = parts.status.as_u16();

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
