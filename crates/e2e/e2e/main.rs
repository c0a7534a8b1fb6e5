//! The release's promise end to end, through the real binaries: a tester who
//! logs in through the ingress of `weather up` is routed onto the v2 chain
//! (blue buttons, advice), an anonymous visitor onto v1 (grey, none); and the
//! service binaries, configured only by their environment, serve each chain.

mod browser;
mod prometheus;
mod tracing;

use std::time::Duration;

use reqwest::{StatusCode, redirect::Policy};
use weather_core::testing::Process;
use weather_e2e::{WeatherUp, binary};

struct Release {
    v1: Process,
    v2: Process,
    _rest: Vec<Process>,
}

/// recommendation v1; forecast v1 and v2; frontend v1 -> forecast v1 and
/// frontend v2 -> forecast v2 -> recommendation: the multiservice release with
/// the routing done by wiring instead of by a mesh.
fn start_release() -> Release {
    let exe = |n: &str| binary(n).to_string_lossy().into_owned();
    let rec = Process::start(&exe("recommendation"), &[]);
    let fc1 = Process::start(&exe("forecast"), &[("APP_VERSION", "v1")]);
    let fc2 = Process::start(
        &exe("forecast"),
        &[("APP_VERSION", "v2"), ("RECOMMENDATION_URL", &rec.url())],
    );
    let v1 = Process::start(
        &exe("frontend"),
        &[("APP_VERSION", "v1"), ("FORECAST_URL", &fc1.url())],
    );
    let v2 = Process::start(
        &exe("frontend"),
        &[("APP_VERSION", "v2"), ("FORECAST_URL", &fc2.url())],
    );
    Release {
        v1,
        v2,
        _rest: vec![rec, fc1, fc2],
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

type Answer = Result<reqwest::Response, reqwest::Error>;

/// The v1 chain's page: grey release, no advice.
async fn assert_v1_page(res: Answer) {
    let res = res.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-weather-chain"], "frontend:v1,forecast:v1");
    let body = res.text().await.unwrap();
    assert!(body.contains(r#"<body class="release-v1">"#));
    assert!(!body.contains(r#"data-testid="advice""#));
}

/// The whole v2 chain's page for a signed-in tester: blue release and advice.
async fn assert_v2_tester_page(res: Answer) {
    let res = res.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["x-weather-chain"],
        "frontend:v2,forecast:v2,recommendation:v1"
    );
    let body = res.text().await.unwrap();
    assert!(body.contains(r#"<body class="release-v2">"#));
    assert!(body.contains(r#"data-testid="advice""#));
    assert!(body.contains("Signed in as <strong>tester</strong>"));
}

#[tokio::test]
async fn a_tester_logs_in_through_the_ingress_and_then_sees_the_whole_v2_chain() {
    let up = WeatherUp::start("multiservice");
    let http = client();

    let anon = http
        .get(format!("{}/?city=shenzhen", up.url))
        .header("cookie", "_ga=GA1.1.42; lang=en")
        .send()
        .await;
    assert_v1_page(anon).await;

    // Logging in is served by v1, where every anonymous visitor lands.
    let login = http
        .post(format!("{}/login", up.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=tester")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["x-weather-chain"], "frontend:v1");
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(pair, "user=tester");

    // The same ingress, the browser's cookies now holding the pair.
    let tester = http
        .get(format!("{}/?city=shenzhen", up.url))
        .header("cookie", format!("_ga=GA1.1.42; {pair}; lang=en"))
        .send()
        .await;
    assert_v2_tester_page(tester).await;
}

#[tokio::test]
async fn the_binaries_configured_by_their_environment_serve_each_chain() {
    let r = start_release();
    let http = client();

    let anon = http
        .get(format!("{}/?city=shenzhen", r.v1.url()))
        .send()
        .await;
    assert_v1_page(anon).await;

    let tester = http
        .get(format!("{}/?city=shenzhen", r.v2.url()))
        .header("cookie", "_ga=GA1.1.42; user=tester; lang=en")
        .send()
        .await;
    assert_v2_tester_page(tester).await;

    let api: serde_json::Value = http
        .get(format!("{}/api/weather?city=shenzhen", r.v2.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["recommendation"]["status"], "available");
}

#[tokio::test]
async fn frontend_drains_and_exits_zero_on_sigterm() {
    let mut r = start_release();
    let http = client();
    assert_eq!(
        http.get(format!("{}/readyz", r.v2.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    r.v2.terminate();
    let status = tokio::task::spawn_blocking(move || r.v2.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("frontend exits after SIGTERM");
    assert!(status.success(), "{status}");
}
