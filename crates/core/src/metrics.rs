//! Request counts and latency histograms per route and status, served on `/metrics`
//! in the Prometheus text format and labelled with the app and its version, so that
//! Prometheus and Kiali can tell v1 from v2 even without the sidecar's metrics.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug)]
struct Series {
    method: String,
    route: String,
    status: u16,
    latency: Histogram,
}

/// A Prometheus histogram over fixed upper bounds: observations, their sum, and
/// a count per bucket (kept non-cumulative; written cumulative).
#[derive(Clone, Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One slot per bound, then +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes `NAME_bucket`, `NAME_sum` and `NAME_count` lines for one series
    /// whose labels (already escaped, comma separated) are `labels`.
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// One app's request metrics. Cheap to clone; the series stay few (routes x
/// statuses), so a scan beats hashing and allocates nothing per request.
#[derive(Clone, Debug)]
pub struct Metrics {
    labels: Arc<str>,
    series: Arc<Mutex<Vec<Series>>>,
}

impl Metrics {
    pub fn new(app: &str, version: &str) -> Self {
        Metrics {
            labels: format!("app=\"{app}\",version=\"{version}\"").into(),
            series: Arc::default(),
        }
    }

    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let i = match all
            .iter()
            .position(|s| s.status == status && s.route == route && s.method == method)
        {
            Some(i) => i,
            None => {
                all.push(Series {
                    method: method.to_owned(),
                    route: route.to_owned(),
                    status,
                    latency: Histogram::new(&BUCKETS),
                });
                all.len() - 1
            }
        };
        all[i].latency.observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(256 + all.len() * 1200);
        out.push_str("# HELP http_requests_total Requests served, by route and status.\n");
        out.push_str("# TYPE http_requests_total counter\n");
        for s in all.iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{{},{}}} {}",
                self.labels,
                series_labels(s),
                s.latency.count()
            );
        }
        out.push_str(
            "# HELP http_request_duration_seconds Time to answer a request, by route and status.\n",
        );
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for s in all.iter() {
            let labels = format!("{},{}", self.labels, series_labels(s));
            s.latency
                .write(&mut out, "http_request_duration_seconds", &labels);
        }
        out
    }
}

fn series_labels(s: &Series) -> String {
    format!(
        "method=\"{}\",route=\"{}\",status=\"{}\"",
        escape(&s.method),
        escape(&s.route),
        s.status
    )
}

/// A label value as the text format writes it: backslash, quote and newline
/// escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_are_cumulative_per_series() {
        let m = Metrics::new("forecast", "v2");
        m.record("GET", "/forecast", 200, Duration::from_millis(3));
        m.record("GET", "/forecast", 200, Duration::from_millis(30));
        m.record("GET", "/forecast", 404, Duration::from_millis(1));
        let text = m.render();
        let ok = r#"app="forecast",version="v2",method="GET",route="/forecast",status="200""#;
        assert!(
            text.contains(&format!("http_requests_total{{{ok}}} 2")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{ok},le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{ok},le=\"0.05\"}} 2"
        )));
        assert!(text.contains(&format!(
            "http_request_duration_seconds_bucket{{{ok},le=\"+Inf\"}} 2"
        )));
        assert!(text.contains(r#"route="/forecast",status="404"} 1"#));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new("a", "v1");
        m.record("GET", "/x\"y", 200, Duration::ZERO);
        assert!(m.render().contains(r#"route="/x\"y""#));
    }
}
