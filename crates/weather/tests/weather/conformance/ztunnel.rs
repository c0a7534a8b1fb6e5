//! `weather check`'s WEA0021 held against istiod's own conversion of
//! AuthorizationPolicies for ztunnel (`TestZtunnelPolicies` in
//! `conformance/`): the policies it names, the HTTP attributes it finds,
//! the rules ztunnel is left to match.

use std::collections::{BTreeMap, BTreeSet};

use mesh::{Mesh, analyze::analyze};

use super::go_job;
use crate::root;

/// Policies beside istio/security's, one per way ztunnel treats a policy: an
/// ALLOW with one rule it keeps and one it drops, a DENY with HTTP and L4
/// conditions, CUSTOM and AUDIT (not sent), one attached to the waypoint
/// (not ztunnel's), one in the root namespace (every ambient namespace's).
const MORE: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mixed, namespace: weather}
spec:
  selector: {matchLabels: {app: forecast}}
  rules:
    - from: [{source: {principals: [cluster.local/ns/weather/sa/frontend]}}]
      to: [{operation: {ports: ["3002"]}}]
    - from: [{source: {requestPrincipals: ["*"], remoteIpBlocks: [10.0.0.0/8]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-posts, namespace: weather}
spec:
  action: DENY
  rules:
    - to: [{operation: {methods: [POST], paths: [/admin], notHosts: [a.example]}}]
      when:
        - {key: "request.headers[x-debug]", values: ["1"]}
        - {key: source.namespace, values: [other]}
    - from: [{source: {namespaces: [other]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: weather}
spec:
  action: CUSTOM
  provider: {name: ext-authz}
  rules: [{to: [{operation: {paths: [/x]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: weather}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: [/x]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: at-waypoint, namespace: weather}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {notMethods: [GET, POST]}}]}]
"#;

/// The attributes named in a `(found: A, B)`.
fn found(message: &str) -> BTreeSet<String> {
    message
        .split_once("(found: ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| list.split(", ").map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs Go and istiod's module (scripts/setup): ./scripts/test runs it"]
fn policies_ztunnel_cannot_hold_are_named_as_istiod_converts_them() {
    let dir = crate::scratch("ztunnel");
    std::fs::write(dir.join("more.yaml"), MORE).unwrap();
    let r = root();
    let paths = vec![
        r.join("k8s"),
        r.join("istio/gateway-api/base"),
        r.join("istio/security"),
        r.join("istio/ambient"),
        r.join("istio/gateway-api/stages/multiservice"),
        dir,
    ];
    let istiod = go_job(
        "TestZtunnelPolicies",
        "WEATHER_ZTUNNEL_JOB",
        &paths,
        "ztunnel",
    );
    let m = mesh::load::load_paths(&paths).unwrap();
    let mut ours: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for msg in analyze(&m, &Mesh::compile(&m))
        .iter()
        .filter(|x| x.code == "WEA0021")
    {
        // "AuthorizationPolicy NAME.NAMESPACE"
        let (name, ns) = msg
            .resource
            .trim_start_matches("AuthorizationPolicy ")
            .split_once('.')
            .unwrap();
        ours.entry(format!("{ns}/{name}"))
            .or_default()
            .push((msg.field.clone(), msg.text.clone()));
    }
    let policies = istiod.as_array().unwrap();
    assert_eq!(policies.len(), m.authorization_policies.len(), "{istiod}");
    let mut disagreements = Vec::new();
    for p in policies {
        let name = p["name"].as_str().unwrap();
        let message = p["message"].as_str().unwrap_or("");
        let sent = p["sent"].as_bool().unwrap();
        let mine = ours.get(name).cloned().unwrap_or_default();
        let (ns, n) = name.split_once('/').unwrap();
        let ap = m
            .authorization_policies
            .iter()
            .find(|a| a.metadata.ns() == ns && a.metadata.name == n)
            .unwrap();
        let rules = ap.spec.rules.as_ref().map_or(0, Vec::len);
        let action = ap.spec.action.as_deref().unwrap_or("ALLOW");
        // The attributes: ours per rule, istiod's per policy.
        let our_found: BTreeSet<String> = mine.iter().flat_map(|(_, t)| found(t)).collect();
        if our_found != found(message) {
            disagreements.push(format!(
                "{name}: we find {our_found:?}, istiod {:?} ({message})",
                found(message)
            ));
        }
        // An action ztunnel lacks: it is not sent, and we say so.
        let unsupported_action = mine.iter().any(|(f, _)| f == "spec.action");
        if unsupported_action != message.contains("does not support the") {
            disagreements.push(format!("{name}: action: ours {mine:?}, istiod {message:?}"));
        }
        // The rules ztunnel is left to match.
        if sent {
            let flagged = mine
                .iter()
                .filter(|(f, _)| f.starts_with("spec.rules["))
                .count();
            let kept = if action == "ALLOW" {
                rules - flagged
            } else {
                rules
            };
            let groups = p["groups"].as_u64().unwrap() as usize;
            if kept != groups {
                disagreements.push(format!("{name}: we leave {kept} rule(s), istiod {groups}"));
            }
        } else if !unsupported_action && ap.spec.target_refs.is_none() {
            disagreements.push(format!(
                "{name}: istiod does not send it to ztunnel, and we do not say why"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}\n{istiod}");
    // What the comparison covered.
    let named: BTreeSet<&str> = ours.keys().map(String::as_str).collect();
    assert_eq!(
        named,
        BTreeSet::from([
            "istio-system/mesh-wide",
            "weather/audit",
            "weather/ext",
            "weather/forecast",
            "weather/frontend",
            "weather/mixed",
            "weather/no-posts",
            "weather/recommendation",
        ])
    );
}
