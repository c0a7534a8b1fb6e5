//! Host names as Istio reads them, in two places that differ:
//! - in an object (VirtualService `hosts`, a destination's `host`, a
//!   DestinationRule's `host`), istiod expands only a name without a dot
//!   (`ResolveShortnameToFQDN`, `pilot/pkg/model/config.go`): `forecast` in
//!   `weather` is `forecast.weather.svc.cluster.local`, but `forecast.weather` is
//!   taken as already fully qualified, and names no Service;
//! - in a request's authority, Envoy matches the domains istiod lists for each
//!   Service (`generateAltVirtualHostsForKubernetesService`,
//!   `pilot/pkg/networking/core/httproute.go`): `forecast` from the same
//!   namespace, `forecast.weather` and `forecast.weather.svc` from any.
//!
//! A VirtualService host may also be `*` or a `*.suffix` wildcard.

pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// A host as written in an object of namespace `ns`, resolved as istiod does,
/// lowercase.
pub fn resolve(host: &str, ns: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host == "*" || host.contains('.') || host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    format!("{host}.{ns}.{CLUSTER_DOMAIN}")
}

/// The Service name a request's authority host stands for when sent from a
/// pod in namespace `ns`: the fully qualified name whose domains include it.
pub fn expand_authority(host: &str, ns: &str) -> String {
    let host = host.trim_end_matches('.');
    match host.matches('.').count() {
        0 => format!("{host}.{ns}.{CLUSTER_DOMAIN}"),
        1 => format!("{host}.{CLUSTER_DOMAIN}"),
        2 if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host.to_owned(),
    }
}

/// Whether a (possibly wildcard) host pattern covers `host`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        // Host names are case-insensitive, wildcards' suffixes too.
        Some(suffix) => {
            let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
            host.len() > suffix.len() + 1
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host[host.len() - suffix.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Splits `host[:port]` (an HTTP authority), lowercasing the host.
pub fn split_authority(authority: &str) -> (String, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        let port = p.strip_prefix(':').and_then(|p| p.parse().ok());
        return (format!("[{}]", h.to_ascii_lowercase()), port);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_ascii_lowercase(), p.parse().ok()),
        _ => (authority.to_ascii_lowercase(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// istiod's `ResolveShortnameToFQDN`: only a name without a dot is
    /// expanded, with the object's namespace.
    #[test]
    fn in_objects_only_names_without_a_dot_are_expanded() {
        assert_eq!(
            resolve("forecast", "weather"),
            "forecast.weather.svc.cluster.local"
        );
        assert_eq!(resolve("forecast.weather", "other"), "forecast.weather");
        assert_eq!(
            resolve("forecast.weather.svc", "other"),
            "forecast.weather.svc"
        );
        assert_eq!(
            resolve("Forecast.weather.svc.cluster.local", "x"),
            "forecast.weather.svc.cluster.local"
        );
        assert_eq!(resolve("*", "weather"), "*");
        assert_eq!(resolve("10.0.0.1", "weather"), "10.0.0.1");
    }

    /// The domains istiod gives a Service's virtual host: the short name from
    /// its own namespace, `name.ns` and `name.ns.svc` from any.
    #[test]
    fn authorities_name_services_as_their_virtual_host_domains_do() {
        let full = "forecast.weather.svc.cluster.local";
        assert_eq!(expand_authority("forecast", "weather"), full);
        assert_eq!(expand_authority("forecast.weather", "other"), full);
        assert_eq!(expand_authority("forecast.weather.svc", "other"), full);
        assert_eq!(expand_authority(full, "other"), full);
        assert_eq!(
            expand_authority("forecast", "other"),
            "forecast.other.svc.cluster.local"
        );
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        assert!(host_matches("*", "anything"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert!(host_matches("Weather.Example", "weather.example"));
        assert!(host_matches("*.Example.com", "a.example.com"));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            split_authority("forecast:3002"),
            ("forecast".into(), Some(3002))
        );
        assert_eq!(split_authority("LocalHost"), ("localhost".into(), None));
        assert_eq!(split_authority("[::1]:8080"), ("[::1]".into(), Some(8080)));
    }
}
