//! Real HTTP through the local data plane on the shipped manifests: thousands of
//! requests with realistic cookie headers and zero crossings, stage switches that
//! drop nothing, and manifests re-applied when their files change.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use weather::{
    dataplane::{self, Running},
    verify::{self, Class, Judge},
};

use weather_core::testing::eventually;

use crate::{get_json, shipped, stage_paths};

async fn up(stage: &str) -> Running {
    let opts = dataplane::Options::local(stage_paths(stage), Some(stage.to_owned()));
    dataplane::start(opts).await.unwrap()
}

/// The admin listener on a free port, as `weather up` mounts it.
async fn admin(running: &Running) -> weather_core::RunningServer {
    let any = "127.0.0.1:0".parse().unwrap();
    weather::admin::serve(any, running.plane.clone())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiservice_keeps_testers_on_v2_and_everyone_else_on_v1_with_zero_crossings() {
    let running = up("multiservice").await;
    let report = verify::run(verify::Options {
        url: format!("http://{}", running.ingress),
        requests: 1500,
        concurrency: 16,
        judge: Judge::Promise,
    })
    .await
    .unwrap();
    assert!(report.ok(), "{}", report.render("the promise"));
    assert_eq!(report.crossings, 0);
    let chains = |c: Class| report.rows[&c].observed.clone();
    assert_eq!(
        chains(Class::Tester).into_iter().collect::<Vec<_>>(),
        [("frontend:v2,forecast:v2,recommendation:v1".to_owned(), 1500)]
    );
    assert_eq!(
        chains(Class::Anonymous).into_iter().collect::<Vec<_>>(),
        [("frontend:v1,forecast:v1".to_owned(), 1500)]
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_stage_measures_as_the_model_predicts() {
    let running = up("forecast-50-50").await;
    let (manifests, mesh) = shipped("forecast-50-50");
    let report = verify::run(verify::Options {
        url: format!("http://{}", running.ingress),
        requests: 1000,
        concurrency: 16,
        judge: Judge::Stage {
            name: "forecast-50-50".into(),
            manifests: Box::new(manifests),
            mesh: Box::new(mesh),
        },
    })
    .await
    .unwrap();
    assert!(report.ok(), "{}", report.render("the stage"));
    assert!(
        report.crossings > 0,
        "half the calls cross to forecast v2 in this stage"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_stages_while_serving_drops_no_request() {
    let running = up("multiservice").await;
    let admin = admin(&running).await;
    let ingress = format!("http://{}", running.ingress);
    let http = reqwest::Client::new();
    // Tester traffic runs without pause until every switch is done; each switch
    // waits until requests have completed since the one before, so every
    // switch happens while requests are in flight.
    let done = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load = {
        let (http, ingress, done, answered) = (
            http.clone(),
            ingress.clone(),
            done.clone(),
            answered.clone(),
        );
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let res = http
                    .get(format!("{ingress}/?city=london"))
                    .header("cookie", "user=tester")
                    .send()
                    .await;
                let outcome = match res {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers()["x-weather-chain"]
                            .to_str()
                            .unwrap_or("")
                            .to_owned(),
                    ),
                    Err(e) => (0, e.to_string()),
                };
                seen.push(outcome);
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    for stage in ["all-v1", "forecast-50-50", "multiservice", "all-v1"] {
        let before = answered.load(Ordering::Relaxed);
        eventually("20 more requests answered", async || {
            answered.load(Ordering::Relaxed) >= before + 20
        })
        .await;
        let res = http
            .post(format!("{}/stage/{stage}", admin.url()))
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "{stage}: {}",
            res.text().await.unwrap()
        );
    }
    let before = answered.load(Ordering::Relaxed);
    eventually("20 more requests answered", async || {
        answered.load(Ordering::Relaxed) >= before + 20
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(failed.is_empty(), "{failed:?}");
    // The load crossed the switches: it saw the tester's v2 chain and v1.
    let chains: std::collections::BTreeSet<&str> = seen.iter().map(|(_, c)| c.as_str()).collect();
    assert!(
        chains.contains("frontend:v2,forecast:v2,recommendation:v1"),
        "{chains:?}"
    );
    assert!(chains.contains("frontend:v1,forecast:v1"), "{chains:?}");
    // all-v1 is in force now: a tester is on v1.
    let res = http
        .get(format!("{ingress}/"))
        .header("cookie", "user=tester")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-weather-chain"], "frontend:v1,forecast:v1");
    let stage = || async { get_json(&format!("{}/stage", admin.url())).await["stage"].clone() };
    assert_eq!(stage().await, "all-v1");
    for bad in ["nope", "..%2F..%2Fk8s", "%2E%2E"] {
        let res = http
            .post(format!("{}/stage/{bad}", admin.url()))
            .send()
            .await
            .unwrap();
        // "%2E%2E" reaches the listener as POST / (the client resolves the
        // dot segments): 405 there, 404 for a name that is no stage.
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
    }
    assert_eq!(stage().await, "all-v1", "a refused switch changes nothing");
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_manifests_are_applied_while_running() {
    let dir = crate::scratch("watch");
    let mut paths = Vec::new();
    for (i, p) in stage_paths("multiservice").iter().enumerate() {
        let copy = dir.join(i.to_string());
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        paths.push(copy);
    }
    // An edit lands whole, as an editor saves it (a new file renamed over the
    // old): the watch must not see a file half written, which a copy or a
    // write in place would show it between truncating and writing.
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let save = |to: &std::path::Path, text: &str| {
        let tmp = staging.join("edit.yaml");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    let mut running = dataplane::start(dataplane::Options::local(paths.clone(), None))
        .await
        .unwrap();
    running.watch(Duration::from_millis(50));
    let http = reqwest::Client::new();
    let chain = || async {
        let r = http
            .get(format!("http://{}/", running.ingress))
            .header("cookie", "user=tester")
            .send()
            .await
            .unwrap();
        r.headers()["x-weather-chain"].to_str().unwrap().to_owned()
    };
    assert_eq!(chain().await, "frontend:v2,forecast:v2,recommendation:v1");
    // The rollback: the frontend route of all-v1 replaces multiservice's.
    let stage = paths.last().unwrap().clone();
    save(
        &stage.join("frontend.yaml"),
        &std::fs::read_to_string(crate::root().join("istio/stages/all-v1/frontend.yaml")).unwrap(),
    );
    let plane = running.plane.clone();
    eventually("the edit applied", async || plane.reloads().applied == 1).await;
    assert_eq!(chain().await, "frontend:v1,forecast:v1");
    // A broken edit is refused and the routes in force stay.
    save(
        &stage.join("frontend.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x, namespace: weather}\nspec: {hostz: []}\n",
    );
    eventually("the broken edit refused", async || {
        plane.reloads().refused == 1
    })
    .await;
    let reloads = plane.reloads();
    assert!(
        reloads
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("unknown field `hostz`"),
        "{reloads:?}"
    );
    assert_eq!(reloads.applied, 1);
    assert_eq!(chain().await, "frontend:v1,forecast:v1");
    // So is one istiod's validation refuses, naming the field.
    let star =
        std::fs::read_to_string(crate::root().join("istio/stages/multiservice/frontend.yaml"))
            .unwrap()
            .replace(r"regex: '^(.*;\s*)?user=tester(\s*;.*)?$'", r#"regex: "*""#);
    assert!(star.contains(r#"regex: "*""#));
    save(&stage.join("frontend.yaml"), &star);
    eventually("the refused edit refused", async || {
        plane.reloads().refused == 2
    })
    .await;
    let reloads = plane.reloads();
    assert!(
        reloads.last_error.as_deref().unwrap_or("").contains(
            "http[0].match[0].headers.cookie.regex: istiod's validation refuses the object"
        ),
        "{reloads:?}"
    );
    assert_eq!(chain().await, "frontend:v1,forecast:v1");
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_answers_like_envoy_when_it_cannot_route() {
    let running = up("multiservice").await;
    let http = reqwest::Client::new();
    // A request that reaches frontend but a path it does not serve: frontend's 404.
    let res = http
        .get(format!("http://{}/nowhere", running.ingress))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-weather-chain"], "frontend:v1");
    // The data plane forwards a POST body and the Set-Cookie back.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("http://{}/login", running.ingress))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=tester")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["set-cookie"],
        "user=tester; Path=/; HttpOnly; SameSite=Lax"
    );
    running.shutdown().await;
}

/// With an OTLP endpoint, `weather up` exports a span per proxy hop, as the
/// sidecars and the gateway do in the cluster, so the local trace has the
/// cluster's shape: gateway -> frontend -> frontend's sidecar -> forecast -> ...
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_every_hop_is_a_span_of_one_trace() {
    let receiver = weather_core::testing::OtlpReceiver::start().await;
    let running = dataplane::start(dataplane::Options {
        telemetry: weather_core::telemetry::TelemetryArgs::to(receiver.endpoint()),
        ..dataplane::Options::local(stage_paths("multiservice"), Some("multiservice".into()))
    })
    .await
    .unwrap();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let res = reqwest::Client::new()
        .get(format!("http://{}/?city=tokyo", running.ingress))
        .header("cookie", "lang=en; user=tester")
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-weather-chain"],
        "frontend:v2,forecast:v2,recommendation:v1"
    );
    let spans = receiver.trace(trace, 11).await;
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        [
            "forecast",
            "forecast.weather",
            "frontend",
            "frontend.weather",
            "istio-ingressgateway.istio-system",
            "recommendation"
        ]
        .into_iter()
        .collect(),
        "{spans:#?}"
    );
    let find = |service: &str, kind: i32| {
        spans
            .iter()
            .find(|s| s.service == service && s.kind == kind)
            .unwrap_or_else(|| panic!("no {service} span"))
    };
    let gateway = find("istio-ingressgateway.istio-system", 3);
    assert_eq!(gateway.parent_span_id, "b7ad6b7169203331");
    assert_eq!(gateway.name, "frontend.weather.svc.cluster.local:3000/*");
    assert_eq!(
        gateway.attribute("upstream_cluster"),
        Some("outbound|3000|v2|frontend.weather.svc.cluster.local")
    );
    // The app's server span is the child of the proxy hop that delivered it.
    assert_eq!(find("frontend", 2).parent_span_id, gateway.span_id);
    // forecast's server span hangs under frontend's sidecar hop, itself under
    // frontend's client span; the same one level down for recommendation.
    let by_id = |id: &str| {
        spans
            .iter()
            .find(|s| s.span_id == id)
            .unwrap_or_else(|| panic!("no span {id}"))
    };
    let fc_server = spans
        .iter()
        .find(|s| s.service == "forecast" && s.name == "GET /forecast")
        .unwrap();
    let sidecar = by_id(&fc_server.parent_span_id);
    assert_eq!(
        (sidecar.service.as_str(), sidecar.name.as_str()),
        (
            "frontend.weather",
            "forecast.weather.svc.cluster.local:3002/*"
        )
    );
    let fe_client = by_id(&sidecar.parent_span_id);
    assert_eq!(
        (fe_client.service.as_str(), fe_client.kind),
        ("frontend", 3)
    );
    let rec_server = find("recommendation", 2);
    let rec_sidecar = by_id(&rec_server.parent_span_id);
    assert_eq!(
        (rec_sidecar.service.as_str(), rec_sidecar.name.as_str()),
        (
            "forecast.weather",
            "recommendation.weather.svc.cluster.local:3005/*"
        )
    );
    assert_eq!(by_id(&rec_sidecar.parent_span_id).service, "forecast");
    running.shutdown().await;
}

/// forecast v2 for every caller, as a release step would apply it.
const FORECAST_ALL_V2: &str = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: forecast-route, namespace: weather}
spec:
  hosts: [forecast]
  http:
    - route:
        - destination: {host: forecast, subset: v2}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_applied_through_the_admin_listener_replaces_the_stages_whole_or_not_at_all() {
    let running = up("multiservice").await;
    let admin = admin(&running).await;
    let http = reqwest::Client::new();
    let chain = || async {
        let res = http
            .get(format!("http://{}/", running.ingress))
            .send()
            .await
            .unwrap();
        res.headers()["x-weather-chain"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let apply = |yaml: &'static str| {
        http.post(format!("{}/apply?label=test", admin.url()))
            .header("content-type", "application/yaml")
            .body(yaml)
            .send()
    };
    assert_eq!(chain().await, "frontend:v1,forecast:v1");

    let res = apply(FORECAST_ALL_V2).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(chain().await, "frontend:v1,forecast:v2,recommendation:v1");
    let stage = get_json(&format!("{}/stage", admin.url())).await;
    assert_eq!(stage["stage"], "multiservice");
    assert_eq!(
        stage["overlay"]["objects"],
        serde_json::json!(["VirtualService weather/forecast-route"])
    );

    // Refused whole: a typo, an object that is not routing, nothing at all.
    let typo = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: forecast-route, namespace: weather}
spec:
  hosts: [forecast]
  http:
    - matchs: [{uri: {prefix: /}}]
      route: [{destination: {host: forecast, subset: v1}}]
";
    let namespace = "
apiVersion: v1
kind: Namespace
metadata: {name: elsewhere}
";
    // Valid, but it takes the ingress's only VirtualService off the gateway.
    let off_the_gateway = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: frontend-route, namespace: weather}
spec:
  hosts: [frontend]
  http:
    - route: [{destination: {host: frontend, subset: v1}}]
";
    for (bad, says) in [
        (typo, "matchs"),
        (
            namespace,
            "only VirtualServices, HTTPRoutes, DestinationRules and Gateways",
        ),
        ("", "nothing to apply"),
        (off_the_gateway, "the ingress would route nothing"),
    ] {
        let res = apply(bad).await.unwrap();
        assert_eq!(res.status(), 422);
        let body: serde_json::Value = res.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        assert_eq!(chain().await, "frontend:v1,forecast:v2,recommendation:v1");
    }

    // A stage switch drops what was applied over the stage before.
    let res = http
        .post(format!("{}/stage/multiservice", admin.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(chain().await, "frontend:v1,forecast:v1");
    admin.shutdown().await.unwrap();
    running.shutdown().await;
}
