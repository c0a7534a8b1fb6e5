//! Request counts and latency histograms per route and status, served on
//! `/metrics` by `prometheus-client` (OpenMetrics text) and labelled with the
//! app and its version, so that Prometheus and Kiali can tell v1 from v2 even
//! without the sidecar's metrics.

use std::{sync::Arc, time::Duration};

use axum::{extract::MatchedPath, http::Method};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One series: a request's route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    method: Text<Method>,
    route: Text<Route>,
    status: u16,
}

/// The route a request matched, kept as the router shares it (no copy per
/// request), or a name of the program's own.
#[derive(Clone, Debug)]
pub enum Route {
    Matched(MatchedPath),
    Named(&'static str),
}

impl Route {
    /// The route matched, or `unmatched`.
    pub fn of(matched: Option<MatchedPath>) -> Self {
        matched.map_or(Route::Named("unmatched"), Route::Matched)
    }
}

impl AsRef<str> for Route {
    fn as_ref(&self) -> &str {
        match self {
            Route::Matched(m) => m.as_str(),
            Route::Named(n) => n,
        }
    }
}

/// A label value that is some text, compared and hashed as that text.
#[derive(Clone, Debug)]
struct Text<T>(T);

impl<T: AsRef<str>> PartialEq for Text<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref() == other.0.as_ref()
    }
}

impl<T: AsRef<str>> Eq for Text<T> {}

impl<T: AsRef<str>> std::hash::Hash for Text<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_ref().hash(state);
    }
}

impl<T: AsRef<str>> EncodeLabelValue for Text<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.0.as_ref(), encoder)
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// One app's request metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    pub fn new(app: &str, version: &str) -> Self {
        let mut registry = Registry::with_labels(
            [
                ("app".into(), app.to_owned().into()),
                ("version".into(), version.to_owned().into()),
            ]
            .into_iter(),
        );
        let requests = Family::<Labels, Counter>::default();
        let latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "Requests served, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route and status",
            latency.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            latency,
        }
    }

    pub fn record(&self, method: Method, route: Route, status: u16, elapsed: Duration) {
        let labels = Labels {
            method: Text(method),
            route: Text(route),
            status,
        };
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_are_cumulative_per_series() {
        let m = Metrics::new("forecast", "v2");
        m.record(
            Method::GET,
            Route::Named("/forecast"),
            200,
            Duration::from_millis(3),
        );
        m.record(
            Method::GET,
            Route::Named("/forecast"),
            200,
            Duration::from_millis(30),
        );
        m.record(
            Method::GET,
            Route::Named("/forecast"),
            404,
            Duration::from_millis(1),
        );
        let text = m.render();
        let app = r#"app="forecast",version="v2""#;
        let ok = r#"method="GET",route="/forecast",status="200""#;
        assert!(
            text.contains(&format!("http_requests_total{{{app},{ok}}} 2")),
            "{text}"
        );
        let bucket =
            |le: &str| format!("http_request_duration_seconds_bucket{{{app},le=\"{le}\",{ok}}}");
        assert!(text.contains(&format!("{} 1\n", bucket("0.005"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("0.05"))), "{text}");
        assert!(text.contains(&format!("{} 2\n", bucket("+Inf"))), "{text}");
        assert!(text.contains(r#"route="/forecast",status="404"} 1"#));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new("a", "v1");
        m.record(Method::GET, Route::Named("/x\"y"), 200, Duration::ZERO);
        assert!(m.render().contains(r#"route="/x\"y""#), "{}", m.render());
    }
}
