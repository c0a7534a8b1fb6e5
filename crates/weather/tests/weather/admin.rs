//! The admin listener against what a hostile page or client sends: requests
//! for another name (DNS rebinding), bodies past their bounds, and any stage
//! name or `/apply` body (fuzzed): a clear 4xx, the release in force kept
//! whole, never a 500.

use proptest::{prelude::*, test_runner::TestRunner};
use reqwest::{Client, StatusCode};

use crate::{client, get_json, shipped_text, stages, up_with_admin as up};

/// DNS rebinding: a page of another site whose name now resolves to this
/// machine sends its own name as `Host` and `Origin`. Nothing answers it, reads
/// included, and the stage stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_name_reaches_nothing_on_the_admin_listener() {
    let (running, admin) = up("multiservice").await;
    let base = format!("http://{}", admin.addr);
    let rebound = format!("rebind.example:{}", admin.addr.port());
    let http = client();
    for (method, path) in [
        ("POST", "/stage/all-v1"),
        ("POST", "/apply"),
        ("GET", "/stage"),
        ("GET", "/"),
        ("GET", "/stats/prometheus"),
        ("GET", "/no-such-page"),
    ] {
        let res = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("host", &rebound)
            .header("origin", format!("http://{rebound}"))
            .header("content-type", "application/yaml")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "{method} {path}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("rebind.example"),
            "{body}"
        );
    }
    let stage = get_json(&format!("{base}/stage")).await;
    assert_eq!(stage["stage"], "multiservice");
    // The names that mean this machine still reach it.
    let res = http
        .get(format!("http://localhost:{}/stage", admin.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

/// `/apply` takes a bounded body: too large is 413 before it is read, one that
/// stops coming is 408; neither changes what is in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_bounds_bodies_in_size_and_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (running, admin) = up("multiservice").await;
    let base = format!("http://{}", admin.addr);
    let res = client()
        .post(format!("{base}/apply"))
        .header("content-type", "application/yaml")
        .body(vec![b'#'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Declares ten bytes and sends none: answered, then closed.
    let mut conn = tokio::net::TcpStream::connect(admin.addr).await.unwrap();
    let head = format!(
        "POST /apply HTTP/1.1\r\nHost: {}\r\nContent-Type: application/yaml\r\nContent-Length: 10\r\n\r\n",
        admin.addr
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let stage = get_json(&format!("{base}/stage")).await;
    assert_eq!(stage["stage"], "multiservice");
    assert!(stage["overlay"].is_null(), "{stage}");
    assert_eq!(stage["reloads"]["applied"], 0, "{stage}");
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

/// Cases per property: a few seconds in the test command,
/// `WEATHER_FUZZ_CASES` for a longer campaign.
fn cases(default: u32) -> u32 {
    std::env::var("WEATHER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Any stage name, percent-encoded into the path as a browser would send it,
/// and any body for `/apply` (a shipped manifest cut, spliced or with bytes
/// replaced): answered 200 or a 4xx that says why, never a 500; what is in
/// force afterwards is a shipped stage, and the ingress routes.
#[test]
fn any_stage_name_or_apply_body_is_applied_whole_or_refused_clearly() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (running, admin) = rt.block_on(up("multiservice"));
    let base = admin.url();
    let http = client();
    let known = stages();
    let ingress = format!("http://{}/", running.ingress);
    let check_in_force = |http: &Client| {
        rt.block_on(async {
            let stage = get_json(&format!("{base}/stage")).await;
            let name = stage["stage"].as_str().unwrap_or_default().to_owned();
            let routed = http.get(&ingress).send().await.unwrap().status();
            (name, routed)
        })
    };

    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases(300)));
    let names = prop_oneof![
        ".{0,24}",
        "[a-z0-9./%-]{0,24}",
        prop::sample::select(vec![
            "..",
            "../..",
            "%2e%2e",
            "..%2f..%2fetc",
            "all-v1/../multiservice",
            "all-v1%00",
            "ALL-V1",
            " all-v1",
            "all-v1 ",
            "stages",
            "",
            "base",
            "security",
        ])
        .prop_map(str::to_owned),
    ];
    runner
        .run(&names, |name| {
            let path: String = form_urlencoded::byte_serialize(name.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            let res = rt.block_on(http.post(format!("{base}/stage/{path}")).send());
            let Ok(res) = res else { return Ok(()) };
            let status = res.status();
            prop_assert!(
                status == StatusCode::OK || status.is_client_error(),
                "POST /stage/{}: {}",
                path,
                status
            );
            if status.is_client_error() {
                let text = rt.block_on(res.text()).unwrap_or_default();
                prop_assert!(
                    !text.trim().is_empty(),
                    "POST /stage/{}: {} without a word",
                    path,
                    status
                );
            }
            let (in_force, routed) = check_in_force(&http);
            prop_assert!(
                known.contains(&in_force),
                "{} in force after {:?}",
                in_force,
                name
            );
            prop_assert!(
                routed.is_success(),
                "the ingress answers {} after {:?}",
                routed,
                name
            );
            Ok(())
        })
        .unwrap();

    let texts: Vec<String> = ["multiservice", "all-v1", "forecast-50-50"]
        .iter()
        .map(|s| shipped_text(s))
        .collect();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(cases(200)));
    let bodies = (
        0usize..3,
        0usize..12_000,
        0usize..60,
        prop::sample::select(vec![
            "",
            ":",
            "\n",
            "- ",
            "{",
            "[",
            "*a",
            "&a ",
            "!!binary ",
            "\t",
            "'",
            "~",
            "<<: *a",
            "\u{0}",
            "kind: Namespace\n",
        ]),
        ".{0,20}",
    );
    runner
        .run(&bodies, |(file, cut, len, insert, junk)| {
            let text = &texts[file];
            let mut at = cut.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + len).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let body = format!("{}{insert}{junk}{}", &text[..at], &text[end..]);
            let res = rt
                .block_on(
                    http.post(format!("{base}/apply?label=fuzz"))
                        .header("content-type", "application/yaml")
                        .body(body)
                        .send(),
                )
                .unwrap();
            let status = res.status();
            prop_assert!(
                status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
                "/apply: {}",
                status
            );
            let answer: serde_json::Value = rt.block_on(res.json()).unwrap();
            prop_assert!(
                answer.get("applied").is_some()
                    || answer["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{}",
                answer
            );
            let (_, routed) = check_in_force(&http);
            prop_assert!(
                routed.is_success() || routed == StatusCode::NOT_FOUND,
                "the ingress answers {}",
                routed
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        admin.shutdown().await.unwrap();
        running.shutdown().await;
    });
}
