//! One request, one trace: spans of frontend, forecast and recommendation
//! exported over OTLP/HTTP to a real receiver, each parent inside the trace, the
//! first one a child of the caller's span, W3C or B3 in, both out.

use std::collections::{BTreeSet, HashSet};

use weather_core::{
    AppArgs, AppVersion, Health, RunningServer,
    server::spawn_local,
    telemetry::TelemetryArgs,
    testing::{FakeService, OtlpReceiver, ReceivedSpan, Script},
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn args(version: AppVersion, receiver: &OtlpReceiver) -> AppArgs {
    AppArgs {
        telemetry: TelemetryArgs::to(receiver.endpoint()),
        ..AppArgs::new(version)
    }
}

/// frontend v2 -> forecast v2 -> recommendation (real, or the URL given).
async fn chain(
    receiver: &OtlpReceiver,
    recommendation_url: Option<String>,
) -> (String, Vec<RunningServer>) {
    let mut servers = Vec::new();
    let rec_url = match recommendation_url {
        Some(u) => u,
        None => {
            let config = recommendation::Config {
                app: args(AppVersion::V1, receiver),
            };
            let rec = spawn_local(recommendation::app(&config, Health::default()))
                .await
                .unwrap();
            let u = rec.url();
            servers.push(rec);
            u
        }
    };
    let mut fc = forecast::Config::new(AppVersion::V2, rec_url);
    fc.app = args(AppVersion::V2, receiver);
    let forecast = spawn_local(forecast::app(&fc, Health::default()))
        .await
        .unwrap();
    let mut fe = frontend::Config::new(AppVersion::V2, forecast.url());
    fe.app = args(AppVersion::V2, receiver);
    let frontend = spawn_local(frontend::app(&fe, Health::default()))
        .await
        .unwrap();
    let url = frontend.url();
    servers.extend([forecast, frontend]);
    (url, servers)
}

fn by(spans: &[ReceivedSpan], service: &str, kind: i32) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.service == service && s.kind == kind)
        .cloned()
        .collect()
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_w3c_request_through_the_v2_chain_is_one_trace_in_the_receiver() {
    let receiver = OtlpReceiver::start().await;
    let (url, _servers) = chain(&receiver, None).await;
    let res = reqwest::Client::new()
        .get(format!("{url}/api/weather?city=beijing"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-weather-chain"],
        "frontend:v2,forecast:v2,recommendation:v1"
    );

    let spans = receiver.trace(TRACE, 5).await;
    let services: BTreeSet<(String, String)> = spans
        .iter()
        .map(|s| (s.service.clone(), s.version.clone()))
        .collect();
    assert_eq!(
        services,
        BTreeSet::from([
            ("forecast".into(), "v2".into()),
            ("frontend".into(), "v2".into()),
            ("recommendation".into(), "v1".into())
        ]),
        "{spans:#?}"
    );
    // The frontend's server span hangs under the caller's span ...
    let fe_server = &by(&spans, "frontend", SERVER)[0];
    assert_eq!(fe_server.parent_span_id, CALLER_SPAN);
    assert_eq!(fe_server.name, "GET /api/weather");
    assert_eq!(fe_server.attribute("http.route"), Some("/api/weather"));
    assert_eq!(
        fe_server.attribute("http.response.status_code"),
        Some("200")
    );
    // ... and every other span under a span of the same trace.
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for s in &spans {
        assert!(
            s.parent_span_id == CALLER_SPAN || ids.contains(s.parent_span_id.as_str()),
            "{s:?} has a parent outside the trace"
        );
    }
    // Each hop: the caller's client span is the callee's server span's parent.
    let fe_calls = by(&spans, "frontend", CLIENT);
    let fc_server = &by(&spans, "forecast", SERVER)[0];
    assert!(fe_calls.iter().any(|c| c.span_id == fc_server.parent_span_id && c.parent_span_id == fe_server.span_id));
    let fc_client = &by(&spans, "forecast", CLIENT)[0];
    let rec_server = &by(&spans, "recommendation", SERVER)[0];
    assert_eq!(rec_server.parent_span_id, fc_client.span_id);
    assert_eq!(fc_client.parent_span_id, fc_server.span_id);
    assert_eq!(rec_server.name, "GET /recommendation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_in_w3c_and_b3_out_with_request_id_and_user_agent_unchanged() {
    let receiver = OtlpReceiver::start().await;
    let rec =
        FakeService::start(Script::ok_json(r#"{"advice":[]}"#).with_chain("recommendation:v1"))
            .await;
    let (url, _servers) = chain(&receiver, Some(rec.url())).await;
    let ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0.0.0 Safari/537.36";
    let res = reqwest::Client::new()
        .get(format!("{url}/?city=london"))
        .header("x-b3-traceid", TRACE)
        .header("x-b3-spanid", CALLER_SPAN)
        .header("x-b3-sampled", "1")
        .header("x-request-id", "req-b3-1")
        .header("user-agent", ua)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = rec.requests();
    let h = &seen[0].1;
    assert_eq!(h["x-request-id"], "req-b3-1");
    assert_eq!(h["user-agent"], ua);
    // Both encodings carry the same trace, and a span of forecast as parent.
    let traceparent = h["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE}-")) && traceparent.ends_with("-01"),
        "{traceparent}"
    );
    assert_eq!(h["x-b3-traceid"], TRACE);
    let parent = &traceparent[36..52];
    assert_eq!(h["x-b3-spanid"], parent);
    assert_eq!(h["b3"], format!("{TRACE}-{parent}-1").as_str());
    let spans = receiver.trace(TRACE, 6).await;
    let fc_client = by(&spans, "forecast", CLIENT);
    assert_eq!(fc_client.len(), 1);
    assert_eq!(fc_client[0].span_id, parent);
    assert_eq!(
        by(&spans, "frontend", SERVER)[0].parent_span_id,
        CALLER_SPAN
    );
}
