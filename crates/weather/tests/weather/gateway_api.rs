//! The release as Gateway API objects (istio/gateway-api/): a Gateway of class
//! istio, a Service per version, HTTPRoutes at the edge and on forecast's
//! Service (GAMMA). HTTPRoute cannot match the caller, so in `multiservice`
//! the lane rides in the request: the edge sets `baggage: lane=v2` for
//! testers, every service passes it on, forecast's route matches it.

use std::collections::BTreeMap;

use weather::stages::{self, Api};

use crate::{chain, client, root};

async fn up(api: Api, stage: &str) -> (weather::dataplane::Running, weather_core::RunningServer) {
    let paths = stages::paths_for(&root(), api, stage).unwrap();
    let opts = weather::dataplane::Options::local(paths, Some(stage.to_owned()));
    let running = weather::dataplane::start(opts).await.unwrap();
    let admin = weather::admin::serve("127.0.0.1:0".parse().unwrap(), running.plane.clone())
        .await
        .unwrap();
    (running, admin)
}

#[test]
fn every_gateway_api_stage_loads_clean_and_says_what_it_shows() {
    let names = stages::names_for(&root(), Api::GatewayApi);
    // The six classic stages, named as the VirtualService ones are.
    assert_eq!(
        names,
        [
            "all-v1",
            "forecast-50-50",
            "forecast-user-agent",
            "forecast-v2",
            "frontend-combined",
            "multiservice"
        ]
    );
    for stage in &names {
        assert!(stages::names(&root()).contains(stage), "{stage}");
        let paths = stages::paths_for(&root(), Api::GatewayApi, stage).unwrap();
        let m = mesh::load_paths(&paths).unwrap_or_else(|e| panic!("{stage}: {e:?}"));
        assert!(m.warnings.is_empty(), "{stage}: {:?}", m.warnings);
        assert_eq!(m.http_routes.len(), 2, "{stage}");
        let mesh = mesh::Mesh::compile(&m);
        assert!(mesh.errors.is_empty(), "{stage}: {:?}", mesh.errors);
        assert!(mesh.ingress_routes_anything(), "{stage}");
        assert!(!stages::summary_for(&root(), Api::GatewayApi, stage).is_empty());
    }
}

#[tokio::test]
async fn on_http_routes_testers_get_the_v2_chain_everyone_else_v1_and_no_request_crosses() {
    no_request_crosses(Api::GatewayApi).await;
}

#[tokio::test]
async fn in_ambient_mode_too_testers_get_the_v2_chain_and_no_request_crosses() {
    no_request_crosses(Api::Ambient).await;
}

async fn no_request_crosses(api: Api) {
    let (running, admin) = up(api, "multiservice").await;
    let ingress = running.ingress;
    let v2 = "frontend:v2,forecast:v2,recommendation:v1";
    let v1 = "frontend:v1,forecast:v1";
    // 1,000 requests: testers (cookies in any order), anonymous visitors,
    // and clients sending a lane of their own, which the edge removes.
    let tester: &[&[(&str, &str)]] = &[
        &[("cookie", "user=tester")],
        &[("cookie", "lang=zh; user=tester")],
        &[("cookie", "user=tester"), ("baggage", "lane=v1")],
    ];
    let others: &[&[(&str, &str)]] = &[
        &[],
        &[("cookie", "user=alice")],
        &[("baggage", "lane=v2")],
        &[("baggage", "session=1, lane=v2;ttl=5")],
        &[("cookie", "xuser=tester"), ("baggage", "lane=v2")],
    ];
    let mut seen: BTreeMap<(bool, String), usize> = BTreeMap::new();
    for i in 0..1000 {
        let is_tester = i % 2 == 0;
        let headers = if is_tester {
            tester[i % tester.len()]
        } else {
            others[i % others.len()]
        };
        *seen
            .entry((is_tester, chain(ingress, headers).await))
            .or_default() += 1;
    }
    let expected = BTreeMap::from([((false, v1.to_owned()), 500), ((true, v2.to_owned()), 500)]);
    assert_eq!(seen, expected, "some request crossed versions");
    running.shutdown().await;
    admin.shutdown().await.unwrap();
}

/// What the admin listener at `base` says of the stage in force.
async fn stage_state(http: &reqwest::Client, base: &str) -> serde_json::Value {
    http.get(format!("{base}/stage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_admin_listener_says_which_api_routes_and_a_switch_stays_in_it() {
    let (running, admin) = up(Api::GatewayApi, "multiservice").await;
    let base = format!("http://{}", admin.addr);
    let http = client();
    let state = stage_state(&http, &base).await;
    assert_eq!(state["api"], "gateway-api");
    assert_eq!(state["stages"].as_array().unwrap().len(), 6);
    let res = http
        .post(format!("{base}/stage/all-v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let state = stage_state(&http, &base).await;
    assert_eq!(state["stage"], "all-v1");
    assert!(
        state["paths"]
            .as_array()
            .and_then(|p| p.last())
            .and_then(|p| p.as_str())
            .unwrap()
            .ends_with("istio/gateway-api/stages/all-v1"),
        "{state}"
    );
    let page = http
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Gateway API (HTTPRoutes)"), "{page}");
    // A stage that exists for VirtualServices only is not one of these.
    let res = http
        .post(format!("{base}/stage/multiservice-lane"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    running.shutdown().await;
    admin.shutdown().await.unwrap();
}

/// Where the model sends a call from `from` to forecast, with these headers.
fn forecast_from(
    paths: &[std::path::PathBuf],
    from: &str,
    headers: &[(String, String)],
) -> Vec<String> {
    let m = mesh::load_paths(paths).unwrap();
    let mesh = mesh::Mesh::compile(&m);
    let w = mesh.workloads.iter().find(|w| w.name == from).unwrap();
    let caller = mesh::Caller::Workload {
        namespace: &w.namespace,
        labels: &w.labels,
    };
    let req = mesh::Request {
        authority: "forecast:3002",
        path: "/",
        method: "GET",
        scheme: "http",
        headers,
    };
    match mesh.route(caller, &req) {
        mesh::Routed::Route { targets, .. } => targets
            .iter()
            .filter(|t| t.weight > 0)
            .flat_map(|t| t.endpoints.iter().map(|&e| mesh.workloads[e].name.clone()))
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn in_ambient_mode_the_waypoint_drops_source_labels_and_keeps_the_lane() {
    let root = root();
    let ambient = root.join("istio/ambient");
    // The VirtualService release: the waypoint drops `sourceLabels`, so
    // frontend v2's call falls to forecast v1 (istio #51565).
    let mut vs = stages::paths(&root, "multiservice").unwrap();
    assert_eq!(forecast_from(&vs, "frontend-v2", &[]), ["forecast-v2"]);
    vs.push(ambient.clone());
    assert_eq!(forecast_from(&vs, "frontend-v2", &[]), ["forecast-v1"]);
    // The lane in the request survives the waypoint.
    let lane = [("baggage".to_owned(), "lane=v2".to_owned())];
    let gw = stages::paths_for(&root, Api::Ambient, "multiservice").unwrap();
    assert_eq!(forecast_from(&gw, "frontend-v2", &lane), ["forecast-v2"]);
    assert_eq!(forecast_from(&gw, "frontend-v2", &[]), ["forecast-v1"]);
    // No waypoint: ztunnel carries the call at L4, to any version.
    let dir = crate::scratch("no-waypoint");
    let ns = std::fs::read_to_string(ambient.join("namespace.yaml")).unwrap();
    let without = ns.replace(
        "istio.io/use-waypoint: waypoint",
        "istio.io/use-waypoint: none",
    );
    assert_ne!(ns, without);
    std::fs::write(dir.join("namespace.yaml"), without).unwrap();
    let mut l4 = stages::paths_for(&root, Api::Ambient, "multiservice").unwrap();
    let at = l4.iter().position(|p| p == &ambient).unwrap();
    l4.insert(at + 1, dir.clone());
    let mut got = forecast_from(&l4, "frontend-v2", &lane);
    got.sort();
    assert_eq!(got, ["forecast-v1", "forecast-v2"]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// `weather check` on the Gateway API multiservice stage, edited.
fn check_edited(stage_api: Api, extra: &str, replace: &str, with: &str) -> Vec<String> {
    let paths = stages::paths_for(&root(), stage_api, "multiservice").unwrap();
    let mut text = String::new();
    for p in &paths {
        let files: Vec<std::path::PathBuf> = if p.is_dir() {
            let mut f: Vec<_> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| f.extension().is_some_and(|x| x == "yaml"))
                .collect();
            f.sort();
            f
        } else {
            vec![p.clone()]
        };
        for f in files {
            text.push_str(&std::fs::read_to_string(f).unwrap());
            text.push_str("\n---\n");
        }
    }
    assert!(text.contains(replace), "{replace:?}");
    let mut m = mesh::Manifests::default();
    m.add_yaml(
        "edited.yaml",
        &format!("{}\n---\n{extra}", text.replacen(replace, with, 1)),
    )
    .unwrap();
    let mesh = mesh::Mesh::compile(&m);
    mesh::analyze::analyze(&m, &mesh)
        .iter()
        .map(|msg| msg.to_string())
        .collect()
}

#[test]
fn check_warns_where_the_lane_cannot_hold_and_where_two_apis_route_one_host() {
    let clean = check_edited(Api::GatewayApi, "", "", "");
    assert!(clean.is_empty(), "{clean:?}");
    // The edge no longer sets the lane: matched downstream, never set.
    let unset = check_edited(
        Api::GatewayApi,
        "",
        "            set:\n              - name: baggage\n                value: lane=v2",
        "            set:\n              - name: x-lane\n                value: v2",
    );
    assert!(
        unset.iter().any(|m| m.contains("WEA0018")
            && m.contains("HTTPRoute forecast-route.weather")
            && m.contains("no edge route sets baggage")),
        "{unset:#?}"
    );
    // Nor does it remove a client's: a client picks its lane.
    assert!(
        unset.iter().any(|m| m.contains("WEA0019")
            && m.contains("HTTPRoute frontend-route.weather")
            && m.contains("spec.rules[0]")),
        "{unset:#?}"
    );
    let passes = check_edited(
        Api::GatewayApi,
        "",
        "            remove:\n              - baggage",
        "            remove:\n              - x-lane",
    );
    assert!(
        passes
            .iter()
            .any(|m| m.contains("WEA0019") && m.contains("spec.rules[1]")),
        "{passes:#?}"
    );
    assert!(!passes.iter().any(|m| m.contains("WEA0018")), "{passes:#?}");
    // An edge route from a namespace the Gateway's listener does not take.
    let stray = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: stray, namespace: elsewhere}\nspec:\n  parentRefs: [{name: weather-gateway, namespace: istio-system}]\n  rules: [{backendRefs: [{name: frontend-v2, namespace: weather, port: 3000}]}]\n";
    let refused = check_edited(Api::GatewayApi, stray, "", "");
    assert!(
        refused.iter().any(|m| m.contains("WEA0020")
            && m.contains("HTTPRoute stray.elsewhere")
            && m.contains("spec.parentRefs[0]")
            && m.contains("allowedRoutes of namespace elsewhere")),
        "{refused:#?}"
    );
    // A VirtualService for forecast beside the HTTPRoute.
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: forecast-vs, namespace: weather}\nspec:\n  hosts: [forecast]\n  http:\n    - route: [{destination: {host: forecast-v1}}]\n";
    let both = check_edited(Api::GatewayApi, vs, "", "");
    assert!(
        both.iter().any(|m| m.contains("WEA0017")
            && m.contains("VirtualService forecast-vs.weather")
            && m.contains(
                "HTTPRoute forecast-route also routes forecast.weather.svc.cluster.local"
            )),
        "{both:#?}"
    );
}
