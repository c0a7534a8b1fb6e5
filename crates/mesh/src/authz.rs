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
    model::{AuthorizationPolicy, Labels},
    terms::{Claims, HeaderLookup, claim_values, selects},
};

mod translate;

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
            match translate::rule(i, r, &namespace) {
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

#[cfg(test)]
mod tests;
