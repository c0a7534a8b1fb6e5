//! Istio's authorization, as the destination's proxy enforces it
//! (docs/architecture.md, "Security the model enforces"): which
//! AuthorizationPolicies apply to a workload, and whether they let a request
//! through. Written from istiod's translation (`pilot/pkg/security/authz/model`
//! and `builder`), which turns each rule into an Envoy RBAC policy:
//!
//! - a policy applies to the pods its `selector` picks in its namespace, or to
//!   every pod of its namespace without one; a policy in the root namespace
//!   (`istio-system`) applies in every namespace;
//! - CUSTOM policies first: they name an external authorizer among the mesh's
//!   extension providers, and the mesh this project installs has none, so
//!   istiod turns each into a DENY of what its rules match ("failed to process
//!   CUSTOM action ..., will generate deny configs"); then DENY policies: one
//!   that matches denies (403 `RBAC: access denied`); then ALLOW policies: if
//!   any applies, one must match, or the request is denied; with none,
//!   everything is allowed. AUDIT changes nothing;
//! - a rule matches when one of its `from`, one of its `to` and every `when`
//!   hold (an empty list holds); within a `source` or `operation` every field
//!   set must hold, by one of its values, and none of its `not` values;
//! - values are exact, `prefix*`, `*suffix` or `*` (any non-empty value), as
//!   `matcher.StringMatcherWithPrefix` builds them; hosts ignore case;
//! - `principals`, `namespaces` and `serviceAccounts` read the peer's mTLS
//!   identity (`cluster.local/ns/NS/sa/SA`): a plaintext request has none, so
//!   it matches none of them (and every `not` of them);
//!   `requestPrincipals` (`iss/sub`) and `request.auth.*` read a JWT verified
//!   by a RequestAuthentication ([`crate::authn`]);
//! - a rule istiod cannot translate is skipped (`skipped invalid rule`); one
//!   naming what the model does not know (IP blocks, SNI, Envoy metadata) is
//!   skipped here too, and reported as not modelled.

use regex::Regex;
use serde_json::Value;

use crate::{
    model::{AuthorizationPolicy, AuthzRule, Condition, Labels, Operation, Source},
    terms::{Claims, HeaderLookup, claim_values, selects},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

/// A request as the destination's proxy sees it.
pub struct Subject<'a, H: HeaderLookup + ?Sized> {
    /// The peer's mTLS identity (`cluster.local/ns/NS/sa/SA`); `None` for
    /// plaintext.
    pub peer: Option<&'a str>,
    /// The claims of a JWT a RequestAuthentication verified.
    pub jwt: Option<&'a Claims>,
    /// `Host` / `:authority`.
    pub host: &'a str,
    /// The workload's port the request arrived on.
    pub port: u16,
    pub method: &'a str,
    /// The normalized path, without its query.
    pub path: &'a str,
    pub headers: &'a H,
}

/// A policy, compiled.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub namespace: String,
    /// `None`: every pod of the namespace (of the mesh, in the root namespace).
    pub selector: Option<Labels>,
    /// A `targetRef`: Istio attaches such a policy to Gateway API gateways
    /// and waypoints only, never to a sidecar or a classic gateway.
    pub targeted: bool,
    pub action: Action,
    rules: Vec<Rule>,
    /// Rules skipped, and why: `rules[1]: ipBlocks is not modelled`.
    pub skipped: Vec<String>,
}

#[derive(Debug, Default)]
struct Rule {
    index: usize,
    from: Vec<Vec<Field>>,
    to: Vec<Vec<Field>>,
    when: Vec<Field>,
}

/// One field of a source, operation or condition: it holds when one of
/// `values` matches and none of `not`.
#[derive(Debug)]
struct Field {
    attribute: Attribute,
    values: Vec<Value_>,
    not: Vec<Value_>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Attribute {
    Principal,
    Namespace,
    ServiceAccount,
    TrustDomain,
    RequestPrincipal,
    Audience,
    Presenter,
    Claim(Vec<String>),
    Host,
    Port,
    Method,
    Path,
    Header(String),
}

/// A value to compare with, compiled.
#[derive(Debug)]
enum Value_ {
    /// exact, `prefix*`, `*suffix`, `*`: see [`glob`].
    Glob(String),
    /// Case-insensitive [`glob`], for hosts.
    HostGlob(String),
    /// Envoy's header matcher: `*` means present, even empty.
    Header(String),
    Regex(Regex),
    /// `iss/sub` patterns, as `requestPrincipalGenerator` splits them.
    RequestPrincipal {
        iss: Pattern,
        sub: Pattern,
    },
    Port(u16),
}

#[derive(Debug)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    NonEmpty,
}

impl Pattern {
    fn matches(&self, v: &str) -> bool {
        match self {
            Pattern::Exact(e) => v == e,
            Pattern::Prefix(p) => v.starts_with(p.as_str()),
            Pattern::Suffix(s) => v.ends_with(s.as_str()),
            Pattern::NonEmpty => !v.is_empty(),
        }
    }
}

/// Istio's value patterns: `*` is any non-empty value, `*x` a suffix, `x*` a
/// prefix, anything else exact.
pub fn glob(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        !value.is_empty()
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else {
        value == pattern
    }
}

/// [`glob`] ignoring ASCII case, as `HostMatcher` does.
fn host_glob(pattern: &str, value: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// Envoy's header matcher as `matcher.HeaderMatcher` builds it: `*` is a
/// present match, which an empty value satisfies.
fn header_glob(pattern: &str, value: &str) -> bool {
    pattern == "*" || glob(pattern, value)
}

impl Policy {
    /// Compiles one policy. Rules naming what the model does not know are kept
    /// in [`Policy::skipped`].
    pub fn compile(p: &AuthorizationPolicy) -> Policy {
        let namespace = p.metadata.ns().to_owned();
        let action = match p.spec.action.as_deref() {
            Some("DENY") => Action::Deny,
            Some("AUDIT") => Action::Audit,
            Some("CUSTOM") => Action::Custom,
            _ => Action::Allow,
        };
        let mut rules = Vec::new();
        let mut skipped = Vec::new();
        for (i, r) in p.spec.rules.iter().flatten().enumerate() {
            match rule(i, r, &namespace) {
                Ok(rule) => rules.push(rule),
                Err(why) => skipped.push(format!("rules[{i}]: {why}")),
            }
        }
        Policy {
            name: p.metadata.name.clone(),
            namespace,
            selector: p
                .spec
                .selector
                .as_ref()
                .map(|s| s.match_labels.clone())
                .filter(|l| !l.is_empty()),
            targeted: p.spec.target_ref.is_some() || p.spec.target_refs.is_some(),
            action,
            rules,
            skipped,
        }
    }

    /// Whether the policy applies to a pod with these labels in `namespace`.
    pub fn applies_to(&self, namespace: &str, labels: &Labels) -> bool {
        !self.targeted && selects(&self.namespace, self.selector.as_ref(), namespace, labels)
    }

    /// The first rule that matches, by its index in `rules`.
    pub fn matching_rule<H: HeaderLookup + ?Sized>(&self, s: &Subject<'_, H>) -> Option<usize> {
        self.rules.iter().find(|r| r.matches(s)).map(|r| r.index)
    }

    /// `namespace/name`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the policies of a workload say of one request.
#[derive(Clone, Debug)]
pub enum Decision<'p> {
    /// No ALLOW, DENY or CUSTOM policy applies.
    NoPolicy,
    /// An ALLOW policy's rule matched: the policy, the rule's index.
    Allowed { policy: &'p Policy, rule: usize },
    /// A DENY policy's rule matched.
    DeniedBy { policy: &'p Policy, rule: usize },
    /// A CUSTOM policy's rule matched, and its provider is no extension
    /// provider of the mesh: istiod denies what it matches.
    DeniedByCustom { policy: &'p Policy, rule: usize },
    /// ALLOW policies apply, and none matched: these.
    NotAllowed { policies: Vec<&'p Policy> },
}

impl Decision<'_> {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::NoPolicy | Decision::Allowed { .. })
    }

    /// The policy and rule that decided, as `namespace/name` and index.
    pub fn by(&self) -> Option<(String, usize)> {
        match self {
            Decision::Allowed { policy, rule }
            | Decision::DeniedBy { policy, rule }
            | Decision::DeniedByCustom { policy, rule } => Some((policy.reference(), *rule)),
            _ => None,
        }
    }

    /// One line, for `weather route` and logs.
    pub fn describe(&self) -> String {
        match self {
            Decision::NoPolicy => "no AuthorizationPolicy applies: allowed".to_owned(),
            Decision::Allowed { policy, rule } => {
                format!(
                    "allowed by AuthorizationPolicy {} rules[{rule}]",
                    policy.reference()
                )
            }
            Decision::DeniedBy { policy, rule } => format!(
                "denied by AuthorizationPolicy {} (DENY) rules[{rule}]: 403 RBAC: access denied",
                policy.reference()
            ),
            Decision::DeniedByCustom { policy, rule } => format!(
                "denied by AuthorizationPolicy {} (CUSTOM) rules[{rule}]: its provider is no extension provider of the mesh, so istiod denies what it matches: 403 RBAC: access denied",
                policy.reference()
            ),
            Decision::NotAllowed { policies } => {
                let names: Vec<String> = policies.iter().map(|p| p.reference()).collect();
                format!(
                    "denied: no rule of the ALLOW polic{} {} matches: 403 RBAC: access denied",
                    if names.len() == 1 { "y" } else { "ies" },
                    names.join(", ")
                )
            }
        }
    }
}

/// CUSTOM, DENY, then ALLOW, over the policies that apply (in the order
/// given).
pub fn decide<'p, H: HeaderLookup + ?Sized>(
    policies: impl Iterator<Item = &'p Policy> + Clone,
    s: &Subject<'_, H>,
) -> Decision<'p> {
    for p in policies.clone().filter(|p| p.action == Action::Custom) {
        if let Some(rule) = p.matching_rule(s) {
            return Decision::DeniedByCustom { policy: p, rule };
        }
    }
    for p in policies.clone().filter(|p| p.action == Action::Deny) {
        if let Some(rule) = p.matching_rule(s) {
            return Decision::DeniedBy { policy: p, rule };
        }
    }
    let mut allow = policies.filter(|p| p.action == Action::Allow).peekable();
    if allow.peek().is_none() {
        return Decision::NoPolicy;
    }
    let mut tried = Vec::new();
    for p in allow {
        if let Some(rule) = p.matching_rule(s) {
            return Decision::Allowed { policy: p, rule };
        }
        tried.push(p);
    }
    Decision::NotAllowed { policies: tried }
}

impl Rule {
    fn matches<H: HeaderLookup + ?Sized>(&self, s: &Subject<'_, H>) -> bool {
        let any = |sections: &[Vec<Field>]| {
            sections.is_empty() || sections.iter().any(|f| f.iter().all(|f| f.holds(s)))
        };
        any(&self.from) && any(&self.to) && self.when.iter().all(|f| f.holds(s))
    }
}

impl Field {
    fn holds<H: HeaderLookup + ?Sized>(&self, s: &Subject<'_, H>) -> bool {
        let hit = |values: &[Value_]| values.iter().any(|v| self.attribute.matches(v, s));
        (self.values.is_empty() || hit(&self.values)) && !hit(&self.not)
    }
}

impl Attribute {
    fn matches<H: HeaderLookup + ?Sized>(&self, v: &Value_, s: &Subject<'_, H>) -> bool {
        let peer = || s.peer.map(|p| format!("spiffe://{p}"));
        match (self, v) {
            (Attribute::Principal, Value_::Glob(g)) => s.peer.is_some_and(|p| glob(g, p)),
            (
                Attribute::Namespace | Attribute::ServiceAccount | Attribute::TrustDomain,
                Value_::Regex(r),
            ) => peer().is_some_and(|p| r.is_match(&p)),
            (Attribute::RequestPrincipal, Value_::RequestPrincipal { iss, sub }) => {
                s.jwt.is_some_and(|c| {
                    let claim = |k: &str| c.get(k).and_then(Value::as_str);
                    claim("iss").is_some_and(|i| iss.matches(i))
                        && claim("sub").is_some_and(|u| sub.matches(u))
                })
            }
            (Attribute::Audience, Value_::Glob(g)) => claim_matches(s.jwt, &["aud"], g),
            (Attribute::Presenter, Value_::Glob(g)) => claim_matches(s.jwt, &["azp"], g),
            (Attribute::Claim(path), Value_::Glob(g)) => {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                claim_matches(s.jwt, &path, g)
            }
            (Attribute::Host, Value_::HostGlob(g)) => host_glob(g, s.host),
            (Attribute::Port, Value_::Port(p)) => s.port == *p,
            (Attribute::Method, Value_::Header(g)) => header_glob(g, s.method),
            (Attribute::Path, Value_::Glob(g)) => glob(g, s.path),
            (Attribute::Header(name), Value_::Header(g)) => s
                .headers
                .header(name)
                .is_some_and(|value| header_glob(g, &value)),
            _ => false,
        }
    }
}

/// A claim (nested by `path`) that is a string matching `g`, or a list with
/// one string matching it (Envoy's list matcher `oneOf`, and the string
/// itself, as `MetadataListValueMatcher` builds it for Istio's extended JWT).
fn claim_matches(claims: Option<&Claims>, path: &[&str], g: &str) -> bool {
    claim_values(claims, path).iter().any(|v| glob(g, v))
}

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

/// A field from its values and `not` values; `None` when neither is set.
fn field(
    attribute: Attribute,
    values: &[String],
    not: &[String],
    compile: &dyn Fn(&str) -> Result<Value_, String>,
) -> Result<Option<Field>, String> {
    if values.is_empty() && not.is_empty() {
        return Ok(None);
    }
    let all = |vs: &[String]| vs.iter().map(|v| compile(v)).collect::<Result<Vec<_>, _>>();
    Ok(Some(Field {
        attribute,
        values: all(values)?,
        not: all(not)?,
    }))
}

fn glob_value(v: &str) -> Result<Value_, String> {
    Ok(Value_::Glob(v.to_owned()))
}

fn header_value(v: &str) -> Result<Value_, String> {
    Ok(Value_::Header(v.to_owned()))
}

/// `.*/ns/NS/.*`, `*` in NS standing for `.*`, as `srcNamespaceGenerator`.
fn namespace_value(v: &str) -> Result<Value_, String> {
    let ns = v
        .split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*");
    regex_value(&format!(".*/ns/{ns}/.*"))
}

fn regex_value(r: &str) -> Result<Value_, String> {
    Regex::new(&format!("^(?:{r})$"))
        .map(Value_::Regex)
        .map_err(|e| e.to_string())
}

fn request_principal_value(v: &str) -> Result<Value_, String> {
    use Pattern::*;
    let (iss, sub, found) = match v.rfind('/') {
        Some(i) => (&v[..i], &v[i + 1..], true),
        None => (v, "", false),
    };
    let trim_start = |s: &str| s.strip_prefix('*').unwrap_or(s).to_owned();
    let trim_end = |s: &str| s.strip_suffix('*').unwrap_or(s).to_owned();
    let (iss, sub) = if v == "*" {
        (NonEmpty, NonEmpty)
    } else if v.starts_with('*') {
        if found {
            let iss = if iss == "*" {
                NonEmpty
            } else {
                Suffix(trim_start(iss))
            };
            (iss, Exact(sub.to_owned()))
        } else {
            (NonEmpty, Suffix(trim_start(v)))
        }
    } else if v.ends_with('*') {
        if found {
            let sub = if sub == "*" {
                NonEmpty
            } else {
                Prefix(trim_end(sub))
            };
            (Exact(iss.to_owned()), sub)
        } else {
            (Prefix(trim_end(v)), NonEmpty)
        }
    } else {
        (Exact(iss.to_owned()), Exact(sub.to_owned()))
    };
    Ok(Value_::RequestPrincipal { iss, sub })
}

fn not_modelled(what: &str) -> Result<Option<Field>, String> {
    Err(format!("{what} is not modelled"))
}

fn source(s: &Source, policy_ns: &str) -> Result<Vec<Field>, String> {
    if !list(&s.ip_blocks).is_empty() || !list(&s.not_ip_blocks).is_empty() {
        not_modelled("source.ipBlocks")?;
    }
    if !list(&s.remote_ip_blocks).is_empty() || !list(&s.not_remote_ip_blocks).is_empty() {
        not_modelled("source.remoteIpBlocks")?;
    }
    let ns = policy_ns.to_owned();
    let service_account = move |v: &str| {
        let (n, sa) = v.split_once('/').unwrap_or((ns.as_str(), v));
        regex_value(&format!(
            "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
            regex::escape(n),
            regex::escape(sa)
        ))
    };
    let trust_domain = |v: &str| {
        if v == "*" {
            regex_value("spiffe://.*")
        } else if !v.contains('*') {
            regex_value(&format!("spiffe://{}/.*", regex::escape(v)))
        } else {
            let (a, b) = v.split_once('*').unwrap_or((v, ""));
            regex_value(&format!(
                "spiffe://{}[^/]*{}/.*",
                regex::escape(a),
                regex::escape(b)
            ))
        }
    };
    Ok([
        field(
            Attribute::Principal,
            list(&s.principals),
            list(&s.not_principals),
            &glob_value,
        )?,
        field(
            Attribute::RequestPrincipal,
            list(&s.request_principals),
            list(&s.not_request_principals),
            &request_principal_value,
        )?,
        field(
            Attribute::Namespace,
            list(&s.namespaces),
            list(&s.not_namespaces),
            &namespace_value,
        )?,
        field(
            Attribute::ServiceAccount,
            list(&s.service_accounts),
            list(&s.not_service_accounts),
            &service_account,
        )?,
        field(
            Attribute::TrustDomain,
            list(&s.trust_domains),
            list(&s.not_trust_domains),
            &trust_domain,
        )?,
    ]
    .into_iter()
    .flatten()
    .collect())
}

fn port_value(v: &str) -> Result<Value_, String> {
    v.parse::<u16>()
        .map(Value_::Port)
        .map_err(|_| format!("port {v:?} is not a number from 0 to 65535"))
}

fn operation(o: &Operation) -> Result<Vec<Field>, String> {
    let path = |v: &str| {
        if v.contains("{*}") || v.contains("{**}") {
            Err(format!("path template {v:?} is not modelled"))
        } else {
            glob_value(v)
        }
    };
    let host = |v: &str| Ok(Value_::HostGlob(v.to_owned()));
    Ok([
        field(Attribute::Host, list(&o.hosts), list(&o.not_hosts), &host)?,
        field(
            Attribute::Port,
            list(&o.ports),
            list(&o.not_ports),
            &port_value,
        )?,
        field(
            Attribute::Method,
            list(&o.methods),
            list(&o.not_methods),
            &header_value,
        )?,
        field(Attribute::Path, list(&o.paths), list(&o.not_paths), &path)?,
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// `request.auth.claims[a][b]` as `["a", "b"]`.
fn claim_path(key: &str) -> Option<Vec<String>> {
    let inner = key
        .strip_prefix("request.auth.claims[")?
        .strip_suffix(']')?;
    Some(inner.split("][").map(str::to_owned).collect())
}

fn condition(c: &Condition, policy_ns: &str) -> Result<Option<Field>, String> {
    let (values, not) = (list(&c.values), list(&c.not_values));
    let k = c.key.as_str();
    let header = k
        .strip_prefix("request.headers[")
        .and_then(|h| h.strip_suffix(']'));
    let principal_src = Source {
        principals: Some(values.to_vec()),
        not_principals: Some(not.to_vec()),
        ..Source::default()
    };
    match k {
        "source.principal" => Ok(source(&principal_src, policy_ns)?.pop()),
        "source.namespace" => field(Attribute::Namespace, values, not, &namespace_value),
        "source.serviceAccount" => {
            let s = Source {
                service_accounts: Some(values.to_vec()),
                not_service_accounts: Some(not.to_vec()),
                ..Source::default()
            };
            Ok(source(&s, policy_ns)?.pop())
        }
        "source.trustDomain" => {
            let s = Source {
                trust_domains: Some(values.to_vec()),
                not_trust_domains: Some(not.to_vec()),
                ..Source::default()
            };
            Ok(source(&s, policy_ns)?.pop())
        }
        "request.auth.principal" => field(
            Attribute::RequestPrincipal,
            values,
            not,
            &request_principal_value,
        ),
        "request.auth.audiences" => field(Attribute::Audience, values, not, &glob_value),
        "request.auth.presenter" => field(Attribute::Presenter, values, not, &glob_value),
        "destination.port" => field(Attribute::Port, values, not, &port_value),
        "source.ip" | "remote.ip" | "destination.ip" | "connection.sni" => {
            not_modelled(&format!("when {k}"))
        }
        _ if header.is_some() => field(
            Attribute::Header(header.unwrap_or_default().to_ascii_lowercase()),
            values,
            not,
            &header_value,
        ),
        _ if claim_path(k).is_some() => field(
            Attribute::Claim(claim_path(k).unwrap_or_default()),
            values,
            not,
            &glob_value,
        ),
        _ if k.starts_with("experimental.envoy.filters.") => not_modelled(&format!("when {k}")),
        _ => Err(format!("unknown attribute {k}")),
    }
}

fn rule(index: usize, r: &AuthzRule, policy_ns: &str) -> Result<Rule, String> {
    Ok(Rule {
        index,
        from: r
            .from
            .iter()
            .map(|f| source(&f.source, policy_ns))
            .collect::<Result<_, _>>()?,
        to: r
            .to
            .iter()
            .map(|t| operation(&t.operation))
            .collect::<Result<_, _>>()?,
        when: r
            .when
            .iter()
            .map(|c| condition(c, policy_ns))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Manifests;

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
        let p = policies(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: weather}
spec:
  rules:
    - from: [{source: {namespaces: [weath*]}}]
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
            serde_json::from_str(r#"{"iss":"weather-frontend","sub":"ann","groups":"users"}"#)
                .unwrap();
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
        let p = policies(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: weather}
spec:
  rules:
    - from: [{source: {ipBlocks: [10.0.0.0/8]}}]
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
}
