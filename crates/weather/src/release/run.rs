//! Driving a train: apply a step, wait an interval (sending load when asked),
//! judge it, advance, and roll every service back in one apply when
//! `threshold` checks have failed (docs/architecture.md, "The release train").

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use mesh::Manifests;
use serde::Serialize;
use serde_json::json;

use super::{
    metrics::{self, Scrape},
    plan::{self, Phase},
    spec::{self, Train, WebhookType},
};

/// How long requests routed before an apply are given to end before a
/// verification counts what the new routing does.
const SETTLE: Duration = Duration::from_secs(1);

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    /// Stopped by Ctrl-C: the routing is left as the last step applied it.
    Interrupted,
}

/// One gate's value against its range.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub target: String,
    pub value: Option<f64>,
    pub range: String,
    pub ok: bool,
}

/// One step as it went.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub phase: Phase,
    pub old_weight: u32,
    pub new_weight: u32,
    pub checks: Vec<Check>,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub train: String,
    pub outcome: Outcome,
    pub failed_checks: u32,
    pub steps: Vec<StepReport>,
    /// Requests the load generator sent.
    pub requests_sent: u64,
    /// Why the train stopped, in a sentence.
    pub summary: String,
}

/// Where the routing is applied and the metrics read.
#[derive(Clone, Debug)]
pub enum Target {
    /// A `weather up`'s admin listener (`POST /apply`, `GET /stats/prometheus`).
    Admin(String),
    /// A cluster: `kubectl apply` (with this context, when given), and the
    /// metrics from a Prometheus.
    Kubectl { context: Option<String> },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub spec: PathBuf,
    pub target: Target,
    /// The manifests the train is applied over (to name and check what it
    /// replaces).
    pub manifests: Vec<PathBuf>,
    /// A Prometheus with Istio's metrics; required on a cluster and for
    /// custom queries.
    pub prometheus: Option<String>,
    /// The ingress, for `--load` and the checks after promotion or rollback.
    pub url: Option<String>,
    pub load: bool,
    /// Headers of the load's requests on the A/B phase's lane.
    pub lane_headers: Vec<(String, String)>,
    /// Prints each step's progress (text mode).
    pub progress: bool,
    /// Replaces the spec's analysis interval (a Go duration).
    pub interval: Option<String>,
    /// Replaces the spec's namespace.
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] spec::Error),
    #[error("the manifests: {0}")]
    Manifests(String),
    #[error("{0}")]
    Apply(String),
    #[error("{0}")]
    Metrics(String),
    #[error("{0}")]
    Usage(String),
}

/// Reads and checks the spec against the manifests: nothing is applied.
pub fn prepare(opts: &Options) -> Result<(Train, Manifests), Error> {
    let file = opts.spec.display().to_string();
    let text = std::fs::read_to_string(&opts.spec).map_err(|source| Error::Read {
        path: file.clone(),
        source,
    })?;
    let mut train = spec::parse(&file, &text)?;
    if let Some(ns) = &opts.namespace {
        train.spec.metadata.namespace = ns.clone();
    }
    if let Some(iv) = &opts.interval {
        train.interval = spec::duration(iv).ok_or_else(|| {
            Error::Usage(format!(
                "--interval {iv:?}: expected a duration, e.g. 3s or 1m"
            ))
        })?;
    }
    let m = mesh::load_paths(&opts.manifests).map_err(|errors| {
        Error::Manifests(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    spec::check_against(&train, &m, &file)?;
    let custom = train.analysis().metrics.iter().any(|m| m.query.is_some());
    if custom && opts.prometheus.is_none() {
        return Err(Error::Usage(
            "a metric of the spec has a custom `query`: give --prometheus URL".into(),
        ));
    }
    if matches!(opts.target, Target::Kubectl { .. }) && opts.prometheus.is_none() {
        return Err(Error::Usage(
            "on a cluster the gates read a Prometheus: give --prometheus URL (e.g. after `istioctl dashboard prometheus`)".into(),
        ));
    }
    if opts.load && opts.url.is_none() {
        return Err(Error::Usage("--load needs --url INGRESS".into()));
    }
    Ok((train, m))
}

/// The plan, as `--dry-run` prints it: every step's weights and YAML.
pub fn plan(train: &Train, m: &Manifests) -> String {
    let mut out = format!(
        "Release train {} ({}): every {:?}, rolled back after {} failed checks\n\n",
        train.name(),
        train
            .services()
            .iter()
            .map(|s| format!("{} {} -> {}", s.name, s.from, s.to))
            .collect::<Vec<_>>()
            .join(", "),
        train.interval,
        train.analysis().threshold
    );
    let steps = plan::phases(train);
    for (i, phase) in steps.iter().chain([&Phase::Rollback]).enumerate() {
        let (old, new) = phase.weights();
        let title = if *phase == Phase::Rollback {
            "on failure".to_owned()
        } else {
            format!("step {}/{}", i + 1, steps.len())
        };
        out.push_str(&format!(
            "== {title}: {phase} (gateway: old {old}%, new {new}%)\n"
        ));
        out.push_str(&plan::yaml(train, m, *phase));
        out.push('\n');
    }
    out
}

struct Driver<'a> {
    opts: &'a Options,
    train: &'a Train,
    manifests: &'a Manifests,
    http: reqwest::Client,
    stop: Arc<AtomicBool>,
}

impl Driver<'_> {
    fn say(&self, line: &str) {
        if self.opts.progress {
            println!("{line}");
        }
    }

    async fn apply(&self, phase: Phase) -> Result<(), Error> {
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

    async fn scrape(&self) -> Result<Scrape, Error> {
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
    async fn wait(&self, d: Duration) {
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
    async fn promql(&self, query: &str) -> Result<Vec<f64>, Error> {
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
    async fn judge(&self, before: &Scrape, after: &Scrape) -> Result<Vec<Check>, Error> {
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
    async fn webhooks(&self, kind: WebhookType, phase: &str) -> bool {
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
    async fn verify_left_behind(
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
fn load(
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

/// Runs the train to promotion or rollback. `interrupt` resolves on Ctrl-C.
pub async fn run(
    opts: &Options,
    train: &Train,
    manifests: &Manifests,
    interrupt: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Report, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (stop, interrupted) = (stop.clone(), interrupted.clone());
        tokio::spawn(async move {
            interrupt.await;
            interrupted.store(true, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let d = Driver {
        opts,
        train,
        manifests,
        http: reqwest::Client::builder()
            .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Apply(e.to_string()))?,
        stop: stop.clone(),
    };
    let load_stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let workers = match (&opts.load, &opts.url) {
        (true, Some(url)) => load(
            url.clone(),
            opts.lane_headers.clone(),
            load_stop.clone(),
            sent.clone(),
        ),
        _ => Vec::new(),
    };
    let result = drive(&d, &interrupted).await;
    load_stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    result.map(|(outcome, failed_checks, steps, summary)| Report {
        train: train.name().to_owned(),
        outcome,
        failed_checks,
        steps,
        requests_sent: sent.load(Ordering::Relaxed),
        summary,
    })
}

type Driven = (Outcome, u32, Vec<StepReport>, String);

async fn drive(d: &Driver<'_>, interrupted: &AtomicBool) -> Result<Driven, Error> {
    let train = d.train;
    let threshold = train.analysis().threshold;
    let phases = plan::phases(train);
    let mut steps = Vec::new();
    let mut failed = 0u32;
    if !d.webhooks(WebhookType::PreRollout, "Initialized").await {
        failed += 1;
    }
    let mut i = 0;
    // The last step applied, judged or not: what an interruption leaves.
    let mut applied: Option<Phase> = None;
    while i < phases.len() {
        let phase = phases[i];
        if interrupted.load(Ordering::Relaxed) {
            let summary = format!(
                "interrupted: the routing is left as {} applied it; re-run the train, or apply a stage (weather stage all-v1) to go back",
                applied.map_or_else(|| "before the train".to_owned(), |p| p.to_string())
            );
            return Ok((Outcome::Interrupted, failed, steps, summary));
        }
        if failed >= threshold {
            break;
        }
        if phase == Phase::Promote && !d.webhooks(WebhookType::ConfirmPromotion, "Promoting").await
        {
            d.say("  promotion not confirmed: waiting one interval");
            d.wait(train.interval).await;
            continue;
        }
        d.apply(phase).await?;
        applied = Some(phase);
        let (old, new) = phase.weights();
        d.say(&format!(
            "[{}/{}] {phase}: applied (gateway old {old}%, new {new}%)",
            i + 1,
            phases.len()
        ));
        if !phase.analysed() {
            steps.push(conclude(d, phase).await?);
            let summary = format!(
                "promoted: every service of the train on its new version ({})",
                versions(train, |s| &s.to)
            );
            return Ok((Outcome::Promoted, failed, steps, summary));
        }
        let before = d.scrape().await?;
        d.wait(train.interval).await;
        if interrupted.load(Ordering::Relaxed) {
            continue;
        }
        let after = d.scrape().await?;
        let mut checks = d.judge(&before, &after).await?;
        let hooks = d.webhooks(WebhookType::Rollout, "Progressing").await;
        if !hooks {
            checks.push(Check {
                name: "rollout webhooks".into(),
                target: "webhooks".into(),
                value: None,
                range: "2xx".into(),
                ok: false,
            });
        }
        let manual_rollback = train.webhooks(WebhookType::Rollback).next().is_some()
            && d.webhooks(WebhookType::Rollback, "Progressing").await;
        for c in &checks {
            d.say(&format!(
                "  {:<4}  {:<22} {:<16} {:>8}  ({})",
                if c.ok { "ok" } else { "FAIL" },
                c.name,
                c.target,
                fmt_value(c.value),
                c.range
            ));
        }
        let passed = checks.iter().all(|c| c.ok);
        steps.push(StepReport {
            phase,
            old_weight: old,
            new_weight: new,
            checks,
            passed,
        });
        if manual_rollback {
            failed = threshold;
            break;
        }
        if passed {
            i += 1;
        } else {
            failed += 1;
            d.say(&format!("  failed checks: {failed} of {threshold}"));
        }
    }
    // Rollback: every service of the train back on its old version, in one apply.
    d.apply(Phase::Rollback).await?;
    d.say("rolling back: every service of the train on its old version (one apply)");
    steps.push(conclude(d, Phase::Rollback).await?);
    let summary = format!(
        "rolled back after {failed} failed checks: every service of the train on its old version ({})",
        versions(train, |s| &s.from)
    );
    Ok((Outcome::RolledBack, failed, steps, summary))
}

/// After promotion or rollback: one interval verifies that no request reaches
/// the versions left behind, then the post-rollout webhooks are told.
async fn conclude(d: &Driver<'_>, phase: Phase) -> Result<StepReport, Error> {
    let promoted = phase == Phase::Promote;
    let check = if promoted {
        d.verify_left_behind(|s| s.from.as_str()).await?
    } else {
        d.verify_left_behind(|s| s.to.as_str()).await?
    };
    d.say(&format!(
        "  {}: {} ({})",
        check.name,
        fmt_value(check.value),
        check.target
    ));
    let (old_weight, new_weight) = phase.weights();
    let passed = check.ok;
    let outcome = if promoted { "Succeeded" } else { "Failed" };
    d.webhooks(WebhookType::PostRollout, outcome).await;
    Ok(StepReport {
        phase,
        old_weight,
        new_weight,
        checks: vec![check],
        passed,
    })
}

/// `frontend v2, forecast v2`: each service of the train at the version `pick`
/// names.
fn versions(train: &Train, pick: fn(&spec::TrainService) -> &String) -> String {
    train
        .services()
        .iter()
        .map(|s| format!("{} {}", s.name, pick(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "no data".into(),
    }
}

impl Report {
    /// The final table, one line per step.
    pub fn render(&self) -> String {
        let mut out = format!("\nRelease train {}: {}\n\n", self.train, self.summary);
        out.push_str(&format!(
            "{:<18} {:>7}  {}\n",
            "step", "old/new", "checks (FAIL marks a failed one)"
        ));
        for s in &self.steps {
            let checks = s
                .checks
                .iter()
                .map(|c| {
                    let v = fmt_value(c.value);
                    let shown = match c.name.as_str() {
                        "request-success-rate" => format!("{} {v}%", c.target),
                        "request-duration" => format!("p99 {v} ms"),
                        "crossings" => format!("crossings {v}"),
                        "requests on the versions left behind" => {
                            format!("{v} on the versions left behind ({})", c.target)
                        }
                        other => format!("{other} {} {v}", c.target),
                    };
                    if c.ok { shown } else { format!("FAIL {shown}") }
                })
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "{:<18} {:>3}/{:<3}  {checks}\n",
                s.phase.to_string(),
                s.old_weight,
                s.new_weight
            ));
        }
        out.push_str(&format!(
            "\nfailed checks: {}; load sent: {} requests\n",
            self.failed_checks, self.requests_sent
        ));
        out
    }
}
