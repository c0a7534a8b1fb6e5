//! The authorization model, rule by rule.

use super::*;
use crate::load::Manifests;

/// The rules of one ALLOW policy `a` in `weather`, as YAML under `rules:`.
fn rules(rules: &str) -> Vec<Policy> {
    policies(&format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a, namespace: weather}}\nspec:\n  rules:\n{rules}"
    ))
}

fn policies(yaml: &str) -> Vec<Policy> {
    let mut m = Manifests::default();
    m.add_yaml("test.yaml", yaml).expect("loads");
    m.authorization_policies
        .iter()
        .map(Policy::compile)
        .collect()
}

fn subject<'a>(
    peer: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    headers: &'a [(String, String)],
) -> Subject<'a, [(String, String)]> {
    Subject {
        peer,
        jwt: None,
        host: "forecast:3002",
        port: 3002,
        method,
        path,
        headers,
    }
}

const FRONTEND: &str = "cluster.local/ns/weather/sa/frontend";
const RECOMMENDATION: &str = "cluster.local/ns/weather/sa/recommendation";

const LEAST_PRIVILEGE: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: forecast, namespace: weather}
spec:
  selector: {matchLabels: {app: forecast}}
  action: ALLOW
  rules:
    - from: [{source: {principals: [cluster.local/ns/weather/sa/frontend]}}]
      to: [{operation: {methods: [GET], paths: [/forecast, /cities]}}]
";

#[test]
fn an_allow_policy_lets_through_only_what_it_names() {
    let p = policies(LEAST_PRIVILEGE);
    let h: [(String, String); 0] = [];
    let d = |peer, method, path| decide(p.iter(), &subject(peer, method, path, &h));
    assert!(d(Some(FRONTEND), "GET", "/forecast").allowed());
    let denied = d(Some(RECOMMENDATION), "GET", "/forecast");
    assert!(matches!(denied, Decision::NotAllowed { .. }));
    assert_eq!(
        denied.describe(),
        "denied: no rule of the ALLOW policy weather/forecast matches: 403 RBAC: access denied"
    );
    assert!(!d(Some(FRONTEND), "POST", "/forecast").allowed());
    assert!(!d(Some(FRONTEND), "GET", "/metrics").allowed());
    // Plaintext: no identity, no principal matches.
    assert!(!d(None, "GET", "/forecast").allowed());
}

#[test]
fn deny_comes_before_allow_and_an_empty_allow_policy_allows_nothing() {
    let p = policies(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: weather}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-metrics, namespace: weather}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/metrics*]}}], from: [{source: {notNamespaces: [weather]}}]}]
",
    );
    let h: [(String, String); 0] = [];
    let d = |peer, path| decide(p.iter(), &subject(peer, "GET", path, &h));
    assert_eq!(
        d(None, "/metrics").by(),
        Some(("weather/no-metrics".to_owned(), 0))
    );
    assert_eq!(
        d(Some(FRONTEND), "/metrics").by(),
        Some(("weather/allow-all".to_owned(), 0))
    );
    let nothing = policies(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: weather}
spec: {}
",
    );
    assert!(!decide(nothing.iter(), &subject(Some(FRONTEND), "GET", "/", &h)).allowed());
    assert!(matches!(
        decide(
            std::iter::empty::<&Policy>(),
            &subject(None, "GET", "/", &h)
        ),
        Decision::NoPolicy
    ));
}

#[test]
fn values_are_exact_prefix_suffix_or_present() {
    assert!(glob("*", "x") && !glob("*", ""));
    assert!(glob("/api*", "/api/x") && !glob("/api*", "/x/api"));
    assert!(glob("*.json", "/a.json") && !glob("*.json", "/a.jsonx"));
    assert!(glob("GET", "GET") && !glob("GET", "get"));
    assert!(host_glob("Forecast*", "forecast:3002"));
}

#[test]
fn namespaces_and_service_accounts_read_the_identity() {
    let p = rules(
        "    - from: [{source: {namespaces: [weath*]}}]
      to: [{operation: {ports: ['3002']}}]
    - from: [{source: {serviceAccounts: [recommendation]}}]
      when: [{key: 'request.headers[x-probe]', values: ['*']}]
",
    );
    let none: [(String, String); 0] = [];
    let probe = [("x-probe".to_owned(), String::new())];
    assert!(decide(p.iter(), &subject(Some(FRONTEND), "GET", "/", &none)).allowed());
    assert!(
        !decide(
            p.iter(),
            &subject(Some("cluster.local/ns/other/sa/x"), "GET", "/", &none)
        )
        .allowed()
    );
    assert_eq!(
        decide(p.iter(), &subject(Some(RECOMMENDATION), "GET", "/", &probe)).by(),
        Some(("weather/a".to_owned(), 0))
    );
}

#[test]
fn request_principals_and_claims_read_the_verified_jwt() {
    let p = policies(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: testers, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
    - from: [{source: {requestPrincipals: [weather-frontend/*]}}]
      when: [{key: 'request.auth.claims[groups]', values: [testers]}]
",
    );
    let h: [(String, String); 0] = [];
    let claims: Claims = serde_json::from_str(
        r#"{"iss":"weather-frontend","sub":"tester","groups":["beta","testers"]}"#,
    )
    .unwrap();
    let mut s = subject(None, "GET", "/", &h);
    assert!(!decide(p.iter(), &s).allowed());
    s.jwt = Some(&claims);
    assert!(decide(p.iter(), &s).allowed());
    let other: Claims =
        serde_json::from_str(r#"{"iss":"weather-frontend","sub":"ann","groups":"users"}"#).unwrap();
    s.jwt = Some(&other);
    assert!(!decide(p.iter(), &s).allowed());
    let ingress = crate::terms::ingress_labels();
    assert!(p[0].applies_to("istio-system", ingress));
    // In the root namespace: a pod with those labels anywhere, none other.
    assert!(p[0].applies_to("weather", ingress));
    assert!(!p[0].applies_to("weather", &Labels::from([("app".into(), "x".into())])));
}

#[test]
fn rules_naming_what_is_not_modelled_are_skipped_and_said() {
    let p = rules(
        "    - from: [{source: {ipBlocks: [10.0.0.0/8]}}]
    - when: [{key: source.ip, values: [10.0.0.1]}]
    - when: [{key: nonsense, values: [x]}]
",
    );
    assert_eq!(
        p[0].skipped,
        vec![
            "rules[0]: source.ipBlocks is not modelled",
            "rules[1]: when source.ip is not modelled",
            "rules[2]: unknown attribute nonsense",
        ]
    );
}
