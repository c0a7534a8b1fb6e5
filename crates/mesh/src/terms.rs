//! The words the model's modules share, so that none of them needs another
//! for its vocabulary: how a request's headers and verified claims are read,
//! how a selector picks pods, and the mesh's fixed names (its root
//! namespace, its trust domain, the ingress gateway). A leaf: it imports
//! only [`crate::model`].

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::model::Labels;

/// The namespace whose security objects apply to every namespace (Istio's
/// root namespace, `istio-system` by default).
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The mesh's trust domain: identities are `cluster.local/ns/NS/sa/SA`.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// The `gateways` entry that binds a route to every sidecar (and that
/// istiod gives a Gateway API route attached to a Service).
pub const MESH: &str = "mesh";

/// The namespace of Istio's ingress gateway pods.
pub const INGRESS_NAMESPACE: &str = "istio-system";

/// The labels of Istio's ingress gateway, which `--from ingress` stands for
/// (the demo profile's `istio-ingressgateway`). Built once: every ingress
/// decision reads them.
pub fn ingress_labels() -> &'static Labels {
    static LABELS: std::sync::LazyLock<Labels> = std::sync::LazyLock::new(|| {
        Labels::from([
            ("app".to_owned(), "istio-ingressgateway".to_owned()),
            ("istio".to_owned(), "ingressgateway".to_owned()),
        ])
    });
    &LABELS
}

/// The mTLS identity of a pod running as ServiceAccount `sa` in `namespace`.
pub fn principal(namespace: &str, sa: &str) -> String {
    format!("{TRUST_DOMAIN}/ns/{namespace}/sa/{sa}")
}

/// Whether `labels` include every one of `of` (a subset's labels, a
/// selector's).
pub fn subset_of(labels: &Labels, of: &Labels) -> bool {
    of.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a security object of namespace `policy_ns` with this selector
/// applies to a pod with `labels` in `namespace`: a selector's labels must be
/// the pod's (none: every pod); the namespace must be the object's, unless
/// that is the root namespace.
pub fn selects(
    policy_ns: &str,
    selector: Option<&Labels>,
    namespace: &str,
    labels: &Labels,
) -> bool {
    (policy_ns == namespace || policy_ns == ROOT_NAMESPACE)
        && selector.is_none_or(|s| subset_of(labels, s))
}

/// The claims of a verified JWT.
pub type Claims = Map<String, Value>;

/// `s` without the optional whitespace HTTP allows around a header value:
/// spaces and tabs only (RFC 9110, 5.6.3). A no-break space or an ideographic
/// space is part of the value, as Envoy reads it.
pub fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// [`trim_ows`] for bytes.
pub fn trim_ows_bytes(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Request headers, looked up by lowercase name. Several values of one header
/// are joined with "," as Envoy does before matching.
pub trait HeaderLookup {
    fn header(&self, name: &str) -> Option<Cow<'_, str>>;

    /// The claims of a JWT the proxy verified, which `@request.auth.claims`
    /// matches read ([`WithClaims`]); none by default.
    fn claims(&self) -> Option<&Claims> {
        None
    }
}

/// Headers seen through a verified JWT: `@request.auth.claims.NAME` and
/// `@request.auth.claims[A][B]` read the claim (a string, or a list of
/// strings joined by `,`), as a gateway's routes match them; every other
/// name is a header.
pub struct WithClaims<'a, H: HeaderLookup + ?Sized> {
    pub headers: &'a H,
    pub claims: Option<&'a Claims>,
}

impl<H: HeaderLookup + ?Sized> HeaderLookup for WithClaims<'_, H> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers.header(name)
    }

    fn claims(&self) -> Option<&Claims> {
        self.claims
    }
}

/// The claim path of an `@request.auth.claims` header name, as istiod's
/// `jwt.ToRoutingClaim` reads it.
pub fn routing_claim(name: &str) -> Option<Vec<&str>> {
    const PREFIX: &str = "@request.auth.claims";
    if name.len() < PREFIX.len() || !name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &name[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        Some(dotted.split('.').collect())
    } else if rest.len() > 2 && rest.starts_with('[') && rest.ends_with(']') {
        Some(rest[1..rest.len() - 1].split("][").collect())
    } else {
        None
    }
}

/// The values of a claim, for a route's match: a string claim as one value, a
/// list of strings as each of its strings (Envoy's list matcher `oneOf`).
pub fn claim_values(claims: Option<&Claims>, path: &[&str]) -> Vec<String> {
    let Some(claims) = claims else {
        return Vec::new();
    };
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut at = claims.get(*first);
    for k in rest {
        at = at.and_then(|v| v.get(k));
    }
    match at {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod ows_tests {
    use super::*;

    #[test]
    fn only_spaces_and_tabs_are_optional_whitespace() {
        assert_eq!(trim_ows(" \tuser=tester \t"), "user=tester");
        assert_eq!(trim_ows("user=tester\u{a0}"), "user=tester\u{a0}");
        assert_eq!(trim_ows("\u{3000}Chrome/1"), "\u{3000}Chrome/1");
        assert_eq!(trim_ows(" \t "), "");
        assert_eq!(trim_ows_bytes(b" a b\t"), b"a b");
        assert_eq!(trim_ows_bytes(b"\xc2\xa0a "), b"\xc2\xa0a");
        assert_eq!(trim_ows_bytes(b"  "), b"");
    }
}
