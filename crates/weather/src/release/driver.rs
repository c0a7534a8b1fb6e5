//! One run's hands: it applies a step's routing through `weather up`'s admin
//! listener (or `kubectl`), waits an interval, reads the metrics and judges
//! them, calls the webhooks, and sends load when asked.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mesh::Manifests;
use serde_json::json;

use super::{
    metrics::{self, Scrape},
    options::{Error, Options, Target},
    plan::{self, Phase},
    report::Check,
    spec::{self, Train, WebhookType},
};

/// How long requests routed before an apply are given to end before a
/// verification counts what the new routing does.
const SETTLE: Duration = Duration::from_secs(1);

pub(super) struct Driver<'a> {
    pub(super) opts: &'a Options,
    pub(super) train: &'a Train,
    pub(super) manifests: &'a Manifests,
    pub(super) http: reqwest::Client,
    pub(super) stop: Arc<AtomicBool>,
}

impl Driver<'_> {
    pub(super) fn say(&self, line: &str) {
        if self.opts.progress {
            println!("{line}");
        }
    }

    pub(super) async fn apply(&self, phase: Phase) -> Result<(), Error> {
        let yaml = plan::yaml(self.train, self.manifests, phase);
        match &self.opts.target {
            Target::Admin(admin) => {
                let label = format!("release {}: {phase}", self.train.name());
                let url = format!(
                    "{}/apply?label={}",
                    admin.trim_end_matches('/'),
                    form_urlencoded::byte_serialize(label.as_bytes()).collect::<String>()
                );
                let res = self
                    .http
                    .post(url)
                    .header("content-type", "application/yaml")
                    .body(yaml)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::Apply(format!(
                            "cannot reach weather up's admin listener at {admin}: {e}"
                        ))
                    })?;
                if !res.status().is_success() {
                    let body: serde_json::Value = res.json().await.unwrap_or_default();
                    return Err(Error::Apply(format!(
                        "{phase} was refused: {}",
                        body["error"].as_str().unwrap_or("no reason given")
                    )));
                }
                Ok(())
            }
            Target::Kubectl { context } => {
                use tokio::io::AsyncWriteExt;
                let mut cmd = tokio::process::Command::new("kubectl");
                if let Some(c) = context {
                    cmd.args(["--context", c]);
                }
                cmd.args(["--namespace", self.train.namespace()]);
                let mut child = cmd
                    .args(["apply", "-f", "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| Error::Apply(format!("cannot run kubectl: {e}")))?;
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(yaml.as_bytes()).await;
                }
                let out = child
                    .wait_with_output()
                    .await
                    .map_err(|e| Error::Apply(format!("kubectl: {e}")))?;
                if !out.status.success() {
                    return Err(Error::Apply(format!(
                        "kubectl apply failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                Ok(())
            }
        }
    }

    pub(super) async fn scrape(&self) -> Result<Scrape, Error> {
        let Target::Admin(admin) = &self.opts.target else {
            return Ok(Scrape::default());
        };
        let url = format!("{}/stats/prometheus", admin.trim_end_matches('/'));
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::Metrics(format!("cannot read {url}: {e}")))?
            .text()
            .await
            .map_err(|e| Error::Metrics(format!("cannot read {url}: {e}")))?;
        Ok(Scrape::parse(&text))
    }

    /// Waits one interval, or less when interrupted; on a terminal, with a
    /// progress bar.
    pub(super) async fn wait(&self, d: Duration) {
        use std::io::{IsTerminal, Write};
        let bar = self.opts.progress && std::io::stdout().is_terminal();
        let start = Instant::now();
        let end = start + d;
        while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            if bar {
                let done = start.elapsed().as_secs_f64() / d.as_secs_f64();
                let filled = (done * 30.0).round() as usize;
                print!(
                    "\r  [{}{}] {:.0}s of {:.0}s",
                    "#".repeat(filled.min(30)),
                    ".".repeat(30 - filled.min(30)),
                    start.elapsed().as_secs_f64(),
                    d.as_secs_f64()
                );
                let _ = std::io::stdout().flush();
            }
            tokio::time::sleep(Duration::from_millis(200).min(end - Instant::now())).await;
        }
        if bar {
            print!("\r{}\r", " ".repeat(50));
            let _ = std::io::stdout().flush();
        }
    }

    /// One instant query of the Prometheus: the value of each series.
    pub(super) async fn promql(&self, query: &str) -> Result<Vec<f64>, Error> {
        let base = self.opts.prometheus.as_deref().unwrap_or_default();
        let url = format!(
            "{}/api/v1/query?query={}",
            base.trim_end_matches('/'),
            form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
        );
        let v: serde_json::Value = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::Metrics(format!("cannot query {base}: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Metrics(format!("{base}: not a Prometheus answer: {e}")))?;
        if v["status"] != "success" {
            return Err(Error::Metrics(format!(
                "{base} refused {query}: {}",
                v["error"]
            )));
        }
        Ok(v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The checks of one analysed interval: every metric for every service of
    /// the train on the new lane, and the crossings between them.
    pub(super) async fn judge(&self, before: &Scrape, after: &Scrape) -> Result<Vec<Check>, Error> {
        let ns = self.train.namespace();
        let window = format!("{}s", self.train.interval.as_secs().max(1));
        let mut checks = Vec::new();
        for s in self.train.services() {
            let workload = spec::deployment(self.manifests, ns, &s.name, &s.to)
                .unwrap_or(&s.name)
                .to_owned();
            for m in &self.train.analysis().metrics {
                let range = m.threshold_range.clone().unwrap_or(spec::ThresholdRange {
                    min: None,
                    max: None,
                });
                let interval = m.interval.clone().unwrap_or_else(|| window.clone());
                let value = match (&self.opts.prometheus, m.name.as_str(), &m.query) {
                    (_, _, Some(q)) => {
                        let q = q
                            .replace("{{ namespace }}", ns)
                            .replace("{{ target }}", &workload)
                            .replace("{{ interval }}", &interval);
                        self.promql(&q).await?.first().copied()
                    }
                    (Some(_), "request-success-rate", None) => {
                        let q = format!(
                            r#"sum(rate(istio_requests_total{{reporter="destination",destination_workload_namespace="{ns}",destination_workload=~"{workload}",response_code!~"5.*"}}[{interval}])) / sum(rate(istio_requests_total{{reporter="destination",destination_workload_namespace="{ns}",destination_workload=~"{workload}"}}[{interval}])) * 100"#
                        );
                        self.promql(&q).await?.first().copied()
                    }
                    (Some(_), _, None) => {
                        let q = format!(
                            r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{reporter="destination",destination_workload_namespace="{ns}",destination_workload=~"{workload}"}}[{interval}])) by (le))"#
                        );
                        self.promql(&q).await?.first().copied()
                    }
                    (None, "request-success-rate", None) => {
                        metrics::success_rate(before, after, &workload)
                    }
                    (None, _, None) => metrics::p99(before, after, &workload),
                };
                let ok = value.is_some_and(|v| range.holds(v));
                checks.push(Check {
                    name: m.name.clone(),
                    target: workload.clone(),
                    value,
                    range: range.to_string(),
                    ok,
                });
            }
        }
        // The version matrix: a caller on one lane reaching the next service
        // on the other is a crossing.
        let mut crossings = 0.0;
        for pair in self.train.services().windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            for (va, vb) in [(&a.to, &b.from), (&a.from, &b.to)] {
                let filter = [
                    ("reporter", "source"),
                    ("source_app", a.name.as_str()),
                    ("source_version", va.as_str()),
                    ("destination_app", b.name.as_str()),
                    ("destination_version", vb.as_str()),
                ];
                crossings += match &self.opts.prometheus {
                    Some(_) => {
                        let sel = filter
                            .iter()
                            .map(|(k, v)| format!("{k}=\"{v}\""))
                            .collect::<Vec<_>>()
                            .join(",");
                        let q = format!("sum(increase(istio_requests_total{{{sel}}}[{window}]))");
                        self.promql(&q).await?.first().copied().unwrap_or(0.0)
                    }
                    None => metrics::requests(before, after, &filter, |_| true).0,
                };
            }
        }
        checks.push(Check {
            name: "crossings".into(),
            target: "version matrix".into(),
            value: Some(crossings.round()),
            range: "0".into(),
            ok: crossings < 0.5,
        });
        Ok(checks)
    }

    /// Calls the webhooks of a type, as Flagger does (POST, JSON payload).
    /// Whether every one answered 2xx.
    pub(super) async fn webhooks(&self, kind: WebhookType, phase: &str) -> bool {
        let mut all_ok = true;
        for w in self.train.webhooks(kind) {
            let timeout = w
                .timeout
                .as_deref()
                .and_then(spec::duration)
                .unwrap_or(Duration::from_secs(10));
            let payload = json!({
                "name": self.train.name(),
                "namespace": self.train.namespace(),
                "phase": phase,
                "type": kind.as_str(),
                "metadata": w.metadata,
            });
            let ok = self
                .http
                .post(&w.url)
                .timeout(timeout)
                .json(&payload)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            self.say(&format!(
                "  webhook {} ({}): {}",
                w.name,
                kind.as_str(),
                if ok { "ok" } else { "failed" }
            ));
            all_ok &= ok;
        }
        all_ok
    }

    /// After promotion or rollback: one interval in which no request reaches
    /// the versions left behind (only measurable with traffic).
    pub(super) async fn verify_left_behind(
        &self,
        left: impl Fn(&spec::TrainService) -> &str,
    ) -> Result<Check, Error> {
        // Requests routed before the apply are still finishing (each is
        // counted when its response ends): let them end first.
        self.wait(SETTLE).await;
        let before = self.scrape().await?;
        self.wait(self.train.interval).await;
        let after = self.scrape().await?;
        let mut stray = 0.0;
        let mut total = 0.0;
        let window = format!("{}s", self.train.interval.as_secs().max(1));
        for s in self.train.services() {
            let (all, on_old) = match &self.opts.target {
                Target::Admin(_) => {
                    let dest = [("reporter", "source"), ("destination_app", s.name.as_str())];
                    metrics::requests(&before, &after, &dest, |x| {
                        x.labels.get("destination_version").map(String::as_str) == Some(left(s))
                    })
                }
                // A cluster: the same from its Prometheus.
                Target::Kubectl { .. } => {
                    let sel = format!(
                        r#"reporter="source",destination_workload_namespace="{}",destination_app="{}""#,
                        self.train.namespace(),
                        s.name
                    );
                    let all = format!("sum(increase(istio_requests_total{{{sel}}}[{window}]))");
                    let old = format!(
                        r#"sum(increase(istio_requests_total{{{sel},destination_version="{}"}}[{window}]))"#,
                        left(s)
                    );
                    let first = |v: Vec<f64>| v.first().copied().unwrap_or(0.0);
                    (
                        first(self.promql(&all).await?),
                        first(self.promql(&old).await?),
                    )
                }
            };
            stray += on_old;
            total += all;
        }
        Ok(Check {
            name: "requests on the versions left behind".into(),
            target: format!("{} requests seen", total.round()),
            value: Some(stray.round()),
            range: "0".into(),
            ok: stray < 0.5,
        })
    }
}

/// The load generator: requests to the ingress, half of them with the lane's
/// headers, until stopped.
pub(super) fn load(
    url: String,
    lane: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|worker| {
            let (url, lane, stop, sent) = (url.clone(), lane.clone(), stop.clone(), sent.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
                    .no_proxy()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default();
                let mut i = worker;
                while !stop.load(Ordering::Relaxed) {
                    let mut req = http.get(format!("{}/?city=paris", url.trim_end_matches('/')));
                    if i % 2 == 1 {
                        for (k, v) in &lane {
                            req = req.header(k, v);
                        }
                    }
                    let _ = req.send().await.map(|r| r.bytes());
                    sent.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}
