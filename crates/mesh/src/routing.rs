//! The routing model's vocabulary: who calls ([`Caller`]), the request as
//! routing sees it ([`Request`]), where it may go ([`Target`]) and the outcome
//! ([`Routed`]). [`crate::compile`] builds the table and [`crate::decide`] takes
//! the decision; docs/architecture.md ("The Istio the model follows") lists the
//! rules and where each is checked.

use std::borrow::Cow;

pub use crate::target::{Problem, Target};

use crate::{model::Labels, terms::HeaderLookup};

/// The port the ingress listens on, as the Gateway's server states it.
pub const INGRESS_PORT: u16 = 80;

/// Who sends the request.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// Istio's ingress gateway: routes bound to Gateways apply.
    Ingress,
    /// A workload's sidecar: routes bound to `mesh` apply.
    Workload {
        namespace: &'a str,
        labels: &'a Labels,
    },
}

/// A header value as Envoy's matchers read it: its bytes, with every byte that
/// is not part of valid UTF-8 standing for one character (RE2 reads each such
/// byte as one rune: `a\xe2\x82` has three characters for `^.{3}$`, measured
/// with Envoy 1.40), here U+FFFD. Valid UTF-8 is borrowed as it is.
pub fn header_text(value: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(value) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for chunk in value.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    Cow::Owned(out)
}

/// The request headers Envoy keeps in a slot of their own ("inline"): its
/// built-in list (`INLINE_REQ_HEADERS` and `INLINE_REQ_RESP_HEADERS` in
/// `envoy/http/header_map.h`) and those its filters register
/// (`CustomInlineHeaderRegistry`), found by sending each name twice to Envoy
/// 1.40, an empty value and then `b`, against routes that match `b` and `,b`;
/// the conformance test `repeated_headers_merge_as_envoys_header_map_merges_them`
/// holds this list against that Envoy.
pub const ENVOY_INLINE_REQUEST_HEADERS: &[&str] = &[
    // Built in.
    ":authority",
    ":method",
    ":path",
    ":protocol",
    ":scheme",
    "connection",
    "content-length",
    "content-type",
    "expect",
    "grpc-timeout",
    "host",
    "keep-alive",
    "proxy-connection",
    "proxy-status",
    "te",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "via",
    "x-client-trace-id",
    "x-envoy-attempt-count",
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-max-retries",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-stream-duration-ms",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
    // Registered by the filters Envoy is built with.
    "accept",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "access-control-request-private-network",
    "authorization",
    "cache-control",
    "cdn-loop",
    "content-encoding",
    "grpc-accept-encoding",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "origin",
    "pragma",
    "referer",
    "x-forwarded-port",
];

/// Whether Envoy keeps header `name` (any case) inline.
pub fn envoy_keeps_inline(name: &str) -> bool {
    ENVOY_INLINE_REQUEST_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// The value Envoy's matchers read for header `name` sent with `values`, in
/// order, as its header map holds them: an inline header
/// ([`ENVOY_INLINE_REQUEST_HEADERS`]) is merged as it arrives, its non-empty
/// values joined with "," (an empty value adds nothing: `user-agent: ` then
/// `user-agent: b` reads `b`); any other header (`cookie` among them) keeps
/// each value, and a match reads them joined with "," (`cookie: ` then
/// `cookie: b` reads `,b`). One value is kept as is.
pub fn join_values<'a>(
    name: &str,
    values: impl Iterator<Item = Cow<'a, str>>,
) -> Option<Cow<'a, str>> {
    if envoy_keeps_inline(name) {
        let mut values = values.peekable();
        values.peek()?;
        let mut present = values.filter(|v| !v.is_empty());
        return Some(join(present.next().unwrap_or_default(), present));
    }
    let mut values = values;
    let first = values.next()?;
    Some(join(first, values))
}

/// `first`, then each of `rest` after a ",".
fn join<'a>(first: Cow<'a, str>, mut rest: impl Iterator<Item = Cow<'a, str>>) -> Cow<'a, str> {
    match rest.next() {
        None => first,
        Some(second) => {
            let mut joined = format!("{first},{second}");
            for v in rest {
                joined.push(',');
                joined.push_str(&v);
            }
            Cow::Owned(joined)
        }
    }
}

impl HeaderLookup for [(String, String)] {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        join_values(
            name,
            self.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| Cow::Borrowed(v.as_str())),
        )
    }
}

/// One HTTP request, as routing sees it.
pub struct Request<'a, H: HeaderLookup + ?Sized> {
    /// `Host` / `:authority`, e.g. `forecast:3002`.
    pub authority: &'a str,
    /// Path and query, e.g. `/forecast?city=beijing`.
    pub path: &'a str,
    pub method: &'a str,
    pub scheme: &'a str,
    pub headers: &'a H,
}

/// A workload (Deployment) and its pods' labels.
#[derive(Clone, Debug)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub image: String,
    /// The pods' ServiceAccount (`default` when none is named): their mTLS
    /// identity is `cluster.local/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
    pub service_account: String,
    /// The first container's first port: where its proxy receives requests.
    pub port: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct ServiceInfo {
    pub name: String,
    pub namespace: String,
    pub fqdn: String,
    pub selector: Labels,
    pub ports: Vec<u16>,
}

/// Which rule decided: `forecast-route http[0]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    /// `VirtualService`, or `HTTPRoute` for a rule istiod translated from one.
    pub kind: &'static str,
    /// The object's name (the HTTPRoute's, for a translated rule).
    pub virtual_service: String,
    pub namespace: String,
    pub index: usize,
    pub name: Option<String>,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            "HTTPRoute" => write!(f, "{} rules[{}]", self.virtual_service, self.index),
            _ => write!(f, "{} http[{}]", self.virtual_service, self.index),
        }
    }
}

/// The outcome for one request.
#[derive(Clone, Copy, Debug)]
pub enum Routed<'m> {
    /// A rule (or the default route of a host without VirtualService) chose
    /// these destinations.
    Route {
        rule: Option<&'m RuleRef>,
        targets: &'m [Target],
        /// The rule's timeout and retries (Istio's defaults for a host
        /// without VirtualService).
        policy: &'m crate::policy::Policy,
    },
    /// No route: 404 `NR`.
    NoRoute(NoRoute<'m>),
    /// A sidecar's request for a host and port no Service answers: Envoy sends
    /// it on to the address it was sent to (`PassthroughCluster`), as Istio's
    /// default `outboundTrafficPolicy` (`ALLOW_ANY`) has it.
    Passthrough,
    /// The caller's `Sidecar` resource hides the host, or no Service answers
    /// it, and says `outboundTrafficPolicy: REGISTRY_ONLY`: the sidecar's
    /// `block_all` virtual host answers 502 itself.
    Blocked,
}

/// Why no route was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRoute<'m> {
    /// The ingress has no Gateway for this host and port.
    NoGateway,
    /// No VirtualService bound to the gateway serves this host.
    NoVirtualService,
    /// The VirtualServices for the host had no rule that matched.
    NoRuleMatched(&'m str),
}

impl Routed<'_> {
    /// Picks one destination by weight, with `roll` uniform in `0..total`.
    /// `None` when every weight is 0.
    pub fn pick(targets: &[Target], roll: u32) -> Option<&Target> {
        let mut left = roll;
        for t in targets {
            if left < t.weight {
                return Some(t);
            }
            left -= t.weight;
        }
        None
    }

    /// The total weight of a route's destinations.
    pub fn total(targets: &[Target]) -> u32 {
        targets.iter().map(|t| t.weight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RE2 in Envoy reads each byte that is not part of valid UTF-8 as one
    /// character (measured with Envoy 1.40: `a\xe2\x82` and `\xe9t\xe9` both
    /// match `^.{3}$`); a lossy decoding that merges a truncated sequence into
    /// one U+FFFD would count two.
    #[test]
    fn each_byte_that_is_not_utf8_is_one_character() {
        let count = |b: &[u8]| header_text(b).chars().count();
        assert_eq!(count(b"a\xe2\x82"), 3);
        assert_eq!(count(b"\xe9t\xe9"), 3);
        assert_eq!(count(b"\xed\xa0\x80"), 3);
        assert_eq!(header_text("é".as_bytes()), "é");
        assert!(matches!(header_text(b"plain"), Cow::Borrowed("plain")));
    }
}
