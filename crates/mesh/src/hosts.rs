//! Host names as Istio reads them: a short name is relative to a namespace
//! (`forecast` in `weather` is `forecast.weather.svc.cluster.local`), and a
//! VirtualService host may be `*` or a `*.suffix` wildcard.

pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// The fully qualified name of `host` as written in an object of namespace `ns`.
pub fn fqdn(host: &str, ns: &str) -> String {
    let host = host.trim_end_matches('.');
    if host.contains('*') {
        return host.to_owned();
    }
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
        Some(suffix) => {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
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

    #[test]
    fn short_names_are_relative_to_the_namespace() {
        assert_eq!(
            fqdn("forecast", "weather"),
            "forecast.weather.svc.cluster.local"
        );
        assert_eq!(
            fqdn("forecast.weather", "other"),
            "forecast.weather.svc.cluster.local"
        );
        assert_eq!(
            fqdn("forecast.weather.svc", "other"),
            "forecast.weather.svc.cluster.local"
        );
        assert_eq!(
            fqdn("forecast.weather.svc.cluster.local", "x"),
            "forecast.weather.svc.cluster.local"
        );
        assert_eq!(fqdn("*", "weather"), "*");
    }

    #[test]
    fn wildcards_cover_subdomains_only() {
        assert!(host_matches("*", "anything"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "aexample.com"));
        assert!(host_matches("Weather.Example", "weather.example"));
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
