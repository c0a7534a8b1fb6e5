//! Istio's four metrics as its proxies write them: the series kept by cheap
//! keys (the peers' places, fixed for the plane's life) while requests are
//! recorded, and written with Istio's labels in its order by a
//! `prometheus-client` collector on each scrape.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder},
    metrics::{MetricType, counter::Counter, histogram::Histogram},
};

use super::{BUCKETS, Peer, ServiceRef, UNKNOWN, UNKNOWN_PEER};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Reporter {
    Source,
    Destination,
}

/// One series: every label but the counts, by the peers' places (fixed for
/// the plane's life), so that recording a request hashes a few words.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) reporter: Reporter,
    pub(super) source: usize,
    pub(super) destination: Option<usize>,
    pub(super) service: Arc<ServiceRef>,
    pub(super) code: u16,
    pub(super) flags: &'static str,
    pub(super) mtls: bool,
}

/// One series' counts, in `prometheus-client`'s metric types.
#[derive(Debug)]
pub(super) struct Series {
    pub(super) requests: Counter,
    pub(super) duration: Histogram,
    pub(super) request_bytes: Histogram,
    pub(super) response_bytes: Histogram,
}

impl Series {
    pub(super) fn new() -> Series {
        Series {
            requests: Counter::default(),
            duration: Histogram::new(BUCKETS),
            request_bytes: Histogram::new(BUCKETS),
            response_bytes: Histogram::new(BUCKETS),
        }
    }
}

/// What the exposition reads: the peers and the series.
#[derive(Debug)]
pub(super) struct Recorded {
    pub(super) peers: Vec<Arc<Peer>>,
    pub(super) series: Mutex<HashMap<Key, Series>>,
}

/// Istio's labels of a series, in the order its proxies write them.
struct Labels<'a> {
    key: &'a Key,
    pub(super) peers: &'a [Arc<Peer>],
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let peer = |i: Option<usize>| {
            let i = i.filter(|i| *i < self.peers.len()).unwrap_or(UNKNOWN_PEER);
            &self.peers[i]
        };
        let k = self.key;
        let (src, dst, svc) = (peer(Some(k.source)), peer(k.destination), &k.service);
        // As Istio's stats filter reports them: the destination's proxy
        // names the connection's security and both identities of its TLS
        // session; the source's proxy never names the security, and names the
        // identities of its upstream TLS session, if there is one.
        let (reporter, security) = match (k.reporter, k.mtls) {
            (Reporter::Source, _) => ("source", UNKNOWN),
            (Reporter::Destination, true) => ("destination", "mutual_tls"),
            (Reporter::Destination, false) => ("destination", "none"),
        };
        let (source_principal, destination_principal) = if k.mtls && k.destination.is_some() {
            (src.principal.as_str(), dst.principal.as_str())
        } else {
            (UNKNOWN, UNKNOWN)
        };
        let code = k.code.to_string();
        let pairs: [(&str, &str); 25] = [
            ("reporter", reporter),
            ("source_workload", &src.workload),
            ("source_canonical_service", &src.canonical_service),
            ("source_canonical_revision", &src.canonical_revision),
            ("source_workload_namespace", &src.namespace),
            ("source_principal", source_principal),
            ("source_app", &src.app),
            ("source_version", &src.version),
            ("source_cluster", "Kubernetes"),
            ("destination_workload", &dst.workload),
            ("destination_workload_namespace", &dst.namespace),
            ("destination_principal", destination_principal),
            ("destination_app", &dst.app),
            ("destination_version", &dst.version),
            ("destination_service", &svc.fqdn),
            ("destination_canonical_service", &dst.canonical_service),
            ("destination_canonical_revision", &dst.canonical_revision),
            ("destination_service_name", &svc.name),
            ("destination_service_namespace", &svc.namespace),
            ("destination_cluster", "Kubernetes"),
            ("request_protocol", "http"),
            ("response_code", &code),
            ("grpc_response_status", ""),
            ("response_flags", k.flags),
            ("connection_security_policy", security),
        ];
        pairs.encode(encoder)
    }
}

/// Istio's four metrics, written by `prometheus-client` from the series
/// recorded (sorted, so that two scrapes of the same counts are the same
/// text).
#[derive(Debug)]
pub(super) struct Istio(pub(super) Arc<Recorded>);

impl Collector for Istio {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.0.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<(&Key, &Series)> = series.iter().collect();
        rows.sort_by_key(|(k, _)| {
            (
                k.reporter,
                k.source,
                k.destination,
                k.service.fqdn.clone(),
                k.code,
                k.flags,
            )
        });
        let peers = &self.0.peers;
        type Of = fn(&Series) -> &dyn EncodeMetric;
        let metrics: [(&str, &str, MetricType, Of); 4] = [
            (
                "istio_requests",
                "Requests, per hop",
                MetricType::Counter,
                |s| &s.requests,
            ),
            (
                "istio_request_bytes",
                "Request sizes, per hop",
                MetricType::Histogram,
                |s| &s.request_bytes,
            ),
            (
                "istio_request_duration_milliseconds",
                "Request durations, per hop",
                MetricType::Histogram,
                |s| &s.duration,
            ),
            (
                "istio_response_bytes",
                "Response sizes, per hop",
                MetricType::Histogram,
                |s| &s.response_bytes,
            ),
        ];
        for (name, help, kind, of) in metrics {
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (key, s) in &rows {
                let labels = Labels { key, peers };
                of(s).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
