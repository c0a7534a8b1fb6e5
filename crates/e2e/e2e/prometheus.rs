//! A real Prometheus (Debian's `prometheus`), started by the real `weather up
//! --prometheus`, answers the PromQL that Flagger and Kiali run on a cluster:
//! success rate and p99 per destination workload, and the versioned edges with
//! the counts sent. Stopped with `weather up`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use reqwest::Client;
use serde_json::Value;
use weather::prometheus::{P99, SUCCESS_RATE};
use weather_core::testing::eventually_within;
use weather_e2e::WeatherUp;

/// The program `weather up --prometheus` runs, or a clear failure.
fn prometheus_program() -> String {
    let program = std::env::var("WEATHER_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let found = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} cannot be run: this test needs a real Prometheus (`apt-get install prometheus`; ./scripts/test installs it), or WEATHER_PROMETHEUS naming one"
    );
    program
}

/// The real `weather up --stage STAGE --prometheus`, its Prometheus on a free
/// port scraping every 500 ms.
fn up_with_prometheus(stage: &str) -> WeatherUp {
    let program = prometheus_program();
    WeatherUp::start_with(
        stage,
        &[
            "--prometheus",
            "--prometheus-bin",
            &program,
            "--prometheus-listen",
            "127.0.0.1:0",
            "--scrape-interval-ms",
            "500",
        ],
    )
}

/// An instant query's result: each series' labels and value.
async fn query(http: &Client, prometheus: &str, promql: &str) -> Vec<(Value, f64)> {
    let res: Value = http
        .get(format!(
            "{prometheus}/api/v1/query?query={}",
            form_urlencoded::byte_serialize(promql.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["status"], "success", "{promql}: {res}");
    res["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let v = s["value"][1].as_str().unwrap().parse().unwrap_or(f64::NAN);
            (s["metric"].clone(), v)
        })
        .collect()
}

/// Queries until `done` holds for the answer (60 s at most: the scrapes and
/// the rate window need a few rounds).
async fn query_until(
    http: &Client,
    prometheus: &str,
    promql: &str,
    done: impl Fn(&[(Value, f64)]) -> bool,
) -> Vec<(Value, f64)> {
    let mut answer = Vec::new();
    let what = format!("Prometheus to answer as expected to {promql}");
    eventually_within(&what, Duration::from_secs(60), async || {
        answer = query(http, prometheus, promql).await;
        done(&answer)
    })
    .await;
    answer
}

fn by<'a>(answer: &'a [(Value, f64)], label: &str, value: &str) -> Option<&'a f64> {
    answer
        .iter()
        .find(|(m, _)| m[label] == value)
        .map(|(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus (scripts/setup): ./scripts/test runs it"]
async fn flagger_and_kiali_queries_answer_from_a_real_prometheus_scraping_weather_up() {
    let mut up = up_with_prometheus("multiservice");
    let prometheus = up
        .prometheus
        .clone()
        .expect("weather up --prometheus prints Prometheus's URL");
    let http = Client::builder().no_proxy().build().unwrap();

    // Traffic until rate() sees it (two scrapes with requests between them),
    // then no more: the counts can then be held against what was sent.
    let (anonymous, testers) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (http, url) = (http.clone(), up.url.clone());
        let (anonymous, testers, stop) = (anonymous.clone(), testers.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Acquire) {
                for (cookie, sent) in [("lang=en", &anonymous), ("user=tester; lang=en", &testers)]
                {
                    let res = http
                        .get(format!("{url}/?city=paris"))
                        .header("cookie", cookie)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                    sent.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    });
    let rate = r#"sum(rate(istio_requests_total{reporter="source",source_workload="istio-ingressgateway"}[1m]))"#;
    query_until(&http, &prometheus, rate, |a| {
        a.first().is_some_and(|(_, v)| *v > 0.0)
    })
    .await;
    stop.store(true, Ordering::Release);
    traffic.await.unwrap();
    let (anonymous, testers) = (
        anonymous.load(Ordering::Acquire),
        testers.load(Ordering::Acquire),
    );

    // The versioned edges, as Kiali's graph asks for them, with the counts sent.
    let edges = r#"sum by (source_workload, destination_workload) (istio_requests_total{reporter="source",source_workload="istio-ingressgateway"})"#;
    query_until(&http, &prometheus, edges, |a| {
        by(a, "destination_workload", "frontend-v1") == Some(&(anonymous as f64))
            && by(a, "destination_workload", "frontend-v2") == Some(&(testers as f64))
            && a.len() == 2
    })
    .await;
    // Each frontend calls the forecast of its own version, and no other.
    let calls = r#"sum by (source_workload, destination_workload) (istio_requests_total{reporter="destination",source_app="frontend"})"#;
    let calls = query(&http, &prometheus, calls).await;
    let mut pairs: Vec<(String, String)> = calls
        .iter()
        .map(|(m, _)| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (s("source_workload"), s("destination_workload"))
        })
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [
            ("frontend-v1".to_owned(), "forecast-v1".to_owned()),
            ("frontend-v2".to_owned(), "forecast-v2".to_owned()),
        ]
    );

    // Flagger's built-in checks, per destination workload of the release.
    let rates = query_until(&http, &prometheus, SUCCESS_RATE, |a| {
        [
            "frontend-v1",
            "frontend-v2",
            "forecast-v2",
            "recommendation-v1",
        ]
        .iter()
        .all(|w| by(a, "destination_workload", w).is_some_and(|v| v.is_finite()))
    })
    .await;
    for w in ["frontend-v1", "frontend-v2", "forecast-v1", "forecast-v2"] {
        assert_eq!(
            by(&rates, "destination_workload", w),
            Some(&100.0),
            "{w}: {rates:?}"
        );
    }
    let p99 = query_until(&http, &prometheus, P99, |a| {
        by(a, "destination_workload", "frontend-v2").is_some_and(|v| v.is_finite())
    })
    .await;
    let v = *by(&p99, "destination_workload", "frontend-v2").unwrap();
    assert!(v > 0.0 && v < 10_000.0, "p99 of frontend-v2: {v} ms");

    // Stopping weather up stops its Prometheus.
    assert!(
        up.stop(Duration::from_secs(20)),
        "weather up exits on SIGTERM"
    );
    let gone = http
        .get(format!("{prometheus}/-/ready"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        gone.is_err(),
        "Prometheus still answers after weather up stopped"
    );
}

/// The release train judged by Flagger's own queries on a real Prometheus, as
/// on a cluster: the real `weather release` binary against the real `weather up
/// --prometheus`.
#[test]
#[ignore = "needs Prometheus (scripts/setup): ./scripts/test runs it"]
fn a_release_train_judged_by_a_real_prometheus_is_promoted() {
    let up = up_with_prometheus("all-v1");
    let prometheus = up.prometheus.clone().expect("Prometheus's URL");
    let out = std::process::Command::new(weather_e2e::binary("weather"))
        .current_dir(weather_e2e::root())
        .args(["release", "release/frontend-forecast-v2.yaml"])
        .args([
            "--admin",
            &up.admin,
            "--url",
            &up.url,
            "--prometheus",
            &prometheus,
        ])
        .args(["--load", "--interval", "3s", "--output", "json"])
        .output()
        .expect("weather release runs");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["outcome"], "promoted");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5, "{report:#}");
    for step in &steps[..4] {
        for check in step["checks"].as_array().unwrap() {
            assert!(check["value"].is_number(), "{check}: Prometheus answered");
            assert_eq!(check["ok"], true, "{check}");
        }
    }
}

/// The resilience lab in Prometheus: on `fault-abort`, the aborted calls to
/// recommendation are the series with `response_flags="FI"`, as many as the
/// tester pages that came without recommendation in their chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus (scripts/setup): ./scripts/test runs it"]
async fn a_lessons_response_flags_answer_from_a_real_prometheus() {
    let mut up = up_with_prometheus("fault-abort");
    let prometheus = up
        .prometheus
        .clone()
        .expect("weather up --prometheus prints Prometheus's URL");
    let http = Client::builder().no_proxy().build().unwrap();
    let pages = 60;
    let mut aborted = 0;
    for _ in 0..pages {
        let res = http
            .get(format!("{}/?city=paris", up.url))
            .header("cookie", "user=tester")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the page comes, advice or not");
        if res.headers()["x-weather-chain"] == "frontend:v2,forecast:v2" {
            aborted += 1;
        }
    }
    assert!(
        aborted > 0 && aborted < pages,
        "{aborted} of {pages} aborted"
    );
    let flags = r#"sum by (response_flags) (istio_requests_total{reporter="source",destination_service_name="recommendation"})"#;
    let answer = query_until(&http, &prometheus, flags, |a| {
        let total: f64 = a.iter().map(|(_, v)| v).sum();
        total == pages as f64
    })
    .await;
    assert_eq!(by(&answer, "response_flags", "FI"), Some(&(aborted as f64)));
    assert_eq!(
        by(&answer, "response_flags", "-"),
        Some(&((pages - aborted) as f64))
    );
    assert!(
        up.stop(Duration::from_secs(20)),
        "weather up exits on SIGTERM"
    );
}
