//! What a hop does to headers: the request's headers as the routing model reads
//! them, and the request and response as the other side sees them.

use std::{borrow::Cow, net::SocketAddr};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use mesh::{
    routing::{header_text, join_values},
    terms::HeaderLookup,
};

/// Request headers for the routing model; several values of a header are joined
/// with "," as Envoy joins them before matching. A value is bytes: one that is
/// not ASCII still matches or not (read as UTF-8, each invalid byte as one
/// U+FFFD, as RE2 counts it), it never vanishes.
pub(super) struct Headers<'a>(pub(super) &'a HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        join_values(
            name,
            self.0
                .get_all(name)
                .iter()
                .map(|v| header_text(v.as_bytes())),
        )
    }
}

/// Headers that concern one connection only and are never forwarded (RFC 9110).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for n in HOP_BY_HOP.iter().chain(named.iter()) {
        h.remove(n);
    }
}

/// The request as the upstream sees it: no hop-by-hop headers, and the routed
/// authority as Host.
pub(super) fn to_upstream(headers: &mut HeaderMap, authority: &str) {
    strip_hop_by_hop(headers);
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(header::HOST, v);
    }
}

/// What Envoy's gateway adds at the edge: a request id when there is none, who
/// called, and over what.
pub(super) fn at_the_edge(headers: &mut HeaderMap, peer: Option<SocketAddr>) {
    if !headers.contains_key("x-request-id")
        && let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
    {
        headers.insert("x-request-id", v);
    }
    if let Some(peer) = peer {
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

/// A route's header operations ([`mesh::headers`]) applied as Envoy's router
/// applies them: the removals first, then each `set` (replacing every value)
/// or `add` (one more value), in order. A value HTTP cannot carry is left out.
pub(super) fn apply(ops: &mesh::headers::Ops, headers: &mut HeaderMap) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (name, value, append) in &ops.add {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if *append {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
}
