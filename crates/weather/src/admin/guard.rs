//! Who the admin listener answers. It switches the release and reads the
//! manifests' paths, so it answers only requests addressed to this machine by
//! a loopback name or an IP address (DNS rebinding: a page of another site
//! whose name is made to resolve to 127.0.0.1 sends its own name as `Host`,
//! and a name is all such a page can send), and it bounds what a request may
//! send (docs/weather-tool.md, "The admin listener").

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{
    Json,
    extract::{Request, State},
    http::{StatusCode, header, uri::Authority},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// The largest body the listener takes (`/apply`'s YAML): every routing
/// object the project ships, all stages together, is a tenth of it.
pub const MAX_BODY: usize = 256 * 1024;

/// How long a body may pause before the request is answered 408.
pub const BODY_PAUSE: Duration = Duration::from_secs(10);

/// How long a whole request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers 421 to a request whose `Host` (or absolute URI) is neither a
/// loopback name nor an IP address this listener can be reached on, and 400
/// to one that names no host at all; passes the rest on. `bound` is the
/// listener's own address.
pub async fn host_guard(State(bound): State<SocketAddr>, req: Request, next: Next) -> Response {
    let named = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().map(str::to_owned).map_err(|_| ()))
        .or_else(|| req.uri().authority().map(|a| Ok(a.as_str().to_owned())));
    let Some(Ok(host)) = named else {
        let msg = "the admin listener needs a Host header naming it (localhost or an address of this machine)";
        return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
    };
    if !answers_to(&host, bound.ip()) {
        let msg = format!(
            "the admin listener answers only to localhost or an IP address of this machine, not to the name {host:?}: open it as http://{bound}/"
        );
        return (StatusCode::MISDIRECTED_REQUEST, Json(json!({"error": msg}))).into_response();
    }
    next.run(req).await
}

/// Whether the listener bound to `bound` answers a request for `host` (a
/// `Host` header's value: a name or address, and a port or not).
pub fn answers_to(host: &str, bound: IpAddr) -> bool {
    // http's authority parser takes `name`, `name:port`, `v4:port` and
    // `[v6]:port` (and user info, which a Host never has); a port must be
    // a number.
    let Ok(authority) = host.parse::<Authority>() else {
        return false;
    };
    let name = authority.host();
    let has_port = authority.as_str().len() > name.len();
    if host.contains('@') || (has_port && authority.port_u16().is_none()) {
        return false;
    }
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    match unbracketed.parse::<IpAddr>() {
        // An address is never a rebinding: the page's origin is then the
        // address itself. It must still be one this listener can be
        // reached on.
        Ok(ip) => ip.is_loopback() || bound.is_unspecified() || ip == bound,
        // The names that always mean this machine (RFC 6761, 6.3).
        Err(_) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_this_listeners_addresses_are_answered_other_names_not() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for ok in [
            "127.0.0.1:15000",
            "127.0.0.1",
            "127.0.0.2:15000",
            "localhost:15000",
            "LocalHost",
            "localhost.",
            "admin.localhost:15000",
            "[::1]:15000",
        ] {
            assert!(answers_to(ok, lo), "{ok}");
        }
        for refused in [
            "rebind.example:15000",
            "rebind.example",
            "localhost.rebind.example",
            "127.0.0.1.nip.io:15000",
            "10.0.0.7:15000",
            "",
            "127.0.0.1:15000/x",
            "user@127.0.0.1:15000",
            "[::1",
            "127.0.0.1:port",
        ] {
            assert!(!answers_to(refused, lo), "{refused:?}");
        }
    }

    #[test]
    fn a_listener_on_every_address_answers_any_address_but_still_no_other_name() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(answers_to("10.0.0.7:15000", any));
        assert!(answers_to("[fd00::7]:15000", any));
        assert!(!answers_to("rebind.example:15000", any));
        let own: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(answers_to("10.0.0.7:15000", own));
        assert!(!answers_to("10.0.0.8:15000", own));
    }
}
