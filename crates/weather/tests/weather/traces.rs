//! `weather up --traces`: Zipkin's real server (Java, from Maven Central)
//! beside the release, every workload and proxy hop sending it their spans.
//! A tester's page and an anonymous one are two traces, each with the
//! gateway's hop and the versions of its chain, and the admin page links each
//! request to its trace.

use std::{collections::BTreeSet, time::Duration};

use serde_json::Value;
use weather::{
    dataplane,
    zipkin::{Options, Zipkin},
};
use weather_core::testing::eventually_within;

use crate::{client, get_text, stage_paths};

/// Each span's (service, `service.version`) in one trace.
fn services(trace: &[Value]) -> BTreeSet<(String, String)> {
    trace
        .iter()
        .map(|s| {
            (
                s["localEndpoint"]["serviceName"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                s["tags"]["service.version"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Java and Zipkin's server (scripts/setup): ./scripts/test runs it"]
async fn with_traces_a_tester_page_and_an_anonymous_page_are_two_traces_in_zipkin() {
    // The services' spans are `tracing` spans: the subscriber that exports
    // them, as `weather up`'s main installs it.
    weather_core::telemetry::init_quiet();
    let zipkin = Zipkin::start(&Options::from_env("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let running = dataplane::start(
        dataplane::Options::local(stage_paths("multiservice"), Some("multiservice".into()))
            .traced(zipkin.collector(), zipkin.url.clone()),
    )
    .await
    .unwrap();
    let admin = weather::admin::serve("127.0.0.1:0".parse().unwrap(), running.plane.clone())
        .await
        .unwrap();
    let http = client();
    for cookie in ["lang=en; user=tester", "lang=en"] {
        let res = http
            .get(format!("http://{}/?city=tokyo", running.ingress))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // Send what the batch processors hold now, not at their next tick.
    tokio::task::spawn_blocking(weather_core::telemetry::flush_all)
        .await
        .unwrap();

    let tester = set(&[
        ("istio-ingressgateway.istio-system", ""),
        ("frontend", "v2"),
        ("frontend.weather", "v2"),
        ("forecast", "v2"),
        ("forecast.weather", "v2"),
        ("recommendation", "v1"),
    ]);
    let anonymous = set(&[
        ("istio-ingressgateway.istio-system", ""),
        ("frontend", "v1"),
        ("frontend.weather", "v1"),
        ("forecast", "v1"),
    ]);
    let mut traces: Vec<Vec<Value>> = Vec::new();
    eventually_within(
        "Zipkin holding both pages' traces, whole",
        Duration::from_secs(30),
        async || {
            let Ok(res) = http
                .get(format!("{}/api/v2/traces?limit=100", zipkin.url))
                .send()
                .await
            else {
                return false;
            };
            traces = res.json().await.unwrap_or_default();
            let pages: Vec<BTreeSet<(String, String)>> = traces
                .iter()
                .filter(|t| t.iter().any(|s| s["name"].as_str() == Some("get /")))
                .map(|t| services(t))
                .collect();
            pages.contains(&tester) && pages.contains(&anonymous)
        },
    )
    .await;

    // The gateway's span names the rule that picked frontend v2.
    let tester_trace = traces
        .iter()
        .find(|t| services(t) == tester)
        .expect("the tester's trace");
    let gateway = tester_trace
        .iter()
        .find(|s| s["localEndpoint"]["serviceName"] == "istio-ingressgateway.istio-system")
        .unwrap();
    assert_eq!(gateway["tags"]["route_name"], "frontend-route http[0]");
    // The admin page links the request to that trace in Zipkin's UI.
    let trace_id = gateway["traceId"].as_str().unwrap();
    let panel = get_text(&format!("http://{}/panel", admin.addr)).await;
    assert!(
        panel.contains(&format!("{}/zipkin/traces/{trace_id}", zipkin.url)),
        "{panel}"
    );
    admin.shutdown().await.unwrap();
    running.shutdown().await;
    zipkin.stop().await;
}
