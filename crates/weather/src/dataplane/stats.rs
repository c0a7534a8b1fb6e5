//! Istio's standard metrics, recorded per hop as Istio's proxies record them
//! (docs/architecture.md, "Telemetry"): `istio_requests_total`,
//! `istio_request_duration_milliseconds`, `istio_request_bytes` and
//! `istio_response_bytes`, with Istio's labels in its proxies' order, kept
//! and written by `prometheus-client` and served on the admin listener at
//! `GET /stats/prometheus` (OpenMetrics text, which Prometheus reads as it
//! reads Envoy's).
//!
//! On a cluster a call from frontend to forecast is seen twice: by frontend's
//! sidecar (`reporter="source"`) and by forecast's (`reporter="destination"`).
//! Locally one hop stands for both, so it records both: the source report for
//! every request, the destination report only for a request that reached the
//! destination's workload (a 404 `NR` or 503 `UH` never leaves the caller's
//! proxy, so the destination never sees it). The ingress reports as `source`
//! only, as Istio's gateway does.
//!
//! Beside the counters, a short window of recent exchanges feeds the admin page's
//! graph (requests per second, error share, p99 per edge) and version matrix.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mesh::{
    routing::{ServiceInfo, Workload},
    security::IngressPods,
};
use prometheus_client::registry::Registry;

mod istio;

use istio::{Istio, Key, Recorded, Reporter, Series};

/// The content type of [`Stats::render`]'s text.
pub const CONTENT_TYPE: &str = weather_core::metrics::CONTENT_TYPE;

/// Envoy's default histogram bounds, which Istio keeps for its standard
/// histograms unless a pod's `sidecar.istio.io/statsHistogramBuckets` says
/// otherwise (read from Envoy 1.40's own `/stats/prometheus`).
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// How far back the page's rates and percentiles look.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The most exchanges the window keeps; past it, rates are over the span kept.
const WINDOW_CAP: usize = 32_768;
/// How many of the ingress's latest requests the version matrix counts.
const MATRIX_CAP: usize = 200;

/// A workload as Istio's metrics name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub workload: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    pub canonical_service: String,
    pub canonical_revision: String,
    /// Its mTLS identity, `spiffe://cluster.local/ns/NS/sa/SA`.
    pub principal: String,
}

impl Peer {
    /// The ingress gateway, as its pods' labels name it.
    pub fn ingress(pods: &IngressPods) -> Peer {
        Peer {
            workload: pods.workload.clone(),
            namespace: mesh::terms::INGRESS_NAMESPACE.into(),
            app: pods.app.as_deref().unwrap_or(UNKNOWN).into(),
            version: UNKNOWN.into(),
            canonical_service: pods.workload.clone(),
            canonical_revision: "latest".into(),
            principal: format!("spiffe://{}", pods.principal()),
        }
    }

    /// What Istio reports for a peer it cannot name.
    fn unknown() -> Peer {
        Peer {
            workload: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
            app: UNKNOWN.into(),
            version: UNKNOWN.into(),
            canonical_service: UNKNOWN.into(),
            canonical_revision: UNKNOWN.into(),
            principal: UNKNOWN.into(),
        }
    }

    /// A Deployment's pod: `app` and `version` from its labels ("unknown" when
    /// absent); the canonical service and revision as istiod derives them.
    pub fn of(w: &Workload) -> Peer {
        let label = |keys: &[&str]| keys.iter().find_map(|k| w.labels.get(*k).cloned());
        Peer {
            workload: w.name.clone(),
            namespace: w.namespace.clone(),
            app: label(&["app"]).unwrap_or_else(|| UNKNOWN.into()),
            version: label(&["version"]).unwrap_or_else(|| UNKNOWN.into()),
            canonical_service: label(&[
                "service.istio.io/canonical-name",
                "app.kubernetes.io/name",
                "app",
            ])
            .unwrap_or_else(|| w.name.clone()),
            canonical_revision: label(&[
                "service.istio.io/canonical-revision",
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".into()),
            principal: format!("spiffe://{}", mesh::security::workload_principal(w)),
        }
    }

    /// The node of the versioned app graph: `frontend v2`; a workload
    /// with no `app` label (a Gateway API gateway's pods) by its name, as
    /// Kiali shows it.
    pub fn node(&self) -> String {
        if self.app == UNKNOWN {
            self.workload.clone()
        } else if self.version == UNKNOWN {
            self.app.clone()
        } else {
            format!("{} {}", self.app, self.version)
        }
    }
}

const UNKNOWN: &str = "unknown";

/// The Service a request was sent to.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ServiceRef {
    pub fqdn: String,
    pub name: String,
    pub namespace: String,
}

impl ServiceRef {
    pub fn of(s: &ServiceInfo) -> ServiceRef {
        ServiceRef {
            fqdn: s.fqdn.clone(),
            name: s.name.clone(),
            namespace: s.namespace.clone(),
        }
    }

    /// No Service was chosen (no route, no such host): the request's host.
    pub fn unresolved(authority: &str) -> ServiceRef {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        ServiceRef {
            fqdn: host.to_owned(),
            name: host.to_owned(),
            namespace: UNKNOWN.into(),
        }
    }
}

/// What one hop saw of one request, reported when its response is over.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The calling proxy, an index of [`Stats::peers`].
    pub source: usize,
    /// The workload the request was sent to, when one was chosen.
    pub destination: Option<usize>,
    pub service: Arc<ServiceRef>,
    pub code: u16,
    pub flags: &'static str,
    /// Whether the destination's workload answered (its proxy saw it).
    pub reached: bool,
    /// Seen by the destination's proxy alone: a mirrored copy (Envoy sends
    /// it past the calling proxy's own filters), or an attempt that was
    /// retried (the caller reports the request once, the destination each
    /// attempt).
    pub destination_only: bool,
    /// Whether the connection to the destination was mutual TLS (Istio's
    /// auto mTLS: unless the destination's mode is DISABLE).
    pub mtls: bool,
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// A recent exchange, for the page: 32 bytes, so the window stays at 1 MiB.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    source: u32,
    /// `NONE` when the source's proxy answered itself.
    destination: u32,
    ms: f32,
    code: u16,
    /// Its response flags, an index of [`FLAGS`] ([`OTHER_FLAGS`] for the rest).
    flags: u8,
}

const NONE: u32 = u32::MAX;

/// The response flags the hops write, for the window's samples (one byte
/// each): what the page shows on an edge.
const FLAGS: [&str; 22] = [
    "-", "DI", "FI", "DI,FI", "UT", "DI,UT", "UO", "UH", "NR", "NC", "UF", "UC", "URX", "URX,UF",
    "URX,UC", "DI,URX", "UPE", "DC", "DI,DC", "DPE", "SI", "UAEX",
];
const OTHER_FLAGS: u8 = u8::MAX;

fn flags_index(flags: &str) -> u8 {
    FLAGS
        .iter()
        .position(|f| *f == flags)
        .map_or(OTHER_FLAGS, |i| i as u8)
}

/// Who called through the ingress and which chain answered.
#[derive(Clone, Debug)]
struct Visit {
    tester: bool,
    chain: String,
    /// The trace the request made, when the ingress exports its spans.
    trace: Option<String>,
}

/// One of the ingress's latest requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    pub tester: bool,
    pub chain: String,
    pub trace: Option<String>,
}

/// The metrics of a data plane: one for its life, whatever stage is applied.
#[derive(Debug)]
pub struct Stats {
    /// The peers (the ingress, a workload not known, then every Deployment,
    /// fixed at start) and the series recorded.
    recorded: Arc<Recorded>,
    /// Istio's metrics, read from `recorded` on each scrape.
    registry: Registry,
    by_name: HashMap<String, usize>,
    window: Mutex<VecDeque<Sample>>,
    visits: Mutex<VecDeque<Visit>>,
    /// Off: nothing is recorded (for the benchmark's with/without figure).
    enabled: bool,
}

/// The ingress's index in [`Stats::peers`].
pub const INGRESS_PEER: usize = 0;
/// A workload the manifests do not name.
pub const UNKNOWN_PEER: usize = 1;
const FIRST_WORKLOAD: usize = 2;

impl Stats {
    pub fn new(ingress: &IngressPods, workloads: &[Workload], enabled: bool) -> Stats {
        let mut peers = vec![Arc::new(Peer::ingress(ingress)), Arc::new(Peer::unknown())];
        peers.extend(workloads.iter().map(|w| Arc::new(Peer::of(w))));
        let by_name = workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.clone(), i + FIRST_WORKLOAD))
            .collect();
        let recorded = Arc::new(Recorded {
            peers,
            series: Mutex::default(),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Istio(recorded.clone())));
        Stats {
            recorded,
            registry,
            by_name,
            window: Mutex::default(),
            visits: Mutex::default(),
            enabled,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.recorded.peers
    }

    /// The index of the Deployment named `workload`.
    pub fn peer(&self, workload: &str) -> Option<usize> {
        self.by_name.get(workload).copied()
    }

    /// The peer at `index`, or the unknown one.
    pub fn peer_at(&self, index: usize) -> &Arc<Peer> {
        let peers = self.peers();
        peers.get(index).unwrap_or(&peers[UNKNOWN_PEER])
    }

    /// Records one exchange: the source report always, the destination report
    /// when the destination's workload answered.
    pub fn record(&self, e: &Exchange) {
        if !self.enabled {
            return;
        }
        let ms = e.duration.as_secs_f64() * 1e3;
        let mut key = Key {
            reporter: Reporter::Source,
            source: e.source,
            destination: e.destination,
            service: e.service.clone(),
            code: e.code,
            flags: e.flags,
            mtls: e.mtls,
        };
        {
            let mut series = self
                .recorded
                .series
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut observe = |key: Key| {
                let s = series.entry(key).or_insert_with(Series::new);
                s.requests.inc();
                s.duration.observe(ms);
                s.request_bytes.observe(e.request_bytes as f64);
                s.response_bytes.observe(e.response_bytes as f64);
            };
            if e.reached && e.destination.is_some() {
                let mut dest = key.clone();
                dest.reporter = Reporter::Destination;
                dest.flags = "-";
                observe(dest);
            }
            if !e.destination_only {
                key.reporter = Reporter::Source;
                observe(key);
            }
        }
        let now = Instant::now();
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut window, now);
        if window.len() == WINDOW_CAP {
            window.pop_front();
        }
        let index = |i: usize| u32::try_from(i).unwrap_or(NONE);
        window.push_back(Sample {
            at: now,
            source: index(e.source),
            destination: e.destination.map_or(NONE, index),
            code: e.code,
            ms: ms as f32,
            flags: flags_index(e.flags),
        });
    }

    /// Records which chain answered a request at the ingress, whether its
    /// cookie said `user=tester`, and the trace it made, if it was exported.
    pub fn visit(&self, tester: bool, chain: &str, trace: Option<String>) {
        if !self.enabled {
            return;
        }
        let mut visits = self.visits.lock().unwrap_or_else(|p| p.into_inner());
        if visits.len() == MATRIX_CAP {
            visits.pop_front();
        }
        visits.push_back(Visit {
            tester,
            chain: chain.to_owned(),
            trace,
        });
    }

    /// The ingress's latest `n` requests, the latest first.
    pub fn latest(&self, n: usize) -> Vec<Latest> {
        let visits = self.visits.lock().unwrap_or_else(|p| p.into_inner());
        visits
            .iter()
            .rev()
            .take(n)
            .map(|v| Latest {
                tester: v.tester,
                chain: v.chain.clone(),
                trace: v.trace.clone(),
            })
            .collect()
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The graph's edges over the last [`WINDOW`], by source and destination
    /// node, and the rate they were measured over.
    pub fn edges(&self) -> Vec<Edge> {
        let now = Instant::now();
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut window, now);
        let span = if window.len() == WINDOW_CAP {
            window
                .front()
                .map_or(WINDOW, |s| now.duration_since(s.at))
                .max(Duration::from_millis(1))
        } else {
            WINDOW
        };
        /// Requests, 5xx answers and durations of one edge.
        #[derive(Default)]
        struct Tally {
            n: u64,
            errors: u64,
            ms: Vec<f64>,
            /// Requests by response flags, `-` left out.
            flags: BTreeMap<u8, u64>,
        }
        let mut by: BTreeMap<(usize, Option<usize>), Tally> = BTreeMap::new();
        for s in window.iter() {
            let destination = (s.destination != NONE).then_some(s.destination as usize);
            let t = by.entry((s.source as usize, destination)).or_default();
            t.n += 1;
            if s.code >= 500 {
                t.errors += 1;
            }
            t.ms.push(f64::from(s.ms));
            if s.flags != 0 {
                *t.flags.entry(s.flags).or_default() += 1;
            }
        }
        drop(window);
        by.into_iter()
            .map(|((source, destination), t)| {
                let Tally {
                    n,
                    errors,
                    mut ms,
                    flags,
                } = t;
                ms.sort_by(f64::total_cmp);
                let p99 = ms[((ms.len() as f64 * 0.99).ceil() as usize).clamp(1, ms.len()) - 1];
                let mut flags: Vec<(&'static str, u64)> = flags
                    .into_iter()
                    .map(|(i, n)| (FLAGS.get(usize::from(i)).copied().unwrap_or("other"), n))
                    .collect();
                flags.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                Edge {
                    source,
                    destination,
                    requests: n,
                    rps: n as f64 / span.as_secs_f64(),
                    error_share: errors as f64 / n as f64,
                    p99_ms: p99,
                    flags,
                }
            })
            .collect()
    }

    /// The version matrix of the ingress's latest requests: for testers and
    /// for everyone else, how many reached each chain.
    pub fn matrix(&self) -> Matrix {
        let visits = self.visits.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = Matrix::default();
        for v in visits.iter() {
            let row = if v.tester {
                &mut m.tester
            } else {
                &mut m.anonymous
            };
            *row.entry(v.chain.clone()).or_default() += 1;
        }
        m
    }
}

fn prune(window: &mut VecDeque<Sample>, now: Instant) {
    while window
        .front()
        .is_some_and(|s| now.duration_since(s.at) > WINDOW)
    {
        window.pop_front();
    }
}

/// Traffic from one node to another over the window.
#[derive(Clone, Debug)]
pub struct Edge {
    pub source: usize,
    /// `None`: answered by the source's proxy itself (no route, no endpoint).
    pub destination: Option<usize>,
    pub requests: u64,
    pub rps: f64,
    /// The share of 5xx answers.
    pub error_share: f64,
    pub p99_ms: f64,
    /// Requests by Envoy's response flags, most first (`-` left out): what
    /// a fault, a timeout or a circuit breaker did on this edge.
    pub flags: Vec<(&'static str, u64)>,
}

/// Chains reached by the ingress's latest requests, counted per caller kind.
#[derive(Clone, Debug, Default)]
pub struct Matrix {
    pub tester: BTreeMap<String, u64>,
    pub anonymous: BTreeMap<String, u64>,
}

/// Whether a `Cookie` header holds `user=tester` (browsers join cookies with
/// "; ").
pub fn is_tester<'a>(cookies: impl IntoIterator<Item = &'a [u8]>) -> bool {
    cookies.into_iter().any(|h| {
        h.split(|b| *b == b';')
            .any(|pair| mesh::terms::trim_ows_bytes(pair) == b"user=tester")
    })
}

#[cfg(test)]
mod tests;
