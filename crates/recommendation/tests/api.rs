//! Black-box tests of the recommendation service, spawned on a free port.

use reqwest::StatusCode;
use serde_json::Value;
use weather_core::{
    AppVersion, Health,
    server::spawn_local,
    testing::{Process, assert_refused},
};

struct App {
    url: String,
    http: reqwest::Client,
    _server: weather_core::RunningServer,
}

async fn spawn_app() -> App {
    let config = recommendation::Config {
        app: weather_core::AppArgs::new(AppVersion::V1),
    };
    let server = spawn_local(recommendation::app(&config, Health::default()))
        .await
        .unwrap();
    App {
        url: server.url(),
        http: reqwest::Client::new(),
        _server: server,
    }
}

impl App {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn error_of(&self, path: &str) -> (StatusCode, String) {
        let res = self.get(path).await;
        let status = res.status();
        let body: Value = res.json().await.expect("errors are JSON");
        (
            status,
            body["error"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

const RAINY_WINTER: &str = "/recommendation?temp_min=-2&temp_max=4&condition=sleet&precip_chance=90&wind_kph=35&humidity=90&uv=1&aqi=160";

#[tokio::test]
async fn advice_covers_every_category_in_both_languages() {
    let app = spawn_app().await;
    let res = app.get(RAINY_WINTER).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-weather-chain"], "recommendation:v1");
    let body: Value = res.json().await.unwrap();
    let advice = body["advice"].as_array().unwrap();
    let codes: Vec<(&str, &str)> = advice
        .iter()
        .map(|a| (a["category"].as_str().unwrap(), a["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            ("clothing", "winter-coat"),
            ("umbrella", "snow"),
            ("activity", "indoors"),
            ("sun", "low"),
            ("air", "unhealthy"),
        ]
    );
    for a in advice {
        assert!(!a["text"]["en"].as_str().unwrap().is_empty());
        assert!(!a["text"]["zh"].as_str().unwrap().is_empty());
    }
    assert_eq!(body["feels_like_c"], -2.0);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_parameter() {
    let app = spawn_app().await;
    let rows = [
        ("/recommendation", "`temp_min` is required"),
        (
            "/recommendation?temp_min=1&temp_max=5",
            "`condition` is required",
        ),
        (
            "/recommendation?temp_min=abc&temp_max=5&condition=rain",
            "`temp_min` must be a number from -90 to 60",
        ),
        (
            "/recommendation?temp_min=9&temp_max=5&condition=rain",
            "`temp_min` must not be above `temp_max`",
        ),
        (
            "/recommendation?temp_min=1&temp_max=5&condition=%3Cscript%3E",
            "`condition` must be one of: sunny, partly-cloudy, cloudy, fog, haze, drizzle, rain, heavy-rain, thunderstorm, sleet, snow",
        ),
        (
            "/recommendation?temp_min=1&temp_max=5&condition=rain&uv=99",
            "`uv` must be a number from 0 to 20",
        ),
    ];
    for (path, message) in rows {
        assert_eq!(
            app.error_of(path).await,
            (StatusCode::BAD_REQUEST, message.to_owned()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn standard_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let version: Value = app.get("/version").await.json().await.unwrap();
    assert_eq!(
        version,
        serde_json::json!({"app": "recommendation", "version": "v1"})
    );
    app.get(RAINY_WINTER).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{app="recommendation",version="v1",method="GET",route="/recommendation",status="200"} 1"#),
        "{metrics}"
    );
    let (status, error) = app.error_of("/nope").await;
    assert_eq!(
        (status, error.as_str()),
        (StatusCode::NOT_FOUND, "no such route")
    );
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_service_carries_on() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}{RAINY_WINTER}", app.url))
        .header("x-big", "a".repeat(512 * 1024))
        .send()
        .await;
    assert_refused(res, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(app.get(RAINY_WINTER).await.status(), StatusCode::OK);
}

#[test]
fn the_binary_has_help_and_rejects_an_unknown_version() {
    let exe = env!("CARGO_BIN_EXE_recommendation");
    let help = std::process::Command::new(exe)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--port",
        "--app-version",
        "[env: APP_VERSION=]",
        "[env: PORT=]",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}: {text}");
    }
    let bad = std::process::Command::new(exe)
        .env("APP_VERSION", "v3")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("invalid value 'v3'") && err.contains("v1, v2"),
        "{err}"
    );
}

#[tokio::test]
async fn the_binary_serves_its_version_from_the_environment() {
    let p = Process::start(
        env!("CARGO_BIN_EXE_recommendation"),
        &[("APP_VERSION", "v2")],
    );
    let res = reqwest::get(format!("{}/version", p.url())).await.unwrap();
    assert_eq!(res.headers()["x-weather-chain"], "recommendation:v2");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["version"], "v2");
}
