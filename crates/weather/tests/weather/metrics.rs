//! Istio's standard metrics from the local data plane, read as a cluster's
//! Prometheus reads them (`GET /stats/prometheus` on the admin listener): the
//! edges of each chain with both reporters and the counts sent, a stage switch
//! showing at once in the metrics and on the live page, and the page's writes
//! refused from another origin.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use weather::dataplane;

use crate::{client, get_json, get_text, up_with_admin as up};

/// (reporter, source_workload, destination_workload, response_code).
type Edge = (String, String, String, String);

/// The labels of one exposition line: `name{a="x",b="y"} 3`.
fn labels(line: &str) -> BTreeMap<String, String> {
    let inner = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
    let mut out = BTreeMap::new();
    let mut rest = inner;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(name.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// `istio_requests_total` by edge, scraped from the admin listener.
async fn requests(admin: &str) -> BTreeMap<Edge, u64> {
    let text = get_text(&format!("http://{admin}/stats/prometheus")).await;
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        let l = labels(line);
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let key = (
            l["reporter"].clone(),
            l["source_workload"].clone(),
            l["destination_workload"].clone(),
            l["response_code"].clone(),
        );
        *out.entry(key).or_default() += n;
    }
    out
}

/// Scrapes until `done` holds (10 s at most): a hop reports an exchange when
/// the response's last byte is sent, which can be a moment after the client
/// has read it, as with Envoy.
async fn scrape_until(
    admin: &str,
    what: &str,
    done: impl Fn(&BTreeMap<Edge, u64>) -> bool,
) -> BTreeMap<Edge, u64> {
    let mut last = BTreeMap::new();
    weather_core::testing::eventually(what, async || {
        last = requests(admin).await;
        done(&last)
    })
    .await;
    last
}

/// The metrics once every request sent so far through the ingress (`sent`)
/// is reported by both sides of its first hop.
async fn settled(admin: &str, sent: u64) -> BTreeMap<Edge, u64> {
    scrape_until(admin, "the ingress's requests to be reported", |m| {
        ["source", "destination"].iter().all(|r| {
            let n: u64 = m
                .iter()
                .filter(|(k, _)| k.0 == *r && k.1 == "istio-ingressgateway")
                .map(|(_, n)| n)
                .sum();
            n == sent
        })
    })
    .await
}

/// What changed between two scrapes: only the series that grew.
fn grown(before: &BTreeMap<Edge, u64>, after: &BTreeMap<Edge, u64>) -> BTreeMap<Edge, u64> {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect()
}

fn edge(reporter: &str, from: &str, to: &str) -> Edge {
    (reporter.into(), from.into(), to.into(), "200".into())
}

/// Sends `n` page requests through the ingress with `cookie`, all answered 200.
async fn visit(ingress: std::net::SocketAddr, cookie: &str, n: u64) {
    let http = client();
    for _ in 0..n {
        let res = http
            .get(format!("http://{ingress}/?city=paris"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

const ANONYMOUS: &str = "_ga=GA1.1.42; lang=en";
const TESTER: &str = "_ga=GA1.1.42; user=tester; lang=en";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_mixed_traffic_the_metrics_show_each_chains_edges_with_both_reporters_and_the_counts_sent()
 {
    let (running, admin) = up("multiservice").await;
    let admin_addr = admin.addr.to_string();
    // One visit each first: a frontend fetches the city list once and keeps it.
    visit(running.ingress, ANONYMOUS, 1).await;
    visit(running.ingress, TESTER, 1).await;
    let before = settled(&admin_addr, 2).await;

    let (anonymous, testers) = (37, 23);
    visit(running.ingress, ANONYMOUS, anonymous).await;
    visit(running.ingress, TESTER, testers).await;
    let after = settled(&admin_addr, 2 + anonymous + testers).await;

    let mut expected = BTreeMap::new();
    for reporter in ["source", "destination"] {
        for (from, to, n) in [
            ("istio-ingressgateway", "frontend-v1", anonymous),
            ("frontend-v1", "forecast-v1", anonymous),
            ("istio-ingressgateway", "frontend-v2", testers),
            ("frontend-v2", "forecast-v2", testers),
            ("forecast-v2", "recommendation-v1", testers),
        ] {
            expected.insert(edge(reporter, from, to), n);
        }
    }
    assert_eq!(grown(&before, &after), expected);

    // istio/security is in force (STRICT mTLS): each destination reports
    // mutual TLS and the two identities, as Kiali's security view reads them.
    let text = get_text(&format!("http://{admin_addr}/stats/prometheus")).await;
    let spiffe = |ns: &str, sa: &str| format!("spiffe://cluster.local/ns/{ns}/sa/{sa}");
    let ingress = spiffe("istio-system", "istio-ingressgateway-service-account");
    for (from, to, source_principal, destination_principal) in [
        (
            "istio-ingressgateway",
            "frontend-v1",
            ingress.clone(),
            spiffe("weather", "frontend"),
        ),
        (
            "frontend-v2",
            "forecast-v2",
            spiffe("weather", "frontend"),
            spiffe("weather", "forecast"),
        ),
        (
            "forecast-v2",
            "recommendation-v1",
            spiffe("weather", "forecast"),
            spiffe("weather", "recommendation"),
        ),
    ] {
        let reported: Vec<BTreeMap<String, String>> = text
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .map(labels)
            .filter(|l| l["source_workload"] == from && l["destination_workload"] == to)
            .collect();
        let security = |reporter: &str| {
            reported
                .iter()
                .filter(|l| l["reporter"] == reporter)
                .map(|l| {
                    (
                        l["connection_security_policy"].clone(),
                        l["source_principal"].clone(),
                        l["destination_principal"].clone(),
                    )
                })
                .collect::<BTreeSet<_>>()
        };
        assert_eq!(
            security("destination"),
            BTreeSet::from([(
                "mutual_tls".to_owned(),
                source_principal.clone(),
                destination_principal.clone()
            )]),
            "{from} -> {to}"
        );
        assert_eq!(
            security("source"),
            BTreeSet::from([(
                "unknown".to_owned(),
                source_principal,
                destination_principal
            )]),
            "{from} -> {to}"
        );
    }
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_switch_shows_in_the_metrics_and_on_the_page_at_once() {
    let (running, admin) = up("multiservice").await;
    let admin_addr = admin.addr.to_string();
    let http = client();
    visit(running.ingress, TESTER, 1).await;
    settled(&admin_addr, 1).await;
    let panel = get_text(&format!("http://{admin_addr}/panel")).await;
    assert!(panel.contains(r#"<span id="stage">multiservice</span>"#));
    assert!(panel.contains(r#"data-from="istio-ingressgateway" data-to="frontend v2""#));
    assert!(!panel.contains(r#"data-to="frontend v1""#), "{panel}");

    let switched = http
        .post(format!("http://{admin_addr}/stage/all-v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), StatusCode::OK);
    let before = settled(&admin_addr, 1).await;
    visit(running.ingress, TESTER, 10).await;
    let grew = grown(&before, &settled(&admin_addr, 11).await);
    let from_ingress = |to: &str| {
        grew.get(&edge("source", "istio-ingressgateway", to))
            .copied()
    };
    assert_eq!(from_ingress("frontend-v1"), Some(10), "{grew:?}");
    assert_eq!(from_ingress("frontend-v2"), None, "{grew:?}");

    let page = http
        .get(format!("http://{admin_addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"<span id="stage">all-v1</span>"#));
    assert!(page.contains(r#"data-from="istio-ingressgateway" data-to="frontend v1""#));
    assert!(page.contains(r#"data-from="frontend v1" data-to="forecast v1""#));
    // The tester's requests since the switch are in the matrix, on v1.
    assert!(page.contains("frontend:v1,forecast:v1"), "{page}");
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_switch_from_another_origin_is_refused_and_changes_nothing() {
    let (running, admin) = up("multiservice").await;
    let base = format!("http://{}", admin.addr);
    let http = client();
    let stage = || async {
        get_json(&format!("{base}/stage")).await["stage"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let res = http
            .post(format!("{base}/stage/all-v1"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert_eq!(stage().await, "multiservice");
    }
    // A form's content type, which another site's page can send even
    // without an Origin.
    for form in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ] {
        let res = http
            .post(format!("{base}/stage/all-v1"))
            .header("content-type", form)
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{form}");
        assert_eq!(stage().await, "multiservice");
    }
    // The page's own buttons: same origin.
    let res = http
        .post(format!("{base}/stage/all-v1"))
        .header("origin", &base)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(stage().await, "all-v1");
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

/// A body the frontend refuses before reading it (413 on its declared
/// length) reaches the client as the frontend's 413, every time, and is
/// counted so: not an upstream reset (503 `UC`). A client that does not wait
/// for `100 Continue` has sent much of the body when the answer comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_frontend_refuses_early_reaches_the_client_as_its_413() {
    let (running, admin) = up("multiservice").await;
    let http = client();
    let body = vec![b'a'; 2_000_009];
    for i in 0..10 {
        let res = http
            .post(format!("http://{}/login", running.ingress))
            .header("content-type", "text/plain")
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(res.headers()["x-weather-chain"], "frontend:v1");
    }
    let text = get_text(&format!("http://{}/stats/prometheus", admin.addr)).await;
    let refused: u64 = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| {
            let l = labels(l);
            l["reporter"] == "source"
                && l["destination_workload"] == "frontend-v1"
                && l["response_code"] == "413"
                && l["response_flags"] == "-"
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(refused, 10, "{text}");
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

/// The ingress routes only requests carrying `x-canary`; others get 404 `NR`.
const CANARY_ONLY: &str = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: frontend-route
  namespace: weather
spec:
  hosts: [\"*\"]
  gateways: [istio-system/weather-gateway]
  http:
    - match:
        - headers:
            x-canary: {exact: \"1\"}
      route:
        - destination: {host: frontend, subset: v2}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_ingress_cannot_route_is_reported_by_the_source_alone() {
    let dir = crate::scratch("metrics-no-route");
    std::fs::write(dir.join("frontend.yaml"), CANARY_ONLY).unwrap();
    let root = crate::root();
    let multiservice = root.join("istio/stages/multiservice");
    let paths = vec![
        root.join("k8s"),
        root.join("istio/base"),
        multiservice.join("forecast.yaml"),
        multiservice.join("recommendation.yaml"),
        dir.clone(),
    ];
    let running = dataplane::start(dataplane::Options::local(paths, None))
        .await
        .unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let admin = weather::admin::serve(any, running.plane.clone())
        .await
        .unwrap();
    let admin_addr = admin.addr.to_string();
    let before = requests(&admin_addr).await;
    let http = client();
    let url = format!("http://{}/", running.ingress);
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = http.get(&url).header("x-canary", "1").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let refused = (
        "source".to_owned(),
        "istio-ingressgateway".to_owned(),
        "unknown".to_owned(),
        "404".to_owned(),
    );
    let mut expected: BTreeMap<Edge, u64> = [(refused, 1)].into();
    for reporter in ["source", "destination"] {
        for (from, to, n) in [
            ("istio-ingressgateway", "frontend-v2", 1),
            // The page's city list, then its forecast.
            ("frontend-v2", "forecast-v2", 2),
            ("forecast-v2", "recommendation-v1", 1),
        ] {
            expected.insert(edge(reporter, from, to), n);
        }
    }
    scrape_until(&admin_addr, "the refused and the routed request", |m| {
        grown(&before, m) == expected
    })
    .await;
    admin.shutdown().await.unwrap();
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
