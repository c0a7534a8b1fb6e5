//! `weather release` on the shipped train: bad specs refused before anything
//! is applied, every step's VirtualServices clean for `weather check`, and the
//! train run for real against the local data plane (short intervals, its own
//! load): the healthy one promoted with no crossing at any step, the one with
//! a failing forecast v2 rolled back whole within `threshold` intervals.

use std::path::PathBuf;

use mesh::{Manifests, Mesh, analyze::analyze};
use weather::{
    dataplane,
    release::{
        plan::{self, Phase},
        run::{self, Outcome, Target},
        spec,
    },
};

use crate::{root, stage_paths};

fn shipped_spec() -> PathBuf {
    root().join("release/frontend-forecast-v2.yaml")
}

fn shipped_text() -> String {
    std::fs::read_to_string(shipped_spec()).unwrap()
}

fn options(spec: PathBuf, manifests: Vec<PathBuf>) -> run::Options {
    run::Options {
        spec,
        target: Target::Admin("http://127.0.0.1:1".into()),
        manifests,
        prometheus: None,
        url: None,
        load: false,
        lane_headers: vec![("cookie".into(), "_ga=GA1.1.42; user=tester".into())],
        progress: false,
        interval: Some("1s".into()),
        namespace: None,
    }
}

/// The shipped spec with `from` replaced by `to` (once).
fn edited(from: &str, to: &str) -> PathBuf {
    let text = shipped_text();
    assert!(text.contains(from), "the shipped spec has {from:?}");
    let dir = crate::tmp("release-edits");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.yaml", fxhash(from) ^ fxhash(to)));
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

/// Every step's YAML (the rollback too), a file each, in a folder of its own
/// (`release-TAG`, see [`crate::scratch`]).
fn step_files(train: &spec::Train, m: &Manifests, tag: &str) -> (PathBuf, Vec<PathBuf>) {
    let dir = crate::scratch(&format!("release-{tag}"));
    let mut phases = plan::phases(train);
    phases.push(Phase::Rollback);
    let files = phases
        .into_iter()
        .enumerate()
        .map(|(i, phase)| {
            let f = dir.join(format!("step-{i}.yaml"));
            std::fs::write(&f, plan::yaml(train, m, phase)).unwrap();
            f
        })
        .collect();
    (dir, files)
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn bad_specs_are_refused_naming_the_field_before_anything_is_applied() {
    let all_v1 = stage_paths("all-v1");
    for (from, to, says) in [
        (
            "  threshold: 2",
            "  threshold: 2\n    thresold: 3",
            "thresold",
        ),
        (
            "stepWeights: [10, 50]",
            "stepWeights: [10, 150]",
            "spec.analysis.stepWeights[1]: 150",
        ),
        (
            "stepWeights: [10, 50]",
            "stepWeights: [50, 10]",
            "stepWeights[1]: 10 is not above",
        ),
        (
            "    - name: forecast\n",
            "    - name: forecasts\n",
            "no Service weather/forecasts",
        ),
        (
            "      to: v2\n    - name: forecast",
            "      to: v3\n    - name: forecast",
            "spec.services[0].to: no Deployment in weather runs frontend v3",
        ),
        ("interval: 30s", "interval: soon", "spec.analysis.interval"),
        ("kind: ReleaseTrain", "kind: Canary", "kind: \"Canary\""),
        (
            "            regex:",
            "            regexp:",
            "spec.analysis.match[0].headers",
        ),
        (
            "gateway: istio-system/weather-gateway",
            "gateway: istio-system/nope",
            "no Gateway istio-system/nope",
        ),
        (
            "      from: v1\n      to: v2\n    - name: forecast",
            "      from: v2\n      to: v2\n    - name: forecast",
            "spec.services[0].to",
        ),
    ] {
        let opts = options(edited(from, to), all_v1.clone());
        let e = run::prepare(&opts).expect_err(to).to_string();
        assert!(e.contains(says), "{to}: {e}");
    }
    // The shipped one is fine.
    run::prepare(&options(shipped_spec(), all_v1)).unwrap();
}

/// Every step's VirtualServices over the manifests they replace are clean for
/// `weather check`, and route as the step says.
#[test]
fn every_steps_routing_is_clean_for_weather_check() {
    let overlays = steps_clean(stage_paths("all-v1"));
    assert_eq!(overlays.len(), 6);
    for o in overlays {
        assert_eq!(o.virtual_services.len(), 2);
        assert!(o.http_routes.is_empty());
    }
}

/// Applies every step of the shipped train over `paths` (the rollback too),
/// asserting `weather check` finds nothing; returns what each step applied.
fn steps_clean(paths: Vec<PathBuf>) -> Vec<Manifests> {
    let (train, m) = run::prepare(&options(shipped_spec(), paths)).unwrap();
    let mut phases = plan::phases(&train);
    phases.push(Phase::Rollback);
    let mut overlays = Vec::new();
    for phase in phases {
        let yaml = plan::yaml(&train, &m, phase);
        let mut overlay = Manifests::default();
        overlay.add_yaml("step", &yaml).unwrap();
        assert!(overlay.warnings.is_empty(), "{:?}", overlay.warnings);
        let mut all = m.clone();
        all.apply(overlay.clone()).unwrap();
        let mesh = Mesh::compile(&all);
        let findings = analyze(&all, &mesh);
        assert!(findings.is_empty(), "{phase}: {findings:?}\n{yaml}");
        overlays.push(overlay);
    }
    overlays
}

/// Every step's YAML passes Istio's published schemas and the check for fields
/// Istio does not define (tools/validate, installed by scripts/validate-manifests).
#[test]
#[ignore = "needs Node and Istio's schemas (scripts/setup): ./scripts/test runs it"]
fn every_steps_yaml_passes_istios_schemas() {
    let (train, m) = run::prepare(&options(shipped_spec(), stage_paths("all-v1"))).unwrap();
    let checker = root().join("tools/validate/validate-istio.mjs");
    assert!(
        root()
            .join("tools/validate/node_modules/@kubernetes-models/istio")
            .exists(),
        "the Istio schema checker is not installed: run ./scripts/validate-manifests (./scripts/test does) first"
    );
    let (dir, files) = step_files(&train, &m, "schema");
    let out = std::process::Command::new("node")
        .arg(&checker)
        .args(&files)
        .output()
        .expect("node runs (Node 20 or later)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("12 Istio objects checked in 6 files: 0 errors"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn step_weight_and_max_weight_count_the_steps_as_flagger_does() {
    let text = shipped_text().replace("stepWeights: [10, 50]", "stepWeight: 20\n    maxWeight: 60");
    let train = spec::parse("spec.yaml", &text).unwrap();
    assert_eq!(train.weights, [20, 40, 60]);
    let text = shipped_text().replace(
        "stepWeights: [10, 50]",
        "stepWeights: [10, 50]\n    stepWeight: 5",
    );
    let e = spec::parse("spec.yaml", &text).unwrap_err().to_string();
    assert!(e.contains("either stepWeights or stepWeight"), "{e}");
}

/// Runs the shipped train against a local data plane started from `paths`,
/// with its own load, every interval 1 s.
async fn run_train(paths: Vec<PathBuf>) -> (run::Report, Vec<String>) {
    run_spec(shipped_spec(), paths, |_| std::future::pending()).await
}

/// Runs the train of `spec` (see [`run_train`]), interrupted when `interrupt`
/// resolves.
/// Runs `spec` against a fresh `weather up` of `paths`; `interrupt` gets
/// its plane and resolves when the train is to be interrupted (Ctrl-C).
async fn run_spec<F>(
    spec: PathBuf,
    paths: Vec<PathBuf>,
    interrupt: impl FnOnce(std::sync::Arc<weather::dataplane::plane::Plane>) -> F,
) -> (run::Report, Vec<String>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let running = dataplane::start(dataplane::Options::local(paths.clone(), None))
        .await
        .unwrap();
    let interrupt = interrupt(running.plane.clone());
    let admin = weather::admin::serve("127.0.0.1:0".parse().unwrap(), running.plane.clone())
        .await
        .unwrap();
    let mut opts = options(spec, paths);
    opts.target = Target::Admin(admin.url());
    opts.url = Some(format!("http://{}", running.ingress));
    opts.load = true;
    let (train, m) = run::prepare(&opts).unwrap();
    let report = run::run(&opts, &train, &m, interrupt).await.unwrap();
    // After the train: where do anonymous and tester requests go now?
    let http = reqwest::Client::new();
    let mut chains = Vec::new();
    for cookie in ["lang=en", "user=tester"] {
        for _ in 0..20 {
            let res = http
                .get(format!("http://{}/?city=paris", running.ingress))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            let chain = res.headers()["x-weather-chain"]
                .to_str()
                .unwrap()
                .to_owned();
            if !chains.contains(&chain) {
                chains.push(chain);
            }
        }
    }
    admin.shutdown().await.unwrap();
    running.shutdown().await;
    (report, chains)
}

fn crossings(step: &run::StepReport) -> Option<f64> {
    step.checks
        .iter()
        .find(|c| c.name == "crossings")
        .and_then(|c| c.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_train_is_promoted_with_no_crossing_at_any_step() {
    let report = promoted_with_no_crossing(stage_paths("all-v1")).await;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outcome"], "promoted");
    assert_eq!(json["steps"][2]["phase"], "weighted");
    assert_eq!(json["steps"][2]["new_weight"], 10);
}

/// Runs the shipped train over `paths`: promoted, every analysed step passed
/// with traffic for every gate and no crossing, everyone on v2 after.
async fn promoted_with_no_crossing(paths: Vec<PathBuf>) -> run::Report {
    let (report, chains) = run_train(paths).await;
    assert_eq!(report.outcome, Outcome::Promoted, "{}", report.render());
    assert_eq!(report.failed_checks, 0, "{}", report.render());
    let analysed: Vec<_> = report.steps.iter().filter(|s| s.phase.analysed()).collect();
    assert_eq!(analysed.len(), 4, "{}", report.render());
    for s in &analysed {
        assert!(s.passed, "{}", report.render());
        assert_eq!(crossings(s), Some(0.0), "{}", report.render());
        // Every gate had traffic to judge on the new lane.
        assert!(
            s.checks.iter().all(|c| c.value.is_some()),
            "{}",
            report.render()
        );
    }
    let promotion = report.steps.last().unwrap();
    assert_eq!(promotion.phase, Phase::Promote);
    assert!(promotion.passed, "{}", report.render());
    assert_eq!(chains, ["frontend:v2,forecast:v2,recommendation:v1"]);
    report
}

/// The same train on a release written in Gateway API: HTTPRoutes, the lane
/// in `baggage`, set at the edge for the tester and by weight.
fn gateway_api_all_v1() -> Vec<PathBuf> {
    weather::stages::paths_for(&root(), weather::stages::Api::GatewayApi, "all-v1").unwrap()
}

#[test]
fn on_gateway_api_every_step_is_http_routes_clean_for_weather_check() {
    let overlays = steps_clean(gateway_api_all_v1());
    assert_eq!(overlays.len(), 6);
    for o in overlays {
        assert_eq!(o.http_routes.len(), 2);
        assert!(o.virtual_services.is_empty());
    }
}

/// Every step's HTTPRoutes pass Gateway API's published CRD schemas, as
/// scripts/validate-manifests checks the shipped ones (the same release).
#[test]
#[ignore = "needs Go and Python's jsonschema (scripts/setup): ./scripts/test runs it"]
fn on_gateway_api_every_steps_yaml_passes_gateway_apis_schemas() {
    let (train, m) = run::prepare(&options(shipped_spec(), gateway_api_all_v1())).unwrap();
    let script = std::fs::read_to_string(root().join("scripts/validate-manifests")).unwrap();
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("GATEWAY_API_VERSION="))
        .expect("scripts/validate-manifests names the Gateway API release");
    let dl = std::process::Command::new("go")
        .current_dir(root().join("conformance"))
        .args([
            "mod",
            "download",
            "-json",
            &format!("sigs.k8s.io/gateway-api@{version}"),
        ])
        .output()
        .expect("go runs");
    let module: serde_json::Value = serde_json::from_slice(&dl.stdout).unwrap();
    let crds = PathBuf::from(module["Dir"].as_str().unwrap()).join("config/crd/standard");
    let (dir, files) = step_files(&train, &m, "gwapi");
    let out = std::process::Command::new(root().join("target/venv/bin/python"))
        .arg(root().join("tools/validate/validate-gateway-api.py"))
        .arg(&crds)
        .args(&files)
        .output()
        .expect("target/venv's python runs (./scripts/validate-manifests installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Gateway API: 12 objects valid"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gateway_api_a_healthy_train_is_promoted_with_no_crossing_at_any_step() {
    promoted_with_no_crossing(gateway_api_all_v1()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_train_whose_forecast_v2_fails_is_rolled_back_whole_within_threshold_intervals() {
    let root = root();
    let paths = vec![
        root.join("k8s"),
        root.join("release/bad-forecast"),
        root.join("istio/base"),
        root.join("istio/stages/all-v1"),
    ];
    let (report, chains) = run_train(paths).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.render());
    assert_eq!(report.failed_checks, 2);
    // threshold (2) analysed intervals, then the rollback.
    let analysed: Vec<_> = report.steps.iter().filter(|s| s.phase.analysed()).collect();
    assert_eq!(analysed.len(), 2, "{}", report.render());
    for s in &analysed {
        let forecast = s
            .checks
            .iter()
            .find(|c| c.name == "request-success-rate" && c.target == "forecast-v2")
            .unwrap();
        assert!(!forecast.ok, "{}", report.render());
    }
    let rollback = report.steps.last().unwrap();
    assert_eq!(rollback.phase, Phase::Rollback);
    assert!(rollback.passed, "{}", report.render());
    assert_eq!(chains, ["frontend:v1,forecast:v1"]);
}

/// Flagger's webhooks: `pre-rollout` and `post-rollout` told what happens, a
/// failing `rollout` webhook a failed check, so the train rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollout_webhook_fails_the_checks_and_every_webhook_is_told() {
    use weather_core::testing::{FakeService, Script};
    let ok = FakeService::start(Script::ok_json("{}")).await;
    let failing =
        FakeService::start(Script::status(reqwest::StatusCode::INTERNAL_SERVER_ERROR)).await;
    let hooks = format!(
        "    webhooks:
      - name: announce
        type: pre-rollout
        url: {ok}/pre
      - name: acceptance
        type: rollout
        url: {failing}/rollout
        timeout: 5s
        metadata:
          cmd: curl -s http://frontend.weather:3000/healthz
      - name: notify
        type: post-rollout
        url: {ok}/post
",
        ok = ok.url(),
        failing = failing.url()
    );
    let spec = edited("    metrics:\n", &format!("{hooks}    metrics:\n"));
    let (report, chains) = run_spec(spec, stage_paths("all-v1"), |_| std::future::pending()).await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{}", report.render());
    assert_eq!(chains, ["frontend:v1,forecast:v1"]);
    let analysed: Vec<_> = report.steps.iter().filter(|s| s.phase.analysed()).collect();
    assert_eq!(analysed.len(), 2);
    for s in &analysed {
        let hook = s
            .checks
            .iter()
            .find(|c| c.name == "rollout webhooks")
            .unwrap();
        assert!(!hook.ok);
        // The metrics themselves were fine.
        assert!(
            s.checks
                .iter()
                .filter(|c| c.name != "rollout webhooks")
                .all(|c| c.ok),
            "{}",
            report.render()
        );
    }
    let told: Vec<serde_json::Value> = ok
        .bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    assert_eq!(told[0]["name"], "frontend-forecast-v2");
    assert_eq!(told[0]["namespace"], "weather");
    assert_eq!(told[0]["type"], "pre-rollout");
    assert_eq!(told[1]["type"], "post-rollout");
    assert_eq!(told[1]["phase"], "Failed");
    let rollout: serde_json::Value = serde_json::from_str(&failing.bodies()[0]).unwrap();
    assert_eq!(
        rollout["metadata"]["cmd"],
        "curl -s http://frontend.weather:3000/healthz"
    );
}

/// Ctrl-C between steps: the train stops and says what routing it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_train_stops_and_says_what_routing_it_leaves() {
    // Interrupted as soon as the train has applied its first step.
    let interrupt = |plane: std::sync::Arc<weather::dataplane::plane::Plane>| {
        let mut changes = plane.changes();
        async move {
            let _ = changes.wait_for(|applied| *applied > 0).await;
        }
    };
    let (report, chains) = run_spec(shipped_spec(), stage_paths("all-v1"), interrupt).await;
    assert_eq!(report.outcome, Outcome::Interrupted, "{}", report.render());
    assert!(
        report
            .summary
            .contains("the routing is left as A/B iteration 1 applied it"),
        "{}",
        report.summary
    );
    // A/B: testers on the new lane, everyone else on the old.
    assert_eq!(
        chains,
        [
            "frontend:v1,forecast:v1",
            "frontend:v2,forecast:v2,recommendation:v1"
        ]
    );
}
