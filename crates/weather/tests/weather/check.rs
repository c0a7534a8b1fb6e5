//! `weather check` is clean on every shipped stage, and fails with a precise
//! message on broken copies of the shipped manifests: one row per analysis.

use mesh::{
    Manifests, Mesh,
    analyze::{Level, Message, analyze},
};

use crate::{shipped, shipped_text, stages};

fn check(m: &Manifests) -> Vec<Message> {
    analyze(m, &Mesh::compile(m))
}

#[test]
fn every_shipped_stage_is_clean() {
    for s in stages() {
        let (m, mesh) = shipped(&s);
        let messages = analyze(&m, &mesh);
        assert!(
            messages.is_empty(),
            "{s}:\n{}",
            messages
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(mesh.errors.is_empty(), "{s}: {:?}", mesh.errors);
    }
}

fn broken(replace: &str, with: &str) -> Vec<Message> {
    let text = shipped_text("multiservice");
    assert!(
        text.contains(replace),
        "the shipped manifests no longer contain {replace:?}"
    );
    let mut m = Manifests::default();
    m.add_yaml("broken.yaml", &text.replacen(replace, with, 1))
        .unwrap_or_else(|e| panic!("{e:?}"));
    check(&m)
}

fn has(messages: &[Message], code: &str, resource: &str, field: &str, text: &str) -> bool {
    messages.iter().any(|m| {
        m.level == Level::Error
            && m.code == code
            && m.resource == resource
            && m.field == field
            && m.text.contains(text)
    })
}

struct Row {
    analysis: &'static str,
    replace: &'static str,
    with: &'static str,
    code: &'static str,
    resource: &'static str,
    field: &'static str,
    text: &'static str,
}

const VS_V2: &str =
    "      route:\n        - destination:\n            host: forecast\n            subset: v2";

const ROWS: &[Row] = &[
    Row {
        analysis: "ingress VirtualService hidden from the gateway's namespace",
        replace: "  exportTo: [\".\", istio-system]\n  # Bound to the ingress only",
        with: "  exportTo: [\".\"]\n  # Bound to the ingress only",
        code: "WEA0012",
        resource: "VirtualService frontend-route.weather",
        field: "spec.exportTo",
        text: "not exported there: the gateway has no route from it",
    },
    Row {
        analysis: "DestinationRule hidden from the gateway that routes to its subsets",
        replace: "  exportTo: [\".\", istio-system]\n  host: frontend",
        with: "  exportTo: [\".\"]\n  host: frontend",
        code: "WEA0012",
        resource: "VirtualService frontend-route.weather",
        field: "spec.http[0].route[0].destination.subset",
        text: "is not exported to namespace istio-system",
    },
    Row {
        analysis: "AuthorizationPolicy naming a ServiceAccount that does not exist",
        replace: "              - cluster.local/ns/weather/sa/frontend",
        with: "              - cluster.local/ns/weather/sa/frontnd",
        code: "WEA0008",
        resource: "AuthorizationPolicy forecast.weather",
        field: "spec.rules[0].from[0].source.principals",
        text: "no ServiceAccount frontnd in namespace weather",
    },
    Row {
        analysis: "a pod Pod Security's restricted level refuses",
        replace: "allowPrivilegeEscalation: false",
        with: "allowPrivilegeEscalation: true",
        code: "WEA0011",
        resource: "Deployment forecast-v1.weather",
        field: "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation",
        text: "Pod Security Admission (restricted",
    },
    Row {
        analysis: "undefined subset",
        replace: VS_V2,
        with: "      route:\n        - destination:\n            host: forecast\n            subset: v3",
        code: "IST0101",
        resource: "VirtualService forecast-route.weather",
        field: "spec.http[0].route[0].destination.subset",
        text: "Referenced host+subset in destinationrule not found: \"forecast+v3\"",
    },
    Row {
        analysis: "subset selecting no pods",
        replace: "    - name: v2\n      labels:\n        version: v2\n---",
        with: "    - name: v2\n      labels:\n        version: v2\n    - name: canary\n      labels:\n        version: v3\n---",
        code: "WEA0007",
        resource: "DestinationRule frontend.weather",
        field: "spec.subsets[2]",
        text: "subset canary (version=v3) selects no pods of Service frontend",
    },
    Row {
        analysis: "destination host with no Service",
        replace: VS_V2,
        with: "      route:\n        - destination:\n            host: forcast\n            subset: v2",
        code: "IST0101",
        resource: "VirtualService forecast-route.weather",
        field: "spec.http[0].route[0].destination.host",
        text: "Referenced host not found: \"forcast\"",
    },
    Row {
        analysis: "VirtualService without a catch-all",
        replace: "    - name: others-to-v1\n      route:\n        - destination:\n            host: forecast\n            subset: v1\n",
        with: "",
        code: "WEA0001",
        resource: "VirtualService forecast-route.weather",
        field: "spec.http[0].match",
        text: "there is no catch-all",
    },
    Row {
        analysis: "regex RE2 cannot compile",
        replace: r"regex: '^(.*;\s*)?user=tester(\s*;.*)?$'",
        with: r"regex: '^(.*;\s*?user=tester(\s*;.*)?$'",
        code: "IST0106",
        resource: "VirtualService frontend-route.weather",
        field: "spec.http[0].match[0].headers.cookie.regex",
        text: "does not compile",
    },
    Row {
        analysis: "a match istiod's validation refuses",
        replace: r"regex: '^(.*;\s*)?user=tester(\s*;.*)?$'",
        with: r#"regex: "*""#,
        code: "IST0106",
        resource: "VirtualService frontend-route.weather",
        field: "spec.http[0].match[0].headers.cookie.regex",
        text: "istiod's validation refuses the object: \"headers\": regex \"*\" does not compile",
    },
    Row {
        analysis: "gateway reference not found",
        replace: "    - istio-system/weather-gateway",
        with: "    - istio-system/weather-gatewy",
        code: "IST0101",
        resource: "VirtualService frontend-route.weather",
        field: "spec.gateways[0]",
        text: "Referenced gateway not found: \"istio-system/weather-gatewy\"",
    },
    Row {
        analysis: "two VirtualServices for one host in the mesh",
        replace: "# recommendation: only v1 exists",
        with: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: forecast-extra\n  namespace: weather\nspec:\n  hosts: [forecast]\n  http:\n  - route: [{destination: {host: forecast, subset: v1}}]\n---\n# recommendation: only v1 exists",
        code: "IST0109",
        resource: "VirtualService forecast-route.weather",
        field: "spec.hosts",
        text: "The VirtualServices forecast-route.weather,forecast-extra.weather associated with mesh define the same host",
    },
    Row {
        analysis: "Deployment selector versus pod labels",
        replace: "  selector:\n    matchLabels:\n      app: forecast\n      version: v1",
        with: "  selector:\n    matchLabels:\n      app: forecast\n      version: v9",
        code: "WEA0002",
        resource: "Deployment forecast-v1.weather",
        field: "spec.selector.matchLabels",
        text: "does not select the Deployment's own pod labels",
    },
    Row {
        analysis: "missing app or version labels",
        replace: "        app: recommendation\n        version: v1\n",
        with: "        app: recommendation\n",
        code: "WEA0003",
        resource: "Deployment recommendation-v1.weather",
        field: "spec.template.metadata.labels",
        text: "pods have no `version` label",
    },
    Row {
        analysis: "unnamed ports",
        replace: "    - name: http\n      port: 3002\n      targetPort: http\n      appProtocol: http",
        with: "    - port: 3002\n      targetPort: http",
        code: "WEA0006",
        resource: "Service forecast.weather",
        field: "spec.ports[0]",
        text: "port 3002 is unnamed",
    },
];

#[test]
fn each_analysis_names_the_object_and_field_on_a_broken_copy() {
    let mut failures = Vec::new();
    for row in ROWS {
        let messages = broken(row.replace, row.with);
        if !has(&messages, row.code, row.resource, row.field, row.text) {
            failures.push(format!(
                "{}: want {} ({}) {}: …{}…, got:\n  {}",
                row.analysis,
                row.code,
                row.resource,
                row.field,
                row.text,
                messages
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn weights_that_do_not_add_up_are_an_error() {
    let text = shipped_text("forecast-50-50").replacen("weight: 50", "weight: 40", 1);
    let mut m = Manifests::default();
    m.add_yaml("broken.yaml", &text).unwrap();
    assert!(has(
        &check(&m),
        "WEA0004",
        "VirtualService forecast-route.weather",
        "spec.http[0].route",
        "weights add up to 90, not 100"
    ));
}

/// istiod reads `forecast.weather` in an object as fully qualified: it names no
/// Service, so the model cannot route requests addressed to it, and says so.
#[test]
fn a_mesh_host_that_names_no_service_is_a_not_modelled_warning() {
    let text = shipped_text("multiservice").replacen(
        "  hosts:\n    - forecast\n",
        "  hosts:\n    - forecast.weather\n",
        1,
    );
    let mut m = Manifests::default();
    m.add_yaml("dotted.yaml", &text).unwrap();
    let messages = check(&m);
    assert!(
        messages.iter().any(|msg| msg.level == Level::Warning
            && msg.code == "WEA0005"
            && msg.resource == "VirtualService forecast-route.weather"
            && msg.text.contains("\"forecast.weather\" names no Service")),
        "{messages:#?}"
    );
}

/// `istioctl analyze`, built from istiod's module (conformance/analyze_test.go),
/// on the same broken copies: where a row's code is one of istioctl's, istioctl
/// reports that code on that object too.
#[test]
#[ignore = "needs Go and istiod's module (scripts/setup): ./scripts/test runs it"]
fn istioctl_analyze_reports_the_same_codes_on_the_broken_copies() {
    let dir = crate::root().join("target/conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let text = shipped_text("multiservice");
    let mut failures = Vec::new();
    for (i, row) in ROWS
        .iter()
        .enumerate()
        .filter(|(_, r)| r.code.starts_with("IST"))
    {
        let file = dir.join(format!("check-{i}.yaml"));
        std::fs::write(&file, text.replacen(row.replace, row.with, 1)).unwrap();
        let found = crate::conformance::go_job(
            "TestAnalyzeJob",
            "WEATHER_ANALYZE_JOB",
            &[file],
            &format!("check-{i}"),
        );
        // istioctl names objects `(Kind namespace/name …)`; weather `Kind name.namespace`.
        let istioctl: Vec<(String, String)> = found
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|f| {
                let text = f["text"].as_str().unwrap_or("");
                let object = text
                    .split_once('(')
                    .and_then(|(_, rest)| {
                        let mut words = rest.split_whitespace();
                        let kind = words.next()?;
                        let (ns, name) = words.next()?.trim_end_matches(')').split_once('/')?;
                        Some(format!("{kind} {name}.{ns}"))
                    })
                    .unwrap_or_default();
                (f["code"].as_str().unwrap_or("").to_owned(), object)
            })
            .collect();
        if !istioctl
            .iter()
            .any(|(c, o)| c == row.code && o == row.resource)
        {
            failures.push(format!(
                "{}: weather check says {} on {}; istioctl analyze says {istioctl:?}",
                row.analysis, row.code, row.resource
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// A retry policy the route's own timeout defeats is a warning that says so.
#[test]
fn a_per_try_timeout_not_under_the_routes_timeout_is_a_warning() {
    let text = shipped_text("multiservice").replacen(
        "    - name: all-v1\n      route:",
        "    - name: all-v1\n      timeout: 1s\n      retries: {attempts: 2, perTryTimeout: 2s}\n      route:",
        1,
    );
    assert!(text.contains("perTryTimeout: 2s"));
    let mut m = Manifests::default();
    m.add_yaml("retries.yaml", &text).unwrap();
    let messages = check(&m);
    let warned: Vec<String> = messages
        .iter()
        .filter(|m| m.level == Level::Warning && m.code == "WEA0013")
        .map(|m| m.to_string())
        .collect();
    assert_eq!(warned.len(), 1, "{messages:?}");
    assert!(
        warned[0].contains("(VirtualService recommendation-route.weather) spec.http[0].retries.perTryTimeout: perTryTimeout 2s is not under the route's timeout 1s"),
        "{}",
        warned[0]
    );
}

fn warnings(text: &str, code: &str) -> Vec<String> {
    let mut m = Manifests::default();
    m.add_yaml("lab.yaml", text).unwrap();
    check(&m)
        .iter()
        .filter(|m| m.level == Level::Warning && m.code == code)
        .map(|m| m.to_string())
        .collect()
}

/// A mirror whose destination has no pods sends its copies nowhere, silently
/// on a cluster: a warning that says so.
#[test]
fn a_mirror_to_a_subset_without_pods_is_a_warning() {
    let text = shipped_text("mirror");
    assert!(warnings(&text, "WEA0014").is_empty());
    let broken = text.replacen(
        "        host: forecast\n        subset: v2\n",
        "        host: forecast\n        subset: v3\n",
        1,
    );
    assert_ne!(broken, text, "the mirror stage names forecast v2");
    let broken = broken.replacen(
        "    - name: v2\n      labels:\n        version: v2\n",
        "    - name: v2\n      labels:\n        version: v2\n    - name: v3\n      labels:\n        version: v3\n",
        2,
    );
    let warned = warnings(&broken, "WEA0014");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("(VirtualService forecast-route.weather) spec.http[0].mirror: the mirror forecast subset v3 selects no pods"),
        "{}",
        warned[0]
    );
}

/// Outlier detection that may not eject even one pod of a cluster (Istio's
/// default maxEjectionPercent, 10, with one pod) never ejects anything.
#[test]
fn outlier_detection_that_can_never_eject_is_a_warning() {
    let text = shipped_text("circuit-breaker");
    assert!(warnings(&text, "WEA0015").is_empty());
    let broken = text.replacen("      maxEjectionPercent: 100\n", "", 1);
    assert_ne!(broken, text);
    let warned = warnings(&broken, "WEA0015");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("(DestinationRule recommendation.weather) spec.trafficPolicy.outlierDetection: maxEjectionPercent 10 of 1 pod(s)"),
        "{}",
        warned[0]
    );
}

/// The shipped text of `stage` with the namespace made ambient: its labels
/// (both times it is applied) say `ambient`, with a waypoint or without.
fn made_ambient(stage: &str, waypoint: bool) -> String {
    let text = shipped_text(stage);
    let mut labels = "istio.io/dataplane-mode: ambient".to_owned();
    if waypoint {
        labels.push_str("\n    istio.io/use-waypoint: waypoint");
    }
    let ambient = text.replace("istio-injection: enabled", &labels);
    assert_ne!(
        ambient, text,
        "the shipped namespace turns sidecar injection on"
    );
    ambient
}

/// With the namespace ambient, each match on the caller's pod labels is
/// named: its waypoint drops it (istio #51565); and in every shipped stage,
/// exactly those.
#[test]
fn in_ambient_mode_the_source_label_matches_are_named() {
    let mut m = Manifests::default();
    m.add_yaml("ambient.yaml", &made_ambient("multiservice", true))
        .unwrap();
    let warned: Vec<String> = check(&m)
        .iter()
        .filter(|m| m.level == Level::Warning && m.code == "WEA0016")
        .map(|m| m.to_string())
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("(VirtualService forecast-route.weather) spec.http[0].match[0].sourceLabels: namespace weather is ambient: waypoint waypoint applies this route to forecast and drops every match with sourceLabels (version=v2: istio #51565); the rule is left with no match and never applies"),
        "{}",
        warned[0]
    );
    // The lane in the request holds in ambient mode: nothing to drop (the
    // policies written for sidecars are WEA0021's, below).
    let mut m = Manifests::default();
    m.add_yaml("lane.yaml", &made_ambient("multiservice-lane", true))
        .unwrap();
    let messages: Vec<Message> = check(&m)
        .into_iter()
        .filter(|m| m.code != "WEA0021")
        .collect();
    assert!(messages.is_empty(), "{messages:?}");
    for stage in stages() {
        let mut m = Manifests::default();
        m.add_yaml("ambient.yaml", &made_ambient(&stage, true))
            .unwrap();
        let with_source_labels = m
            .virtual_services
            .iter()
            .filter(|v| v.spec.gateways.is_empty())
            .flat_map(|v| &v.spec.http)
            .flat_map(|r| &r.matches)
            .filter(|hm| !hm.source_labels.is_empty())
            .count();
        let named = check(&m).iter().filter(|m| m.code == "WEA0016").count();
        assert_eq!(named, with_source_labels, "{stage}");
    }
}

/// Ambient without a waypoint: no http route of a mesh VirtualService applies.
#[test]
fn in_ambient_mode_without_a_waypoint_no_mesh_route_applies() {
    let mut m = Manifests::default();
    m.add_yaml("ambient.yaml", &made_ambient("multiservice", false))
        .unwrap();
    let mut warned: Vec<String> = check(&m)
        .iter()
        .filter(|m| m.code == "WEA0016")
        .map(|m| m.resource.clone())
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            "VirtualService forecast-route.weather",
            "VirtualService recommendation-route.weather"
        ],
        "the ingress's frontend-route is the gateway's, untouched"
    );
}

/// In ambient mode ztunnel enforces a policy that selects pods, and has no
/// HTTP: istio/security's ALLOW rules, which name `methods`, are left out
/// (nothing is allowed), as istiod's conversion for ztunnel leaves them out.
/// A DENY rule is kept without them, a CUSTOM policy is not enforced, and a
/// policy attached to the waypoint with targetRefs is the waypoint's.
#[test]
fn in_ambient_mode_the_policies_ztunnel_cannot_hold_are_named() {
    let codes = |text: &str| -> Vec<String> {
        let mut m = Manifests::default();
        m.add_yaml("all.yaml", text).unwrap();
        check(&m)
            .iter()
            .filter(|m| m.code == "WEA0021")
            .map(|m| m.to_string())
            .collect()
    };
    // With sidecars: nothing to say.
    assert!(codes(&shipped_text("multiservice-lane")).is_empty());
    let ambient = made_ambient("multiservice-lane", true);
    let warned = codes(&ambient);
    let named: Vec<&str> = warned
        .iter()
        .map(|w| w.split(") ").next().unwrap())
        .collect();
    assert_eq!(
        named,
        [
            "Warning [WEA0021] (AuthorizationPolicy frontend.weather",
            "Warning [WEA0021] (AuthorizationPolicy forecast.weather",
            "Warning [WEA0021] (AuthorizationPolicy recommendation.weather",
        ],
        "allow-nothing has no rule to lose: {warned:#?}"
    );
    assert!(
        warned[1].contains("spec.rules[0]: namespace weather is ambient: ztunnel enforces this policy (it selects pods, no targetRefs) and does not support HTTP attributes (found: methods); within an ALLOW policy the rule is left out, so it allows nothing"),
        "{}",
        warned[1]
    );
    // A DENY rule loses its HTTP attributes instead, and denies more.
    let deny = format!(
        "{ambient}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: no-posts\n  namespace: weather\nspec:\n  action: DENY\n  rules:\n    - to:\n        - operation:\n            methods: [POST]\n            paths: [/admin]\n      when:\n        - key: request.headers[x-debug]\n          values: [\"1\"]\n        - key: source.namespace\n          values: [other]\n"
    );
    let warned = codes(&deny);
    let no_posts: Vec<&String> = warned.iter().filter(|w| w.contains("no-posts")).collect();
    assert_eq!(no_posts.len(), 1, "{warned:#?}");
    assert!(
        no_posts[0].contains("(found: methods, paths, request.headers[x-debug]); a DENY policy's rule is enforced without them, so it denies more than written"),
        "{}",
        no_posts[0]
    );
    // CUSTOM: ztunnel does not enforce it at all.
    let custom = deny.replace(
        "action: DENY",
        "action: CUSTOM\n  provider:\n    name: ext-authz",
    );
    let warned = codes(&custom);
    assert!(
        warned.iter().any(|w| w.contains("(AuthorizationPolicy no-posts.weather) spec.action: namespace weather is ambient: ztunnel enforces a policy with no targetRefs and does not support the CUSTOM action, so nothing enforces this policy")),
        "{warned:#?}"
    );
    // Attached to the waypoint, the rule is the waypoint's, HTTP and all.
    let attached = deny.replace(
        "  action: DENY\n",
        "  targetRefs:\n    - kind: Gateway\n      group: gateway.networking.k8s.io\n      name: waypoint\n  action: DENY\n",
    );
    assert_ne!(attached, deny);
    assert!(!codes(&attached).iter().any(|w| w.contains("no-posts")));
}
