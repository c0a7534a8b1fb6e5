//! The shipped manifests (k8s/, istio/base, istio/stages/*) hold what the release
//! relies on: labels, selectors, named ports, security settings, subsets, catch-all
//! routes, and the multiservice rules, with the tester cookie regex checked against
//! the cookie headers real browsers send.
//! Long because it is one test per property of the manifests, each short.

use std::path::PathBuf;

use mesh::{
    Manifests, load_paths,
    matching::Matcher,
    model::{HttpRoute, StringMatch, VirtualService},
};
use serde_json::Value;

const STAGES: [&str; 14] = [
    "all-v1",
    "forecast-50-50",
    "forecast-v2",
    "forecast-user-agent",
    "frontend-combined",
    "multiservice",
    // The multiservice release keyed on a verified JWT claim (istio/security).
    "multiservice-jwt",
    // The multiservice release carried by a lane in the request (baggage).
    "multiservice-lane",
    // The resilience lab: multiservice plus one lesson each.
    "fault-delay",
    "fault-abort",
    "timeout",
    "retries",
    "mirror",
    "circuit-breaker",
];

/// The lab's stages that keep multiservice's frontend and forecast routes.
const LAB_ON_MULTISERVICE: [&str; 5] = [
    "fault-delay",
    "fault-abort",
    "timeout",
    "retries",
    "circuit-breaker",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(paths: &[&str]) -> Manifests {
    let paths: Vec<PathBuf> = paths.iter().map(|p| root().join(p)).collect();
    load_paths(&paths).unwrap_or_else(|e| panic!("{e:?}"))
}

fn workloads() -> Manifests {
    load(&["k8s"])
}

fn stage(name: &str) -> Manifests {
    load(&["istio/base", &format!("istio/stages/{name}")])
}

fn shipped_text(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_stage_folder_is_listed_and_complete() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("istio/stages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
    for s in STAGES {
        let m = stage(s);
        let mut names: Vec<&str> = m
            .virtual_services
            .iter()
            .map(|v| v.metadata.name.as_str())
            .collect();
        names.sort();
        // The same three names everywhere: applying a stage replaces the one before.
        assert_eq!(
            names,
            ["forecast-route", "frontend-route", "recommendation-route"],
            "{s}"
        );
        assert!(m.warnings.is_empty(), "{s}: {:?}", m.warnings);
        // Nothing but objects in the folders: `kubectl apply -f` reads them too.
        assert!(m.notes.is_empty(), "{s}: {:?}", m.notes);
    }
}

#[test]
fn every_namespaced_object_states_its_namespace() {
    let mut all = vec![workloads(), load(&["istio/base"])];
    all.extend(STAGES.iter().map(|s| stage(s)));
    for m in &all {
        let metas = m
            .services
            .iter()
            .map(|o| ("Service", &o.metadata))
            .chain(m.deployments.iter().map(|o| ("Deployment", &o.metadata)))
            .chain(
                m.service_accounts
                    .iter()
                    .map(|o| ("ServiceAccount", &o.metadata)),
            )
            .chain(
                m.virtual_services
                    .iter()
                    .map(|o| ("VirtualService", &o.metadata)),
            )
            .chain(
                m.destination_rules
                    .iter()
                    .map(|o| ("DestinationRule", &o.metadata)),
            );
        for (kind, meta) in metas {
            assert_eq!(
                meta.namespace.as_deref(),
                Some("weather"),
                "{kind} {}",
                meta.name
            );
        }
        for g in &m.gateways {
            assert_eq!(g.metadata.namespace.as_deref(), Some("istio-system"));
        }
    }
}

#[test]
fn the_namespace_has_sidecar_injection() {
    let m = workloads();
    assert_eq!(m.namespaces.len(), 1);
    assert_eq!(m.namespaces[0].metadata.name, "weather");
    assert_eq!(
        m.namespaces[0].metadata.labels["istio-injection"],
        "enabled"
    );
}

#[test]
fn deployments_carry_app_and_version_and_select_their_own_pods() {
    let m = workloads();
    let mut names: Vec<&str> = m
        .deployments
        .iter()
        .map(|d| d.metadata.name.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "forecast-v1",
            "forecast-v2",
            "frontend-v1",
            "frontend-v2",
            "recommendation-v1"
        ]
    );
    for d in &m.deployments {
        let (app, version) = d.metadata.name.rsplit_once('-').unwrap();
        let pod = &d.spec.template.metadata.labels;
        assert_eq!(
            pod.get("app").map(String::as_str),
            Some(app),
            "{}",
            d.metadata.name
        );
        assert_eq!(pod.get("version").map(String::as_str), Some(version));
        for (k, v) in &d.spec.selector.match_labels {
            assert_eq!(
                pod.get(k),
                Some(v),
                "{}: selector {k}={v} does not select its pods",
                d.metadata.name
            );
        }
        assert_eq!(
            d.spec
                .selector
                .match_labels
                .get("version")
                .map(String::as_str),
            Some(version)
        );
        let c = &d.spec.template.spec.containers[0];
        assert_eq!(c.image, format!("weather/{app}:{version}"));
        assert_eq!(
            d.spec.template.spec.service_account_name.as_deref(),
            Some(app)
        );
        assert!(
            m.service_accounts.iter().any(|sa| sa.metadata.name == app),
            "no ServiceAccount {app}"
        );
    }
}

#[test]
fn services_select_by_app_only_on_named_http_ports() {
    let m = workloads();
    for (name, port) in [
        ("frontend", 3000),
        ("forecast", 3002),
        ("recommendation", 3005),
    ] {
        let s = m
            .services
            .iter()
            .find(|s| s.metadata.name == name)
            .expect(name);
        assert_eq!(s.spec.selector.len(), 1, "{name} selects by more than app");
        assert_eq!(s.spec.selector["app"], name);
        assert_eq!(s.spec.ports.len(), 1);
        let p = &s.spec.ports[0];
        assert_eq!(p.port, port);
        assert_eq!(p.name.as_deref(), Some("http"));
        assert_eq!(p.app_protocol.as_deref(), Some("http"));
        // The target port is the containers' named port, on every version.
        assert_eq!(p.target_port, Some(Value::from("http")));
        for d in m
            .deployments
            .iter()
            .filter(|d| d.spec.template.metadata.labels["app"] == name)
        {
            let cp = &d.spec.template.spec.containers[0].ports[0];
            assert_eq!(
                (cp.name.as_deref(), cp.container_port),
                (Some("http"), port),
                "{}",
                d.metadata.name
            );
        }
    }
}

#[test]
fn containers_are_locked_down_probed_and_sized() {
    let m = workloads();
    for d in &m.deployments {
        let name = &d.metadata.name;
        let pod = &d.spec.template.spec;
        let psc = pod.security_context.as_ref().expect("pod securityContext");
        assert_eq!(psc["runAsNonRoot"], true, "{name}");
        let uid = psc["runAsUser"].as_u64().expect("runAsUser");
        assert!(
            uid != 0 && uid != 1337,
            "{name}: UID {uid} is root or the sidecar's"
        );
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for c in &pod.containers {
            let sc = c
                .security_context
                .as_ref()
                .expect("container securityContext");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}"
            );
            let probe = |p: &Option<mesh::model::Probe>| {
                p.as_ref()
                    .and_then(|p| p.http_get.as_ref())
                    .and_then(|h| h.path.clone())
            };
            assert_eq!(
                probe(&c.readiness_probe).as_deref(),
                Some("/readyz"),
                "{name}"
            );
            assert_eq!(
                probe(&c.liveness_probe).as_deref(),
                Some("/healthz"),
                "{name}"
            );
            let r = c.resources.as_ref().expect("resources");
            for (kind, key) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "cpu"),
                ("limits", "memory"),
            ] {
                assert!(r[kind][key].is_string(), "{name}: no {kind}.{key}");
            }
            // APP_VERSION is baked into the image, never overridden by the manifest.
            assert_eq!(c.env("APP_VERSION"), None, "{name}");
        }
    }
    let url = |d: &str, var: &str| {
        let d = m.deployments.iter().find(|x| x.metadata.name == d).unwrap();
        d.spec.template.spec.containers[0]
            .env(var)
            .map(str::to_owned)
    };
    assert_eq!(
        url("frontend-v1", "FORECAST_URL").as_deref(),
        Some("http://forecast:3002")
    );
    assert_eq!(
        url("forecast-v2", "RECOMMENDATION_URL").as_deref(),
        Some("http://recommendation:3005")
    );
}

#[test]
fn the_gateway_is_the_one_the_ingress_routes_bind_to() {
    let m = load(&["istio/base"]);
    assert_eq!(m.gateways.len(), 1);
    let g = &m.gateways[0];
    assert_eq!(
        (g.metadata.ns(), g.metadata.name.as_str()),
        ("istio-system", "weather-gateway")
    );
    assert_eq!(g.spec.selector["istio"], "ingressgateway");
    assert_eq!(g.spec.servers[0].port.number, 80);
    assert_eq!(g.spec.servers[0].port.protocol, "HTTP");
    for s in STAGES {
        let m = stage(s);
        let fe = vs(&m, "frontend-route");
        assert_eq!(fe.spec.gateways, ["istio-system/weather-gateway"], "{s}");
        for other in ["forecast-route", "recommendation-route"] {
            assert!(
                vs(&m, other).spec.gateways.is_empty(),
                "{s}: {other} must apply to the mesh"
            );
        }
    }
}

#[test]
fn every_subset_routed_to_is_defined_and_selects_pods() {
    let w = workloads();
    for s in STAGES {
        let m = stage(s);
        for v in &m.virtual_services {
            for r in &v.spec.http {
                for d in &r.route {
                    let host = &d.destination.host;
                    let subset = d
                        .destination
                        .subset
                        .as_deref()
                        .expect("every route names a subset");
                    let dr = m
                        .destination_rules
                        .iter()
                        .find(|dr| &dr.spec.host == host)
                        .unwrap_or_else(|| panic!("{s}: no DestinationRule for {host}"));
                    let def = dr
                        .spec
                        .subsets
                        .iter()
                        .find(|x| x.name == subset)
                        .unwrap_or_else(|| panic!("{s}: {host} has no subset {subset}"));
                    let service = w
                        .services
                        .iter()
                        .find(|x| &x.metadata.name == host)
                        .unwrap();
                    let selected = w.deployments.iter().any(|d| {
                        let pod = &d.spec.template.metadata.labels;
                        service
                            .spec
                            .selector
                            .iter()
                            .chain(def.labels.iter())
                            .all(|(k, v)| pod.get(k) == Some(v))
                    });
                    assert!(selected, "{s}: {host} subset {subset} selects no pods");
                }
            }
        }
    }
}

fn is_catch_all(r: &HttpRoute) -> bool {
    r.matches.is_empty()
}

#[test]
fn every_virtual_service_ends_in_a_catch_all_and_weights_add_up() {
    for s in STAGES {
        for v in &stage(s).virtual_services {
            let last = v.spec.http.last().expect("http routes");
            assert!(
                is_catch_all(last),
                "{s}: {} does not end in a catch-all",
                v.metadata.name
            );
            for r in &v.spec.http {
                if r.route.len() > 1 {
                    let total: i64 = r.route.iter().map(|d| d.weight.unwrap_or(0)).sum();
                    assert_eq!(total, 100, "{s}: {}", v.metadata.name);
                }
            }
        }
    }
}

fn vs<'a>(m: &'a Manifests, name: &str) -> &'a VirtualService {
    m.virtual_services
        .iter()
        .find(|v| v.metadata.name == name)
        .unwrap()
}

fn targets(r: &HttpRoute) -> Vec<(String, i64)> {
    r.route
        .iter()
        .map(|d| {
            (
                d.destination.subset.clone().unwrap(),
                d.weight.unwrap_or(100),
            )
        })
        .collect()
}

#[test]
fn the_stages_route_as_the_book_describes() {
    let v1 = vec![("v1".to_owned(), 100)];
    let v2 = vec![("v2".to_owned(), 100)];
    for s in STAGES {
        let m = stage(s);
        let rec = vs(&m, "recommendation-route");
        assert_eq!(rec.spec.http.len(), 1);
        assert_eq!(
            targets(&rec.spec.http[0]),
            v1,
            "{s}: recommendation is always v1"
        );
    }
    let m = stage("all-v1");
    assert_eq!(targets(&vs(&m, "frontend-route").spec.http[0]), v1);
    assert_eq!(targets(&vs(&m, "forecast-route").spec.http[0]), v1);
    let m = stage("forecast-50-50");
    assert_eq!(
        targets(&vs(&m, "forecast-route").spec.http[0]),
        [("v1".into(), 50), ("v2".into(), 50)]
    );
    let m = stage("forecast-v2");
    assert_eq!(
        targets(&vs(&m, "forecast-route").spec.http[0]),
        [("v1".into(), 0), ("v2".into(), 100)]
    );
    let m = stage("forecast-user-agent");
    let fc = &vs(&m, "forecast-route").spec.http;
    assert_eq!(
        fc[0].matches[0].headers["user-agent"],
        StringMatch::Regex(r".*(Chrome/([\d.]+)).*".into())
    );
    assert_eq!(targets(&fc[0]), v2);
    let m = stage("frontend-combined");
    let fe = &vs(&m, "frontend-route").spec.http;
    assert_eq!(
        fe[0].matches[0].headers["user-agent"],
        StringMatch::Regex(".*((Android)).*".into())
    );
    assert_eq!(targets(&fe[0]), [("v1".into(), 50), ("v2".into(), 50)]);
    assert_eq!(targets(&fe[1]), v1);
}

#[test]
fn multiservice_sends_testers_to_v2_and_v2_callers_to_forecast_v2() {
    let m = stage("multiservice");
    let fe = &vs(&m, "frontend-route").spec.http;
    assert_eq!(fe.len(), 2);
    assert!(matches!(
        fe[0].matches[0].headers["cookie"],
        StringMatch::Regex(_)
    ));
    assert_eq!(fe[0].matches.len(), 1);
    assert_eq!(targets(&fe[0]), [("v2".into(), 100)]);
    assert_eq!(targets(&fe[1]), [("v1".into(), 100)]);
    let fc = &vs(&m, "forecast-route").spec.http;
    assert_eq!(fc.len(), 2);
    assert_eq!(fc[0].matches[0].source_labels.len(), 1);
    assert_eq!(fc[0].matches[0].source_labels["version"], "v2");
    assert_eq!(targets(&fc[0]), [("v2".into(), 100)]);
    assert_eq!(targets(&fc[1]), [("v1".into(), 100)]);
}

fn tester_matcher() -> Matcher {
    let m = stage("multiservice");
    let fe = &vs(&m, "frontend-route").spec.http;
    Matcher::new(&fe[0].matches[0].headers["cookie"]).expect("the shipped regex compiles")
}

// The shipped regex against corpora of browser cookie headers:
// crates/weather/tests/weather/cookies.rs, on the lists `weather verify` sends.

#[test]
fn the_books_regex_misses_browser_cookie_headers_which_is_why_ours_differs() {
    // Documented in the stage's comment: kept here so the reason stays true.
    let book = Matcher::new(&StringMatch::Regex(r"^(.*?;)?(user=tester)(;.*)?$".into())).unwrap();
    assert!(book.matches("user=tester"));
    assert!(!book.matches("_ga=GA1.1.1; user=tester"));
    let ours = tester_matcher();
    assert!(ours.matches("user=tester") && ours.matches("_ga=GA1.1.1; user=tester"));
}

/// Each stage of the resilience lab is the multiservice release plus its one
/// lesson: the other routes are multiservice's, word for word, and a
/// Deployment a stage changes differs from k8s/'s by the one variable it sets.
#[test]
fn each_resilience_stage_is_multiservice_plus_one_lesson() {
    for s in LAB_ON_MULTISERVICE {
        for f in ["frontend.yaml", "forecast.yaml"] {
            assert_eq!(
                shipped_text(&format!("istio/stages/{s}/{f}")),
                shipped_text(&format!("istio/stages/multiservice/{f}")),
                "{s}/{f}"
            );
        }
    }
    let base = shipped_text("k8s/recommendation-v1.yaml");
    let body = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    for (s, added) in [
        ("timeout", vec![("FAULT_DELAY_MS", "1000")]),
        ("retries", vec![("FAULT_ERROR_RATE", "0.5")]),
        (
            "circuit-breaker",
            vec![("FAULT_DELAY_MS", "200"), ("FAULT_ERROR_RATE", "0.5")],
        ),
    ] {
        let text = shipped_text(&format!("istio/stages/{s}/recommendation-v1.yaml"));
        let mut lines = body(&text);
        for (name, value) in &added {
            let at = lines
                .iter()
                .position(|l| l.trim() == format!("- name: {name}"))
                .unwrap_or_else(|| panic!("{s}: no {name}"));
            assert_eq!(lines[at + 1].trim(), format!("value: \"{value}\""), "{s}");
            lines.drain(at..at + 2);
        }
        assert_eq!(lines, body(&base), "{s}: only {added:?} differ from k8s/");
    }
    let rec = |s: &str| vs(&stage(s), "recommendation-route").spec.http[0].clone();
    let fault = rec("fault-delay").fault.unwrap();
    assert_eq!(fault["delay"]["fixedDelay"], "2s");
    assert_eq!(fault["delay"]["percentage"]["value"], 100);
    let fault = rec("fault-abort").fault.unwrap();
    assert_eq!(fault["abort"]["httpStatus"], 503);
    assert_eq!(fault["abort"]["percentage"]["value"], 50);
    assert_eq!(rec("timeout").timeout.unwrap(), "0.5s");
    let retries = rec("retries").retries.unwrap();
    assert_eq!(retries["attempts"], 3);
    assert_eq!(retries["retryOn"], "5xx");
    let m = stage("mirror");
    let fc = &vs(&m, "forecast-route").spec.http;
    assert_eq!(fc.len(), 1);
    assert_eq!(fc[0].route[0].destination.subset.as_deref(), Some("v1"));
    assert_eq!(fc[0].mirror.as_ref().unwrap()["subset"], "v2");
    let fe = &vs(&m, "frontend-route").spec.http;
    assert_eq!(
        targets(&fe[0]),
        [("v1".to_owned(), 100)],
        "every page is v1's"
    );
    let m = stage("circuit-breaker");
    let dr = m
        .destination_rules
        .iter()
        .find(|d| d.metadata.name == "recommendation")
        .unwrap();
    let tp = dr.spec.traffic_policy.as_ref().unwrap();
    assert_eq!(tp["connectionPool"]["tcp"]["maxConnections"], 1);
    assert_eq!(tp["outlierDetection"]["maxEjectionPercent"], 100);
    assert_eq!(dr.spec.subsets[0].name, "v1", "it keeps base's subset");
}
