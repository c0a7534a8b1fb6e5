//! The resilience lab through `weather up`: each of its six stages, switched
//! to as a user does, shows its lesson where a user looks for it: in
//! `istio_requests_total`'s `response_flags` on the admin listener, in the
//! version chains of the pages, and (for one stage, through the binary) in the
//! access log.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{client, get_text, up_with_admin};

/// `istio_requests_total` summed by (reporter, source, destination workload,
/// code, flags) for calls to `service`.
async fn flags(
    admin: &str,
    service: &str,
) -> BTreeMap<(String, String, String, String, String), u64> {
    let text = get_text(&format!("http://{admin}/stats/prometheus")).await;
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            line[start..start + line[start..].find('"').unwrap()].to_owned()
        };
        if label("destination_service_name") != service {
            continue;
        }
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let key = (
            label("reporter"),
            label("source_workload"),
            label("destination_workload"),
            label("response_code"),
            label("response_flags"),
        );
        *out.entry(key).or_default() += n;
    }
    out
}

/// The count of source-reported calls to `service` with `code` and `flags`.
fn sourced(
    m: &BTreeMap<(String, String, String, String, String), u64>,
    code: &str,
    flags: &str,
) -> u64 {
    m.iter()
        .filter(|((r, _, _, c, f), _)| r == "source" && c == code && f == flags)
        .map(|(_, n)| n)
        .sum()
}

/// `n` tester pages; the chain of each.
async fn tester_pages(ingress: std::net::SocketAddr, n: usize) -> Vec<String> {
    let http = client();
    let mut chains = Vec::new();
    for _ in 0..n {
        let res = http
            .get(format!("http://{ingress}/?city=london"))
            .header("cookie", "user=tester")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the page always comes");
        let chain = res
            .headers()
            .get(weather_core::chain::CHAIN_HEADER)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        chains.push(chain);
    }
    chains
}

async fn switch(admin: &str, stage: &str) -> String {
    let res = client()
        .post(format!("http://{admin}/stage/{stage}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "switch to {stage}");
    res.text().await.unwrap()
}

/// fault-delay, timeout and fault-abort: the caller's proxy answers for
/// recommendation (DI, UT, FI), the tester's page comes without its advice,
/// and an abort hits half the calls within a stated tolerance.
#[tokio::test]
async fn faults_and_timeouts_show_their_flags_and_the_page_still_comes() {
    let (running, server) = up_with_admin("multiservice").await;
    let admin = server.addr.to_string();
    let ingress = running.ingress;

    // A 2 s delay past forecast v2's own 1 s timeout: DI, advice unavailable.
    switch(&admin, "fault-delay").await;
    let chains = tester_pages(ingress, 3).await;
    assert!(
        chains.iter().all(|c| c == "frontend:v2,forecast:v2"),
        "{chains:?}"
    );
    weather_core::testing::eventually("the delayed calls are reported with DI", async || {
        // forecast gave up first: the client closed, so Envoy's flags are DI,DC.
        let m = flags(&admin, "recommendation").await;
        m.iter()
            .any(|((r, _, _, _, f), n)| r == "source" && f.starts_with("DI") && *n >= 3)
    })
    .await;

    // recommendation rolled to 1 s answers, the route's timeout 0.5 s: UT.
    let said = switch(&admin, "timeout").await;
    assert!(said.contains("rolled recommendation-v1"), "{said}");
    let chains = tester_pages(ingress, 3).await;
    assert!(
        chains.iter().all(|c| c == "frontend:v2,forecast:v2"),
        "{chains:?}"
    );
    let m = flags(&admin, "recommendation").await;
    assert_eq!(sourced(&m, "504", "UT"), 3, "{m:?}");

    // Half the calls aborted by the caller's proxy: FI, never reaching
    // recommendation. 200 calls: a fair coin's standard deviation is 7.1
    // calls, four of them 28 either way.
    switch(&admin, "fault-abort").await;
    let chains = tester_pages(ingress, 200).await;
    let aborted = chains
        .iter()
        .filter(|c| *c == "frontend:v2,forecast:v2")
        .count();
    let answered = chains
        .iter()
        .filter(|c| *c == "frontend:v2,forecast:v2,recommendation:v1")
        .count();
    assert_eq!(aborted + answered, 200, "{chains:?}");
    assert!(
        (72..=128).contains(&aborted),
        "{aborted} of 200 aborted, 100 ± 28 expected"
    );
    let m = flags(&admin, "recommendation").await;
    assert_eq!(sourced(&m, "503", "FI") as usize, aborted, "{m:?}");
    let reached: u64 = m
        .iter()
        .filter(|((r, ..), _)| r == "destination")
        .map(|(_, n)| n)
        .sum();
    // The aborted calls never reach it: its own proxy counts only the rest
    // (and the earlier stages' calls that reached it).
    assert!(reached >= answered as u64);
    running.shutdown().await;
    server.shutdown().await.unwrap();
}

/// retries: recommendation fails half its calls (its Deployment rolled with
/// FAULT_ERROR_RATE); the route retries each 5xx up to 3 times, so the
/// advice is there on most pages, calls that ran out of retries carry URX,
/// and recommendation's own proxy counts every attempt.
#[tokio::test]
async fn retries_hide_a_flaky_upstream_and_count_every_attempt() {
    let (running, server) = up_with_admin("retries").await;
    let admin = server.addr.to_string();
    let n = 120;
    let http = client();
    let mut with_advice = 0;
    for _ in 0..n {
        let page = http
            .get(format!("http://{}/?city=london", running.ingress))
            .header("cookie", "user=tester")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !page.contains("unavailable") {
            with_advice += 1;
        }
    }
    // 1 in 16 calls fails four times in a row: 7.5 of 120 expected; 4
    // standard deviations allow 18.
    assert!(
        with_advice >= n - 18,
        "advice on {with_advice} of {n} pages"
    );
    let m = flags(&admin, "recommendation").await;
    let ok = sourced(&m, "200", "-");
    let exhausted = sourced(&m, "500", "URX");
    assert_eq!(ok + exhausted, n as u64, "{m:?}");
    let attempts: u64 = m
        .iter()
        .filter(|((r, ..), _)| r == "destination")
        .map(|(_, n)| n)
        .sum();
    assert!(
        attempts > n as u64 + 60,
        "{attempts} attempts for {n} calls: {m:?}"
    );
    running.shutdown().await;
    server.shutdown().await.unwrap();
}

/// mirror: every page is v1's, and forecast v2 received as many copies as
/// forecast v1 served calls, reported by forecast v2's proxy alone.
#[tokio::test]
async fn a_mirror_sends_forecast_v2_a_copy_of_every_call() {
    let (running, server) = up_with_admin("mirror").await;
    let admin = server.addr.to_string();
    let http = client();
    let n = 40;
    for i in 0..n {
        let mut req = http.get(format!("http://{}/", running.ingress));
        if i % 2 == 0 {
            req = req.header("cookie", "user=tester");
        }
        let res = req.send().await.unwrap();
        let chain = res.headers()[weather_core::chain::CHAIN_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(chain, "frontend:v1,forecast:v1");
    }
    // The copies finish on their own time: wait for all of them.
    let mut last = BTreeMap::new();
    weather_core::testing::eventually("forecast v2 reports every copy", async || {
        last = flags(&admin, "forecast").await;
        let to = |reporter: &str, dest: &str| -> u64 {
            last.iter()
                .filter(|((r, s, d, c, _), _)| {
                    r == reporter && s == "frontend-v1" && d == dest && c == "200"
                })
                .map(|(_, n)| n)
                .sum()
        };
        // (At least one call per page: the frontend also asks for the
        // list of cities once.)
        let served = to("source", "forecast-v1");
        served >= n && to("destination", "forecast-v2") == served
    })
    .await;
    assert!(
        !last
            .keys()
            .any(|(r, _, d, ..)| r == "source" && d == "forecast-v2"),
        "the caller does not report the copies: {last:?}"
    );
    running.shutdown().await;
    server.shutdown().await.unwrap();
}

/// circuit-breaker: past one connection and one waiting request, calls to
/// recommendation overflow (503 UO, `x-envoy-overloaded`); three failures
/// in a row eject its pod (503 UH) until a later sweep.
#[tokio::test]
async fn the_circuit_breaker_overflows_under_load_and_ejects_a_failing_pod() {
    let (running, server) = up_with_admin("circuit-breaker").await;
    let admin = server.addr.to_string();
    let ingress = running.ingress;
    // Sixteen testers at once: forecast v2's sidecar holds one call to
    // recommendation in flight and one waiting; the rest overflow.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        tasks.push(tokio::spawn(async move { tester_pages(ingress, 4).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut m = BTreeMap::new();
    let limit = Duration::from_secs(30);
    weather_core::testing::eventually_within(
        "overflow and ejection both show",
        limit,
        async || {
            // Sequential calls find the pool free; half of them fail (500), and
            // two in a row eject the pod (in 6 calls on average).
            tester_pages(ingress, 2).await;
            m = flags(&admin, "recommendation").await;
            sourced(&m, "503", "UO") > 0 && sourced(&m, "503", "UH") > 0
        },
    )
    .await;
    running.shutdown().await;
    server.shutdown().await.unwrap();
}

/// The access log of `weather up` (the binary, as a user runs it) names each
/// hop's flags: an aborted call shows FI.
#[test]
fn the_access_log_shows_the_flags() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weather"))
        .args([
            "up",
            "--stage",
            "fault-abort",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--no-watch",
        ])
        .current_dir(crate::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("Open").map(|u| u.trim().to_owned()))
        .expect("weather up prints where it is open");
    let stderr = child.stderr.take().unwrap();
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\" 503 FI from=forecast-v2") {
                let _ = found_tx.send(line);
                return;
            }
        }
    });
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let mut found = None;
    for _ in 0..50 {
        http.get(&url)
            .header("cookie", "user=tester")
            .send()
            .unwrap();
        if let Ok(line) = found_rx.recv_timeout(Duration::from_millis(200)) {
            found = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let line = found.expect("an FI line in the access log");
    assert!(line.contains("to=recommendation|v1"), "{line}");
}

/// A stage's Deployment rolls its workload when the stage is applied, and
/// back when the next stage brings k8s/'s again; a change `weather up`
/// cannot roll (another image) is refused whole, the workload and the routes
/// in force staying.
#[tokio::test]
async fn workloads_roll_with_their_deployment_and_an_image_change_is_refused() {
    let (running, server) = up_with_admin("multiservice").await;
    let admin = server.addr.to_string();
    let full = "frontend:v2,forecast:v2,recommendation:v1";
    assert_eq!(tester_pages(running.ingress, 1).await, [full]);
    let said = switch(&admin, "timeout").await;
    assert!(said.contains("rolled recommendation-v1"), "{said}");
    assert_eq!(
        tester_pages(running.ingress, 1).await,
        ["frontend:v2,forecast:v2"],
        "recommendation now takes 1 s, past the route's 0.5 s"
    );
    let said = switch(&admin, "multiservice").await;
    assert!(said.contains("rolled recommendation-v1"), "{said}");
    assert_eq!(tester_pages(running.ingress, 1).await, [full]);

    let text = std::fs::read_to_string(crate::root().join("k8s/recommendation-v1.yaml")).unwrap();
    let other = text.replace(
        "image: weather/recommendation:v1",
        "image: weather/forecast:v1",
    );
    assert_ne!(other, text);
    let dir = crate::scratch("roll");
    std::fs::write(dir.join("recommendation-v1.yaml"), other).unwrap();
    let mut paths = crate::stage_paths("multiservice");
    paths.push(dir.clone());
    let refused = running.plane.switch(paths, None).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        refused.contains("Deployment recommendation-v1: its image, version or downstream changed: that needs a restart of weather up"),
        "{refused}"
    );
    assert_eq!(tester_pages(running.ingress, 1).await, [full]);
    running.shutdown().await;
    server.shutdown().await.unwrap();
}
