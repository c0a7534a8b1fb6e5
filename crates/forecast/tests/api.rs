//! Black-box tests of the forecast service, spawned on a free port, with a real
//! recommendation service or a scripted one that fails, stalls or records.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use weather_core::{
    AppVersion, Health, RunningServer,
    server::spawn_local,
    testing::{FakeService, Process, Script, closed_port_url, eventually},
};

struct App {
    url: String,
    http: reqwest::Client,
    _servers: Vec<RunningServer>,
}

impl App {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> (StatusCode, String, Value) {
        let res = self.get(path).await;
        let status = res.status();
        let chain = res.headers()["x-weather-chain"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, chain, res.json().await.expect("JSON body"))
    }
}

/// forecast `version`, calling recommendation at `recommendation_url`.
async fn forecast_at(version: AppVersion, recommendation_url: String, timeout_ms: u64) -> App {
    let mut config = forecast::Config::new(version, recommendation_url);
    config.recommendation_timeout_ms = timeout_ms;
    let server = spawn_local(forecast::app(&config, Health::default()))
        .await
        .unwrap();
    App {
        url: server.url(),
        // Far above forecast's own timeout: the test waits for forecast, not a guess.
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        _servers: vec![server],
    }
}

/// forecast `version` with a real recommendation service behind it.
async fn spawn_chain(version: AppVersion) -> App {
    let rec_config = recommendation::Config {
        app: weather_core::AppArgs::new(AppVersion::V1),
    };
    let rec = spawn_local(recommendation::app(&rec_config, Health::default()))
        .await
        .unwrap();
    let mut app = forecast_at(version, rec.url(), 1000).await;
    app._servers.push(rec);
    app
}

#[tokio::test]
async fn v1_answers_the_forecast_without_recommendation() {
    let app = spawn_chain(AppVersion::V1).await;
    let (status, chain, body) = app.json("/forecast?city=beijing").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(chain, "forecast:v1");
    assert_eq!(body["city"]["id"], "beijing");
    assert_eq!(body["city"]["name_zh"], "北京");
    assert_eq!(body["days"].as_array().unwrap().len(), 5);
    assert!(body["current"]["temperature_c"].is_i64());
    assert!(body.get("recommendation").is_none(), "{body}");
}

#[tokio::test]
async fn v2_adds_the_advice_of_recommendation() {
    let app = spawn_chain(AppVersion::V2).await;
    let (status, chain, body) = app.json("/forecast?city=london&days=3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(chain, "forecast:v2,recommendation:v1");
    assert_eq!(body["days"].as_array().unwrap().len(), 3);
    let rec = &body["recommendation"];
    assert_eq!(rec["status"], "available");
    assert_eq!(rec["date"], body["days"][0]["date"]);
    let categories: Vec<&str> = rec["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        ["clothing", "umbrella", "activity", "sun", "air"]
    );
}

#[tokio::test]
async fn v2_still_answers_when_recommendation_is_down_slow_or_failing() {
    let slow = FakeService::start(Script::ok_json("{}").delayed(Duration::from_secs(30))).await;
    let failing = FakeService::start(Script::status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let garbled = FakeService::start(Script::ok_json("not json")).await;
    let rows = [
        (closed_port_url().await, "recommendation could not connect"),
        (slow.url(), "recommendation timed out after 300ms"),
        (
            failing.url(),
            "recommendation answered 500 Internal Server Error",
        ),
        (garbled.url(), "recommendation sent a malformed answer"),
    ];
    for (url, reason) in rows {
        let app = forecast_at(AppVersion::V2, url, 300).await;
        let (status, chain, body) = app.json("/forecast?city=tokyo").await;
        assert_eq!(status, StatusCode::OK, "{reason}");
        assert_eq!(body["days"].as_array().unwrap().len(), 5);
        assert_eq!(body["recommendation"]["status"], "unavailable");
        let got = body["recommendation"]["reason"].as_str().unwrap();
        assert!(
            got.starts_with(reason),
            "{got:?} should start with {reason:?}"
        );
        assert!(chain.starts_with("forecast:v2"), "{chain}");
    }
}

#[tokio::test]
async fn days_must_be_a_whole_number_from_1_to_7() {
    let app = spawn_chain(AppVersion::V1).await;
    for n in [1, 7] {
        let (status, _, body) = app.json(&format!("/forecast?city=paris&days={n}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["days"].as_array().unwrap().len(), n);
    }
    for bad in [
        "0",
        "8",
        "-1",
        "2.5",
        "abc",
        "",
        "99999999999999999999",
        "%3Cb%3E",
    ] {
        let (status, _, body) = app.json(&format!("/forecast?city=paris&days={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "days={bad}");
        assert_eq!(body["error"], "`days` must be a whole number from 1 to 7");
    }
}

#[tokio::test]
async fn unknown_or_missing_cities_are_clear_errors_that_reflect_no_markup() {
    let app = spawn_chain(AppVersion::V1).await;
    let (status, _, body) = app.json("/forecast?city=atlantis").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"],
        "unknown city `atlantis`; GET /cities lists the known ids"
    );
    let (status, _, body) = app
        .json("/forecast?city=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body["error"].as_str().unwrap().contains('<'), "{body}");
    let (status, _, body) = app.json("/forecast").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("`city` is required")
    );
}

#[tokio::test]
async fn cities_lists_at_least_twenty_with_ids_and_names() {
    let app = spawn_chain(AppVersion::V1).await;
    let (status, chain, body) = app.json("/cities").await;
    assert_eq!((status, chain.as_str()), (StatusCode::OK, "forecast:v1"));
    let cities = body.as_array().unwrap();
    assert!(cities.len() >= 20);
    for c in cities {
        let id = c["id"].as_str().unwrap();
        assert!(
            id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{id}"
        );
        assert!(!c["name"].as_str().unwrap().is_empty());
        assert!(!c["name_zh"].as_str().unwrap().is_empty());
    }
    for id in ["beijing", "shanghai", "shenzhen", "london", "new-york"] {
        assert!(cities.iter().any(|c| c["id"] == id), "{id} missing");
    }
}

#[tokio::test]
async fn the_same_request_gives_the_same_forecast_within_a_day() {
    let app = spawn_chain(AppVersion::V1).await;
    let (_, _, a) = app.json("/forecast?city=sydney&days=7").await;
    let (_, _, b) = app.json("/forecast?city=sydney&days=7").await;
    assert_eq!(a["days"], b["days"]);
}

/// Without a trace exporter, forecast passes the caller's trace context through
/// unchanged, in W3C and B3 alike, so the sidecars' spans still form one trace;
/// the request id and user-agent are copied as they came, the cookie never.
#[tokio::test]
async fn tracing_and_routing_headers_reach_recommendation_unchanged() {
    let rec =
        FakeService::start(Script::ok_json(r#"{"advice":[]}"#).with_chain("recommendation:v1"))
            .await;
    let app = forecast_at(AppVersion::V2, rec.url(), 1000).await;
    let sent = [
        ("x-request-id", "7d1c6f3e-5a8b-4c2d-9e0f-1a2b3c4d5e6f"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "vendor=opaque"),
        ("baggage", "user.tier=gold"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.6099.71 Safari/537.36",
        ),
    ];
    let mut req = app.http.get(format!("{}/forecast?city=seoul", app.url));
    for (k, v) in sent {
        req = req.header(k, v);
    }
    let res = req.header("cookie", "user=tester").send().await.unwrap();
    assert_eq!(
        res.headers()["x-weather-chain"],
        "forecast:v2,recommendation:v1"
    );
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    let (uri, headers) = &seen[0];
    assert!(uri.starts_with("/recommendation?temp_min="), "{uri}");
    for (k, v) in sent {
        assert_eq!(headers.get(k).map(|h| h.to_str().unwrap()), Some(v), "{k}");
    }
    // The same context in B3, single and multi header, for Envoy's Zipkin tracer.
    assert_eq!(headers["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(headers["x-b3-spanid"], "00f067aa0ba902b7");
    assert_eq!(headers["x-b3-sampled"], "1");
    assert_eq!(
        headers["b3"],
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"
    );
    assert!(headers.get("cookie").is_none(), "cookies are not forwarded");
}

#[tokio::test]
async fn a_request_id_is_made_when_the_caller_sent_none() {
    let rec = FakeService::start(Script::ok_json(r#"{"advice":[]}"#)).await;
    let app = forecast_at(AppVersion::V2, rec.url(), 1000).await;
    app.get("/forecast?city=seoul").await;
    let seen = rec.requests();
    let id = seen[0].1["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
}

/// Kubernetes sends SIGTERM: readiness turns 503, the request in flight still
/// gets its answer, and the process exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let slow = FakeService::start(
        Script::ok_json(r#"{"advice":[]}"#)
            .with_chain("recommendation:v1")
            .delayed(Duration::from_millis(1500)),
    )
    .await;
    let mut p = Process::start(
        env!("CARGO_BIN_EXE_forecast"),
        &[
            ("APP_VERSION", "v2"),
            ("RECOMMENDATION_URL", &slow.url()),
            ("RECOMMENDATION_TIMEOUT_MS", "10000"),
            ("SHUTDOWN_DELAY_MS", "700"),
        ],
    );
    let http = reqwest::Client::new();
    let url = p.url();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = url.clone();
        async move {
            http.get(format!("{url}/forecast?city=beijing"))
                .send()
                .await
        }
    });
    // Wait until the request has reached recommendation, so it is truly in flight.
    eventually("the request to reach recommendation", async || {
        !slow.requests().is_empty()
    })
    .await;
    assert_eq!(
        http.get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    p.terminate();
    eventually("readiness to turn 503 after SIGTERM", async || {
        let res = http
            .get(format!("{url}/readyz"))
            .header("connection", "close")
            .send()
            .await;
        matches!(res, Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    let res = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["recommendation"]["status"], "available");
    let status = tokio::task::spawn_blocking(move || p.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the process exits after draining");
    assert!(status.success(), "exit status {status}");
}

/// The failure switches, read from the environment as on a cluster: every
/// forecast answered 500, health, readiness and version untouched.
#[tokio::test]
async fn fault_error_rate_one_fails_every_forecast_and_nothing_else() {
    let p = Process::start(
        env!("CARGO_BIN_EXE_forecast"),
        &[("APP_VERSION", "v2"), ("FAULT_ERROR_RATE", "1")],
    );
    let http = reqwest::Client::new();
    let url = p.url();
    for _ in 0..5 {
        let res = http
            .get(format!("{url}/forecast?city=beijing"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["x-weather-chain"], "forecast:v2");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "injected fault (FAULT_ERROR_RATE)");
    }
    for path in ["/healthz", "/readyz", "/version", "/metrics"] {
        let res = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
}

#[test]
fn a_fault_rate_outside_zero_to_one_is_refused_at_start() {
    for bad in ["1.5", "-0.1", "often"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_forecast"))
            .env("FAULT_ERROR_RATE", bad)
            .env("PORT", "0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--fault-error-rate") && err.contains("from 0 to 1"),
            "{bad}: {err}"
        );
    }
}

/// FAULT_DELAY_MS holds every forecast that long (tokio's clock is paused, so
/// the test measures the delay asked for, not the machine).
#[tokio::test(start_paused = true)]
async fn fault_delay_holds_each_forecast_and_not_the_probes() {
    use tower::ServiceExt;
    let mut config = forecast::Config::new(AppVersion::V1, "http://127.0.0.1:1");
    config.app.fault.fault_delay_ms = 5_000;
    let app = forecast::app(&config, Health::default());
    let get = |path: &str| {
        axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let start = tokio::time::Instant::now();
    let res = app
        .clone()
        .oneshot(get("/forecast?city=beijing"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(5_000));
    let start = tokio::time::Instant::now();
    let res = app.oneshot(get("/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(start.elapsed() < Duration::from_millis(5_000));
}

/// A delayed request waits as a slow network would, holding no turn: twice
/// as many delayed requests as may be in flight all answer after one delay,
/// not two (tokio's clock is paused, so this is the delay's arithmetic, not
/// the machine's speed).
#[tokio::test(start_paused = true)]
async fn delayed_requests_do_not_hold_a_turn() {
    use tower::ServiceExt;
    let mut config = forecast::Config::new(AppVersion::V1, "http://127.0.0.1:1");
    config.app.fault.fault_delay_ms = 5_000;
    let app = forecast::app(&config, Health::default());
    let start = tokio::time::Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..2 * weather_core::server::layers::MAX_IN_FLIGHT {
        let req = axum::http::Request::get("/forecast?city=beijing")
            .body(axum::body::Body::empty())
            .unwrap();
        all.spawn(app.clone().oneshot(req));
    }
    while let Some(res) = all.join_next().await {
        assert_eq!(res.unwrap().unwrap().status(), StatusCode::OK);
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(5_000) && elapsed < Duration::from_millis(10_000),
        "{elapsed:?}"
    );
}

/// A client that sends half a request and waits does not hold the process:
/// after SIGTERM it exits within its drain window (DRAIN_TIMEOUT_MS), as a pod
/// must before its grace period ends.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_within_the_drain_window_with_a_half_sent_request_open() {
    use tokio::io::AsyncWriteExt;
    let mut p = Process::start(
        env!("CARGO_BIN_EXE_forecast"),
        &[("SHUTDOWN_DELAY_MS", "100"), ("DRAIN_TIMEOUT_MS", "500")],
    );
    let addr = p.url().trim_start_matches("http://").to_owned();
    let mut half = tokio::net::TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /forecast?city=beijing HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    p.terminate();
    let status = tokio::task::spawn_blocking(move || p.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("forecast exits after SIGTERM although a client holds a half-sent request");
    assert!(status.success(), "{status}");
    drop(half);
}
