//! Driving a train: apply a step, wait an interval (sending load when asked),
//! judge it, advance, and roll every service back in one apply when
//! `threshold` checks have failed (docs/architecture.md, "The release train").

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use mesh::Manifests;

use super::{
    driver::{self, Driver},
    plan::{self, Phase},
    report::fmt_value,
    spec::{self, Train, WebhookType},
};

pub use super::{
    options::{Error, Options, Target},
    report::{Check, Outcome, Report, StepReport},
};

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
        (true, Some(url)) => driver::load(
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
