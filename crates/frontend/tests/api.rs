//! Black-box tests of the frontend, spawned on a free port in front of a real
//! forecast (and recommendation), or of a scripted forecast that fails or records.
//! One file per service keeps one test binary (link time); it is long for that.

use std::time::Duration;

use reqwest::{StatusCode, redirect::Policy};
use serde_json::Value;
use weather_core::{
    AppArgs, AppVersion, Health, RunningServer,
    server::spawn_local,
    testing::{FakeService, Script, assert_refused, closed_port_url},
};

struct App {
    url: String,
    http: reqwest::Client,
    _servers: Vec<RunningServer>,
}

struct Page {
    status: StatusCode,
    chain: String,
    set_cookie: Vec<String>,
    body: String,
}

impl App {
    async fn page(&self, req: reqwest::RequestBuilder) -> Page {
        let res = req.send().await.unwrap();
        Page {
            status: res.status(),
            chain: res
                .headers()
                .get("x-weather-chain")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            set_cookie: res
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.page(self.http.get(format!("{}{path}", self.url)))
            .await
    }

    async fn get_with(&self, path: &str, header: (&str, &str)) -> Page {
        self.page(
            self.http
                .get(format!("{}{path}", self.url))
                .header(header.0, header.1),
        )
        .await
    }

    async fn post_form(&self, path: &str, form: &str) -> Page {
        self.page(
            self.http
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_owned()),
        )
        .await
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// frontend `version` in front of `forecast_url`.
async fn frontend_at(version: AppVersion, forecast_url: String) -> App {
    let mut config = frontend::Config::new(version, forecast_url);
    config.forecast_timeout_ms = 500;
    let server = spawn_local(frontend::app(&config, Health::default()))
        .await
        .unwrap();
    App {
        url: server.url(),
        http: client(),
        _servers: vec![server],
    }
}

/// frontend `fe` -> forecast `fc` -> recommendation v1, all real.
async fn spawn_chain(fe: AppVersion, fc: AppVersion) -> App {
    let rec = spawn_local(recommendation::app(
        &recommendation::Config {
            app: AppArgs::new(AppVersion::V1),
        },
        Health::default(),
    ))
    .await
    .unwrap();
    let forecast = spawn_local(forecast::app(
        &forecast::Config::new(fc, rec.url()),
        Health::default(),
    ))
    .await
    .unwrap();
    let mut app = frontend_at(fe, forecast.url()).await;
    app._servers.extend([forecast, rec]);
    app
}

#[tokio::test]
async fn v1_serves_grey_buttons_and_the_v1_chain() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let page = app.get("/?city=shanghai").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.chain, "frontend:v1,forecast:v1");
    assert!(page.body.contains(r#"<body class="release-v1">"#));
    assert!(page.body.contains("<h1 id=\"today-title\">Shanghai"));
    assert!(
        page.body
            .contains(r#"<option value="shanghai" selected>Shanghai</option>"#)
    );
    assert_eq!(page.body.matches(" selected>").count(), 1);
    assert_eq!(page.body.matches(r#"<li class="day card">"#).count(), 5);
    assert!(!page.body.contains(r#"data-testid="advice""#));
    assert!(page.body.contains(
        r#"data-version="v1">frontend v1</span> → <span class="badge badge-v1" data-app="forecast""#
    ));
    // Both versions offer login: every anonymous visitor lands on v1.
    assert!(page.body.contains(r#"<form method="post" action="/login""#));
}

#[tokio::test]
async fn v2_serves_blue_buttons_the_advice_and_the_whole_v2_chain() {
    let app = spawn_chain(AppVersion::V2, AppVersion::V2).await;
    let page = app
        .get_with("/?city=london", ("cookie", "user=tester"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.chain, "frontend:v2,forecast:v2,recommendation:v1");
    assert!(page.body.contains(r#"<body class="release-v2">"#));
    assert!(page.body.contains(r#"data-testid="advice""#));
    assert!(page.body.contains("What to wear"));
    assert!(page.body.contains("Signed in as <strong>tester</strong>"));
    assert!(page.body.contains(r#"action="/logout""#));
}

#[tokio::test]
async fn the_stylesheet_makes_v1_buttons_grey_and_v2_buttons_blue() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let res = app
        .http
        .get(format!("{}/static/style.css", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
    let css = res.text().await.unwrap();
    let root = &css[css.find(":root").unwrap()..];
    assert!(root[..root.find('}').unwrap()].contains("--btn: #5f6368;"));
    let v2 = &css[css.find("body.release-v2").unwrap()..];
    assert!(v2[..v2.find('}').unwrap()].contains("--btn: #1a66d2;"));
    assert!(css.contains(".btn {") && css.contains("background: var(--btn);"));
    let icon = app
        .http
        .get(format!("{}/favicon.ico", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn login_sets_the_routing_cookie_and_logout_clears_it() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let res = app
        .http
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=tester")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/");
    assert_eq!(
        res.headers()["set-cookie"],
        "user=tester; Path=/; HttpOnly; SameSite=Lax"
    );

    let res = app
        .http
        .post(format!("{}/logout", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/");
    let cleared = res.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("user=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

/// Another site's page cannot log the user in or out (a form it posts here
/// carries its Origin, or Sec-Fetch-Site: cross-site); this site's page can.
#[tokio::test]
async fn login_and_logout_from_another_sites_page_are_refused() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let own = app.url.clone();
    let post = |path: &'static str, name: &'static str, value: String| {
        app.http
            .post(format!("{}{path}", app.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(name, value)
            .body("username=tester")
            .send()
    };
    for path in ["/login", "/logout"] {
        for (name, value) in [
            ("origin", "http://evil.example".to_owned()),
            ("origin", "null".to_owned()),
            ("sec-fetch-site", "cross-site".to_owned()),
        ] {
            let res = post(path, name, value.clone()).await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::FORBIDDEN,
                "{path} {name}: {value}"
            );
            assert!(
                res.headers().get("set-cookie").is_none(),
                "{path} {name}: {value}"
            );
            assert!(
                res.text()
                    .await
                    .unwrap()
                    .contains("only done from this site&#39;s own page"),
                "{path}"
            );
        }
        // The page's own form: same origin.
        let res = post(path, "origin", own.clone()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(res.headers().get("set-cookie").is_some());
    }
}

#[tokio::test]
async fn every_answer_says_nosniff() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    for path in [
        "/",
        "/api/weather?city=beijing",
        "/api/weather?city=nowhere",
        "/healthz",
        "/static/style.css",
    ] {
        let res = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
}

#[tokio::test]
async fn bad_usernames_are_a_400_page_that_sets_no_cookie() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let rows = [
        ("username=", "Enter a username"),
        ("", "Enter a username"),
        ("username=te+ster", "A username is 1 to 32 letters"),
        (
            "username=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "A username is 1 to 32 letters",
        ),
        ("username=a%3Bb%3Dc", "A username is 1 to 32 letters"),
        (
            &format!("username={}", "x".repeat(33)),
            "A username is 1 to 32 letters",
        ),
        (
            "username=%E5%90%8D%E5%AD%97",
            "A username is 1 to 32 letters",
        ),
        ("%%%&&&=", "Enter a username"),
    ];
    for (form, message) in rows {
        let page = app.post_form("/login", form).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{form}");
        assert!(page.set_cookie.is_empty(), "{form}: {:?}", page.set_cookie);
        assert!(page.body.contains(message), "{form}");
        assert!(
            !page.body.contains("<script>alert"),
            "markup reflected raw for {form}"
        );
    }
    let huge = app
        .post_form("/login", &format!("username={}", "x".repeat(100_000)))
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_user_is_read_from_a_cookie_header_a_browser_would_send() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    for cookie in [
        "user=tester",
        "grafana_session=4f1e; user=tester",
        "user=tester; kiali-token-nonce=abc; lang=en",
    ] {
        let page = app.get_with("/", ("cookie", cookie)).await;
        assert!(
            page.body.contains("Signed in as <strong>tester</strong>"),
            "{cookie}"
        );
    }
    let page = app
        .get_with("/", ("cookie", "myuser=tester; user=<b>"))
        .await;
    assert!(!page.body.contains("Signed in as"));
}

#[tokio::test]
async fn unknown_cities_are_a_404_page_that_reflects_no_markup() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let page = app.get("/?city=atlantis").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("We have no weather for “atlantis”"));
    assert_eq!(page.chain, "frontend:v1,forecast:v1");

    let page = app.get("/?city=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("City not found"));

    let page = app.get("/?city=paris&days=0").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body
            .contains("`days` must be a whole number from 1 to 7")
    );

    let page = app.get("/nowhere").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("There is no page here."));
}

#[tokio::test]
async fn api_weather_returns_the_page_data_as_json() {
    let app = spawn_chain(AppVersion::V2, AppVersion::V2).await;
    let res = app
        .http
        .get(format!("{}/api/weather?city=new-york", app.url))
        .header("cookie", "user=tester")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["x-weather-chain"],
        "frontend:v2,forecast:v2,recommendation:v1"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["city"]["id"], "new-york");
    assert_eq!(body["days"].as_array().unwrap().len(), 5);
    assert_eq!(body["recommendation"]["status"], "available");
    assert_eq!(body["user"], "tester");
    assert_eq!(
        body["served_by"],
        serde_json::json!(["frontend:v2", "forecast:v2", "recommendation:v1"])
    );

    let res = app
        .http
        .get(format!("{}/api/weather?city=atlantis", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("unknown city"));
}

#[tokio::test]
async fn forecast_down_or_failing_is_a_friendly_503() {
    let slow = FakeService::start(Script::ok_json("{}").delayed(Duration::from_secs(30))).await;
    let failing = FakeService::start(Script::status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let garbled = FakeService::start(Script::ok_json(r#"{"city":"?"}"#)).await;
    for url in [
        closed_port_url().await,
        slow.url(),
        failing.url(),
        garbled.url(),
    ] {
        let app = frontend_at(AppVersion::V1, url.clone()).await;
        let page = app.get("/?city=beijing").await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{url}");
        assert!(page.body.contains("The forecast is unavailable"), "{url}");
        assert!(page.body.contains("Please try again in a moment."));
        let res = app
            .http
            .get(format!("{}/api/weather?city=beijing", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = res.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("forecast is unavailable"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn chinese_by_accept_language_or_by_the_switch() {
    let app = spawn_chain(AppVersion::V2, AppVersion::V2).await;
    let page = app
        .get_with(
            "/?city=beijing",
            ("accept-language", "zh-CN,zh;q=0.9,en;q=0.8"),
        )
        .await;
    assert!(page.body.contains(r#"<html lang="zh-CN">"#));
    assert!(page.body.contains("北京"));
    assert!(page.body.contains("今日建议"));
    assert!(page.set_cookie.is_empty());

    let page = app.get("/?city=beijing&lang=zh").await;
    assert!(page.body.contains("天气预报"));
    assert_eq!(
        page.set_cookie,
        ["lang=zh; Path=/; Max-Age=31536000; SameSite=Lax"]
    );
    // The switch back points at English for the same city.
    assert!(
        page.body.contains(r#"href="/?city=beijing&#38;lang=en""#),
        "{}",
        &page.body[..2000]
    );

    let page = app.get_with("/?city=beijing", ("cookie", "lang=zh")).await;
    assert!(page.body.contains(r#"<html lang="zh-CN">"#));
    let page = app.get("/?city=beijing&lang=xx").await;
    assert!(page.body.contains(r#"<html lang="en">"#));
}

#[tokio::test]
async fn pages_load_nothing_from_outside_the_frontend() {
    let app = spawn_chain(AppVersion::V2, AppVersion::V2).await;
    let res = app
        .http
        .get(format!("{}/?city=tokyo", app.url))
        .send()
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    let body = res.text().await.unwrap();
    let css = app
        .http
        .get(format!("{}/static/style.css", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for text in [&body, &css] {
        assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
    }
}

#[tokio::test]
async fn headers_reach_forecast_and_a_request_id_is_made_at_the_edge() {
    let fake = FakeService::start(Script::ok_json("{}")).await;
    let app = frontend_at(AppVersion::V1, fake.url()).await;
    let ua = "Mozilla/5.0 (Linux; Android 14) Chrome/120.0 Mobile Safari/537.36";
    app.page(
        app.http
            .get(format!("{}/?city=beijing", app.url))
            .header("user-agent", ua)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("x-request-id", "req-1"),
    )
    .await;
    let forecast_call = fake
        .requests()
        .into_iter()
        .find(|(uri, _)| uri.starts_with("/forecast"))
        .expect("forecast was called");
    assert_eq!(forecast_call.0, "/forecast?city=beijing");
    assert_eq!(forecast_call.1["user-agent"], ua);
    assert_eq!(forecast_call.1["x-request-id"], "req-1");
    assert_eq!(
        forecast_call.1["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );

    app.get("/?city=beijing&days=3").await;
    let ids: Vec<String> = fake
        .requests()
        .iter()
        .filter(|(uri, _)| uri == "/forecast?city=beijing&days=3")
        .map(|(_, h)| h["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 36);
}

#[tokio::test]
async fn oversized_or_odd_headers_are_refused_without_harm() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let res = app
        .http
        .get(format!("{}/", app.url))
        .header("cookie", "x".repeat(512 * 1024))
        .send()
        .await;
    assert_refused(res, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // A cookie header that is not UTF-8 is simply no login.
    let page = app
        .page(app.http.get(format!("{}/", app.url)).header(
            "cookie",
            reqwest::header::HeaderValue::from_bytes(b"user=\xfftester").unwrap(),
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Signed in as"));
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

/// Writes `raw` on a new connection and reads the status line of the answer
/// (within 20 s).
async fn raw_status(url: &str, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole request is written.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while !out.windows(2).any(|w| w == b"\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer within 20 s to {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(80)])
    );
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or("").to_owned()
}

/// A login body is a few dozen bytes: one declared past 8 KiB is refused at
/// once, unread (a 413, not the 408 that waiting for its billion bytes would
/// give); one sent past it is refused too; one that stops coming is 408
/// after BODY_TIMEOUT_MS.
#[tokio::test]
async fn request_bodies_are_bounded_in_size_and_time() {
    // Logging in never asks forecast.
    let mut config = frontend::Config::new(AppVersion::V1, closed_port_url().await);
    config.app.body_timeout_ms = 300;
    let fe = spawn_local(frontend::app(&config, Health::default()))
        .await
        .unwrap();
    let login = |length: usize, body: &str| {
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n{body}"
        )
        .into_bytes()
    };
    let status = raw_status(&fe.url(), &login(1_000_000_000, "username=")).await;
    assert!(status.contains(" 413 "), "{status}");
    let big = format!("username={}", "a".repeat(9 * 1024));
    let chunked = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let status = raw_status(&fe.url(), chunked.as_bytes()).await;
    assert!(
        status.contains(" 413 "),
        "a chunked body past the limit: {status}"
    );
    let status = raw_status(&fe.url(), &login(100, "username=t")).await;
    assert!(status.contains(" 408 "), "a stalled body: {status}");
    let status = raw_status(&fe.url(), &login(15, "username=tester")).await;
    assert!(
        status.contains(" 303 "),
        "a whole login still logs in: {status}"
    );
}

/// Nothing the page sends comes near 2 KiB of query: past it, 400 (a 70 KB
/// `days=` made the frontend build a URL over 64 KiB and answer 503).
#[tokio::test]
async fn an_overlong_query_is_a_400() {
    let app = spawn_chain(AppVersion::V1, AppVersion::V1).await;
    let long = "9".repeat(3000);
    for path in [
        format!("/?city=beijing&days={long}"),
        format!("/api/weather?city=beijing&days={long}"),
    ] {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path:.40}");
        assert!(page.body.contains("query string is over"), "{}", page.body);
    }
    assert_eq!(
        app.get("/?city=beijing&days=3").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn standard_endpoints_answer() {
    let app = spawn_chain(AppVersion::V2, AppVersion::V2).await;
    let version: Value = app
        .http
        .get(format!("{}/version", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        version,
        serde_json::json!({"app": "frontend", "version": "v2"})
    );
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    app.get("/?city=beijing").await;
    let metrics = app.get("/metrics").await.body;
    assert!(metrics.contains(r#"http_requests_total{app="frontend",version="v2",method="GET",route="/",status="200"} 1"#), "{metrics}");
}
