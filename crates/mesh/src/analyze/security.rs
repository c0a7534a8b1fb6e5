//! The security checks of `weather check`: policies that name identities which
//! cannot be there, identities that plaintext bypasses, claim routes that can
//! never match, and pods Pod Security Admission would refuse.

use serde_json::Value;

use super::{
    CLAIM_ROUTE_OUTSIDE_GATEWAY, Level, NOT_MODELLED, Object, Out, POD_SECURITY_RESTRICTED,
    PRINCIPAL_WITHOUT_STRICT_MTLS, UNKNOWN_SERVICE_ACCOUNT,
};
use crate::{
    authn::Mtls,
    authz::Policy,
    compile::MESH,
    model::{AuthorizationPolicy, Deployment, Source},
    security::{Dest, INGRESS_SERVICE_ACCOUNT},
    terms::{INGRESS_NAMESPACE, TRUST_DOMAIN, routing_claim},
};

pub(super) fn check(out: &mut Out) {
    let m = out.m;
    for (i, ap) in m.authorization_policies.iter().enumerate() {
        let o = Object::of("AuthorizationPolicy", &ap.metadata);
        if let Some(action @ ("DENY" | "CUSTOM")) = ap.spec.action.as_deref()
            && ap.spec.rules.as_ref().is_none_or(Vec::is_empty)
        {
            out.push(
                Level::Error,
                super::SCHEMA_VALIDATION_ERROR,
                &o,
                "spec.rules",
                format!("{action} action without `rules` is meaningless as it will never be triggered: Istio refuses the policy; add an empty rule `{{}}` to match every request"),
            );
        }
        service_accounts(out, &o, ap);
        let compiled = &out.mesh.security.policies[i];
        without_strict(out, &o, ap, compiled);
        for s in &compiled.skipped {
            out.push(
                Level::Warning,
                NOT_MODELLED,
                &o,
                "spec.rules",
                format!("{s}: the rule is skipped here (istiod skips a rule it cannot translate)"),
            );
        }
    }
    for p in &out.mesh.security.providers {
        if let Some(problem) = p.jwks_problem() {
            let (ns, name) = p.policy.split_once('/').unwrap_or(("", &p.policy));
            let o = Object {
                kind: "RequestAuthentication",
                namespace: ns,
                name,
            };
            let text = format!("{problem}: every token of issuer {} is refused", p.issuer);
            out.push(
                Level::Error,
                super::SCHEMA_VALIDATION_ERROR,
                &o,
                "spec.jwtRules.jwks",
                text,
            );
        }
    }
    claim_routes(out);
    pod_security(out);
}

/// Every value of a source that names an identity: principals and
/// serviceAccounts, and their `not` forms.
fn named_identities<'a>(s: &'a Source, policy_ns: &'a str) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let lists = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
    ];
    for (field, list) in lists {
        for v in list.iter().flatten() {
            let parsed = v
                .strip_prefix(&format!("{TRUST_DOMAIN}/ns/"))
                .and_then(|rest| rest.split_once("/sa/"));
            if let Some((ns, sa)) = parsed
                && !ns.contains('*')
                && !sa.contains('*')
            {
                out.push((field, ns.to_owned(), sa.to_owned()));
            }
        }
    }
    let sas = [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ];
    for (field, list) in sas {
        for v in list.iter().flatten() {
            let (ns, sa) = v.split_once('/').unwrap_or((policy_ns, v));
            out.push((field, ns.to_owned(), sa.to_owned()));
        }
    }
    out
}

/// A policy naming a ServiceAccount that no manifest defines, in a namespace
/// the manifests do define: no pod has that identity, so an ALLOW rule for it
/// lets nothing through and a DENY rule stops nothing.
fn service_accounts(out: &mut Out, o: &Object<'_>, ap: &AuthorizationPolicy) {
    let (m, ingress) = (out.m, &out.mesh.ingress);
    let known_ns = |ns: &str| {
        m.namespaces.iter().any(|n| n.metadata.name == ns)
            || m.service_accounts.iter().any(|s| s.metadata.ns() == ns)
    };
    let exists = |ns: &str, sa: &str| {
        sa == "default"
            || (ns == INGRESS_NAMESPACE
                && (sa == INGRESS_SERVICE_ACCOUNT || sa == ingress.service_account))
            || m.service_accounts
                .iter()
                .any(|s| s.metadata.ns() == ns && s.metadata.name == sa)
    };
    let mut findings = Vec::new();
    for (r, rule) in ap.spec.rules.iter().flatten().enumerate() {
        for (f, from) in rule.from.iter().enumerate() {
            for (field, ns, sa) in named_identities(&from.source, ap.metadata.ns()) {
                if known_ns(&ns) && !exists(&ns, &sa) {
                    findings.push((
                        format!("spec.rules[{r}].from[{f}].source.{field}"),
                        format!(
                            "no ServiceAccount {sa} in namespace {ns}: no pod has this identity, so the rule never matches it"
                        ),
                    ));
                }
            }
        }
    }
    for (field, text) in findings {
        out.push(Level::Error, UNKNOWN_SERVICE_ACCOUNT, o, field, text);
    }
}

fn names_peer_identity(s: &Source) -> bool {
    let set = |l: &Option<Vec<String>>| l.as_ref().is_some_and(|l| !l.is_empty());
    set(&s.principals)
        || set(&s.not_principals)
        || set(&s.namespaces)
        || set(&s.not_namespaces)
        || set(&s.service_accounts)
        || set(&s.not_service_accounts)
}

/// A rule keyed on the peer's identity, on a workload that also takes
/// plaintext: such a request has no identity, so it slips past a DENY rule
/// (and every `not` of an identity).
fn without_strict(out: &mut Out, o: &Object<'_>, ap: &AuthorizationPolicy, p: &Policy) {
    let keyed = ap.spec.rules.iter().flatten().any(|r| {
        r.from.iter().any(|f| names_peer_identity(&f.source))
            || r.when.iter().any(|c| {
                matches!(
                    c.key.as_str(),
                    "source.principal" | "source.namespace" | "source.serviceAccount"
                )
            })
    });
    if !keyed {
        return;
    }
    let mesh = out.mesh;
    let open: Vec<String> = mesh
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| p.applies_to(&w.namespace, &w.labels))
        .filter_map(|(i, w)| {
            let (mode, _) = mesh.security.mtls(Dest::Workload(i));
            (mode != Mtls::Strict).then(|| format!("{} ({})", w.name, mode.name()))
        })
        .collect();
    if !open.is_empty() {
        out.push(
            Level::Warning,
            PRINCIPAL_WITHOUT_STRICT_MTLS,
            o,
            "spec.rules",
            format!(
                "names peer identities, but {} also take{} plaintext, which carries no identity: apply a PeerAuthentication with mtls.mode STRICT (istio/security/)",
                open.join(", "),
                if open.len() == 1 { "s" } else { "" }
            ),
        );
    }
}

/// `@request.auth.claims` matches in routes a sidecar takes: only a gateway
/// verifies a JWT before routing, so there they never match.
fn claim_routes(out: &mut Out) {
    let mut findings = Vec::new();
    for vs in &out.m.virtual_services {
        let bound_to_mesh =
            vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == MESH);
        for (r, rule) in vs.spec.http.iter().enumerate() {
            for (i, hm) in rule.matches.iter().enumerate() {
                let on_mesh = if hm.gateways.is_empty() {
                    bound_to_mesh
                } else {
                    hm.gateways.iter().any(|g| g == MESH)
                };
                if !on_mesh {
                    continue;
                }
                let names = hm.headers.keys().chain(hm.without_headers.keys());
                for name in names.filter(|n| routing_claim(n).is_some()) {
                    findings.push((
                        Object::of("VirtualService", &vs.metadata),
                        format!("spec.http[{r}].match[{i}].headers.{name}"),
                    ));
                }
            }
        }
    }
    for (o, field) in findings {
        out.push(
            Level::Error,
            CLAIM_ROUTE_OUTSIDE_GATEWAY,
            &o,
            field,
            "JWT claims can only be matched by a gateway's routes (only there is a token verified before routing): for sidecars (mesh) this match never holds",
        );
    }
}

/// Deployments in a namespace that enforces Pod Security's `restricted`
/// level, checked for what that level requires of a pod.
fn pod_security(out: &mut Out) {
    let m = out.m;
    let restricted = |ns: &str| {
        m.namespaces.iter().any(|n| {
            n.metadata.name == ns
                && n.metadata
                    .labels
                    .get("pod-security.kubernetes.io/enforce")
                    .map(String::as_str)
                    == Some("restricted")
        })
    };
    let mut findings = Vec::new();
    for d in m.deployments.iter().filter(|d| restricted(d.metadata.ns())) {
        for (field, why) in restricted_violations(d) {
            findings.push((Object::of("Deployment", &d.metadata), field, why));
        }
    }
    for (o, field, why) in findings {
        out.push(
            Level::Error,
            POD_SECURITY_RESTRICTED,
            &o,
            field,
            format!("{why}: Pod Security Admission (restricted, enforced on the namespace) refuses the pod"),
        );
    }
}

/// What the `restricted` Pod Security Standard finds wrong with a pod.
pub(crate) fn restricted_violations(d: &Deployment) -> Vec<(String, String)> {
    let spec = &d.spec.template.spec;
    let pod = spec.security_context.as_ref();
    let get = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).cloned();
    let mut out = Vec::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let at = |f: &str| format!("spec.template.spec.containers[{i}].securityContext.{f}");
        let sc = c.security_context.as_ref();
        let non_root = get(sc, "runAsNonRoot").or_else(|| get(pod, "runAsNonRoot"));
        if non_root != Some(Value::Bool(true)) {
            out.push((
                at("runAsNonRoot"),
                "runAsNonRoot must be true (on the pod or the container)".into(),
            ));
        }
        let user = get(sc, "runAsUser").or_else(|| get(pod, "runAsUser"));
        if user == Some(Value::from(0)) {
            out.push((at("runAsUser"), "runAsUser must not be 0".into()));
        }
        if get(sc, "allowPrivilegeEscalation") != Some(Value::Bool(false)) {
            out.push((
                at("allowPrivilegeEscalation"),
                "allowPrivilegeEscalation must be false".into(),
            ));
        }
        if get(sc, "privileged") == Some(Value::Bool(true)) {
            out.push((at("privileged"), "privileged containers are refused".into()));
        }
        let caps = get(sc, "capabilities");
        let drops_all = caps
            .as_ref()
            .and_then(|c| c.get("drop"))
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            out.push((at("capabilities.drop"), "capabilities must drop ALL".into()));
        }
        let adds_other = caps
            .as_ref()
            .and_then(|c| c.get("add"))
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"));
        if adds_other {
            out.push((
                at("capabilities.add"),
                "only NET_BIND_SERVICE may be added".into(),
            ));
        }
        let seccomp = get(sc, "seccompProfile")
            .or_else(|| get(pod, "seccompProfile"))
            .and_then(|s| s.get("type").and_then(Value::as_str).map(str::to_owned));
        if !matches!(seccomp.as_deref(), Some("RuntimeDefault" | "Localhost")) {
            out.push((
                at("seccompProfile"),
                "seccompProfile.type must be RuntimeDefault or Localhost".into(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Mesh, analyze::analyze, load::Manifests};

    fn codes(yaml: &str) -> Vec<(&'static str, String)> {
        let mut m = Manifests::default();
        m.add_yaml("t.yaml", yaml).expect("loads");
        let mesh = Mesh::compile(&m);
        analyze(&m, &mesh)
            .into_iter()
            .map(|msg| (msg.code, msg.field))
            .collect()
    }

    const BASE: &str = "apiVersion: v1
kind: Namespace
metadata: {name: weather, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: frontend, namespace: weather}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: forecast-v1, namespace: weather, labels: {app: forecast, version: v1}}
spec:
  selector: {matchLabels: {app: forecast, version: v1}}
  template:
    metadata: {labels: {app: forecast, version: v1}}
    spec:
      serviceAccountName: frontend
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: forecast
          image: weather/forecast:v1
          ports: [{containerPort: 3002}]
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
";

    #[test]
    fn a_policy_naming_a_missing_service_account_is_an_error() {
        let found = codes(&format!(
            "{BASE}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: forecast, namespace: weather}}
spec:
  rules:
    - from: [{{source: {{principals: [cluster.local/ns/weather/sa/frontnd, cluster.local/ns/weather/sa/frontend]}}}}]
"
        ));
        assert!(found.contains(&("WEA0008", "spec.rules[0].from[0].source.principals".into())));
        assert_eq!(found.iter().filter(|(c, _)| *c == "WEA0008").count(), 1);
        // Without STRICT mTLS the principal can be bypassed by plaintext.
        assert!(found.iter().any(|(c, _)| *c == "WEA0009"));
        let strict = codes(&format!(
            "{BASE}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: weather}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: forecast, namespace: weather}}
spec:
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/weather/sa/frontend]}}}}]}}]
"
        ));
        assert!(
            !strict
                .iter()
                .any(|(c, _)| *c == "WEA0009" || *c == "WEA0008")
        );
    }

    #[test]
    fn a_claim_route_on_sidecars_and_a_pod_restricted_refuses_are_errors() {
        let found = codes(&format!(
            "{BASE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: forecast-route, namespace: weather}}
spec:
  hosts: [forecast]
  http:
    - match: [{{headers: {{'@request.auth.claims.groups': {{exact: testers}}}}}}]
      route: [{{destination: {{host: forecast}}}}]
"
        ));
        assert!(found.contains(&(
            "WEA0010",
            "spec.http[0].match[0].headers.@request.auth.claims.groups".into()
        )));
        assert!(!found.iter().any(|(c, _)| *c == "WEA0011"));
        let root = BASE.replace("allowPrivilegeEscalation: false, ", "");
        let found = codes(&root);
        assert!(found.contains(&(
            "WEA0011",
            "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation".into()
        )));
    }
}
