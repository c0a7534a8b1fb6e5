//! Istio's metrics and the page's window, exchange by exchange.

use super::*;

fn workload(name: &str, app: &str, version: &str) -> Workload {
    let labels: mesh::model::Labels = [("app", app), ("version", version)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Workload {
        name: name.into(),
        namespace: "weather".into(),
        labels,
        image: String::new(),
        service_account: "default".into(),
        port: None,
    }
}

fn forecast() -> Arc<ServiceRef> {
    Arc::new(ServiceRef {
        fqdn: "forecast.weather.svc.cluster.local".into(),
        name: "forecast".into(),
        namespace: "weather".into(),
    })
}

fn exchange(code: u16, flags: &'static str, reached: bool) -> Exchange {
    Exchange {
        source: FIRST_WORKLOAD,
        destination: Some(FIRST_WORKLOAD + 1),
        service: forecast(),
        code,
        flags,
        reached,
        destination_only: false,
        mtls: false,
        duration: Duration::from_millis(3),
        request_bytes: 0,
        response_bytes: 120,
    }
}

fn stats() -> Stats {
    Stats::new(
        &IngressPods::default(),
        &[
            workload("frontend-v2", "frontend", "v2"),
            workload("forecast-v2", "forecast", "v2"),
        ],
        true,
    )
}

#[test]
fn an_answered_request_is_reported_by_both_sides_a_refused_one_by_the_source() {
    let s = stats();
    s.record(&exchange(200, "-", true));
    s.record(&exchange(503, "UF", false));
    let text = s.render();
    let count = |reporter: &str, code: &str| {
        text.lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains(&format!("reporter=\"{reporter}\"")))
            .filter(|l| l.contains(&format!("response_code=\"{code}\"")))
            .count()
    };
    assert_eq!(count("source", "200"), 1, "{text}");
    assert_eq!(count("destination", "200"), 1, "{text}");
    assert_eq!(count("source", "503"), 1, "{text}");
    assert_eq!(count("destination", "503"), 0, "{text}");
    let dest = text
        .lines()
        .find(|l| l.contains("reporter=\"destination\"") && l.starts_with("istio_requests"))
        .unwrap();
    for label in [
        "source_workload=\"frontend-v2\"",
        "source_app=\"frontend\"",
        "source_version=\"v2\"",
        "destination_workload=\"forecast-v2\"",
        "destination_version=\"v2\"",
        "destination_service=\"forecast.weather.svc.cluster.local\"",
        "destination_service_name=\"forecast\"",
        "connection_security_policy=\"none\"",
    ] {
        assert!(dest.contains(label), "{label} missing from {dest}");
    }
}

/// Over mTLS (Istio's default between sidecars), as Istio's own telemetry
/// tests expect of the destination's report (`buildQuery` in
/// `tests/integration/ambient/baseline_test.go`, the sidecar reporter alike):
/// `mutual_tls` and both SPIFFE identities; the source names no security.
#[test]
fn over_mtls_the_destination_reports_mutual_tls_and_both_identities() {
    let s = stats();
    s.record(&Exchange {
        mtls: true,
        ..exchange(200, "-", true)
    });
    let text = s.render();
    let line = |reporter: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("reporter=\"{reporter}\""))
            })
            .unwrap()
            .to_owned()
    };
    let (dest, source) = (line("destination"), line("source"));
    for label in [
        "connection_security_policy=\"mutual_tls\"",
        "source_principal=\"spiffe://cluster.local/ns/weather/sa/default\"",
        "destination_principal=\"spiffe://cluster.local/ns/weather/sa/default\"",
    ] {
        assert!(dest.contains(label), "{label} missing from {dest}");
    }
    assert!(
        source.contains("connection_security_policy=\"unknown\""),
        "{source}"
    );
    assert!(
        source.contains("destination_principal=\"spiffe://cluster.local/ns/weather/sa/default\""),
        "{source}"
    );
    // Plaintext: the destination says so, and knows no identity.
    let s = stats();
    s.record(&exchange(200, "-", true));
    let text = s.render();
    assert!(
        text.contains("connection_security_policy=\"none\""),
        "{text}"
    );
    assert!(!text.contains("spiffe://"), "{text}");
}

#[test]
fn durations_fall_in_envoys_buckets() {
    let s = stats();
    s.record(&exchange(200, "-", true));
    let text = s.render();
    let le = |bound: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("istio_request_duration_milliseconds_bucket{")
                    && l.contains("reporter=\"source\"")
                    && l.contains(&format!("le=\"{bound}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(le("1.0"), "0");
    assert_eq!(le("5.0"), "1");
    assert_eq!(le("+Inf"), "1");
}

#[test]
fn edges_count_the_window() {
    let s = stats();
    for _ in 0..99 {
        s.record(&exchange(200, "-", true));
    }
    s.record(&exchange(503, "UF", false));
    let edges = s.edges();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].requests, 100);
    assert!((edges[0].error_share - 0.01).abs() < 1e-9);
}

#[test]
fn a_tester_is_told_by_the_cookie_pair_not_a_substring() {
    assert!(is_tester([b"theme=dark; user=tester".as_slice()]));
    assert!(is_tester([b"user=tester".as_slice()]));
    assert!(!is_tester([b"user=testers".as_slice()]));
    assert!(!is_tester([b"xuser=tester".as_slice()]));
}

#[test]
fn nothing_is_recorded_when_off() {
    let s = Stats::new(&IngressPods::default(), &[], false);
    s.record(&exchange(200, "-", true));
    assert!(!s.render().contains("istio_requests_total{"));
}

/// A mirrored copy is reported by its destination only: Envoy sends it past
/// the calling proxy's stats filter.
#[test]
fn a_mirrored_copy_is_reported_by_the_destination_alone() {
    let s = stats();
    s.record(&Exchange {
        destination_only: true,
        ..exchange(200, "-", true)
    });
    let text = s.render();
    let total = |reporter: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("reporter=\"{reporter}\""))
            })
            .count()
    };
    assert_eq!((total("source"), total("destination")), (0, 1), "{text}");
    assert_eq!(s.edges().len(), 1, "the graph shows the edge");
}

/// The page's edges say which flags their requests carried (a fault's `FI`,
/// a breaker's `UO`), the commonest first, and a sample of the window stays
/// 32 bytes with them.
#[test]
fn edges_count_their_response_flags() {
    assert_eq!(std::mem::size_of::<Sample>(), 32);
    let s = stats();
    for (flags, n) in [("FI", 3), ("-", 5), ("UO", 1), ("DI,DC", 2)] {
        for _ in 0..n {
            s.record(&exchange(503, flags, false));
        }
    }
    let edges = s.edges();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].requests, 11);
    assert_eq!(edges[0].flags, [("FI", 3), ("DI,DC", 2), ("UO", 1)]);
}
