//! What the model predicts for every shipped stage, request by request, and the
//! weighted stages' split over 10,000 decisions.

use std::collections::BTreeMap;

use mesh::{
    Routed,
    routing::{Caller, Request},
};
use weather::predict::predict;

use crate::shipped;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";

const V1: &str = "frontend:v1,forecast:v1";
const V2: &str = "frontend:v2,forecast:v2,recommendation:v1";
const V1_TO_V2: &str = "frontend:v1,forecast:v2,recommendation:v1";
const V2_TO_V1: &str = "frontend:v2,forecast:v1";

fn headers(cookie: &str, ua: &str) -> Vec<(String, String)> {
    let mut h = vec![("user-agent".to_owned(), ua.to_owned())];
    if !cookie.is_empty() {
        h.push(("cookie".to_owned(), cookie.to_owned()));
    }
    h
}

/// (stage, cookie, user-agent, [(chain, probability)])
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, f64)],
);

const ROWS: &[Row] = &[
    ("all-v1", "", FIREFOX, &[(V1, 1.0)]),
    ("all-v1", "user=tester", CHROME, &[(V1, 1.0)]),
    ("forecast-50-50", "", FIREFOX, &[(V1, 0.5), (V1_TO_V2, 0.5)]),
    (
        "forecast-50-50",
        "user=tester",
        FIREFOX,
        &[(V1, 0.5), (V1_TO_V2, 0.5)],
    ),
    ("forecast-v2", "", FIREFOX, &[(V1_TO_V2, 1.0)]),
    ("forecast-user-agent", "", CHROME, &[(V1_TO_V2, 1.0)]),
    ("forecast-user-agent", "", FIREFOX, &[(V1, 1.0)]),
    ("forecast-user-agent", "", ANDROID, &[(V1_TO_V2, 1.0)]),
    (
        "frontend-combined",
        "",
        ANDROID,
        &[(V1, 0.5), (V2_TO_V1, 0.5)],
    ),
    ("frontend-combined", "", CHROME, &[(V1, 1.0)]),
    ("multiservice", "", CHROME, &[(V1, 1.0)]),
    ("multiservice", "lang=en; user=alice", FIREFOX, &[(V1, 1.0)]),
    ("multiservice", "xuser=tester", FIREFOX, &[(V1, 1.0)]),
    ("multiservice", "user=tester", FIREFOX, &[(V2, 1.0)]),
    (
        "multiservice",
        "_ga=GA1.1.1; user=tester; lang=zh",
        ANDROID,
        &[(V2, 1.0)],
    ),
];

#[test]
fn every_stage_routes_each_kind_of_request_as_the_book_describes() {
    let mut failures = Vec::new();
    for (stage, cookie, ua, want) in ROWS {
        let (m, mesh) = shipped(stage);
        let got = predict(&m, &mesh, &headers(cookie, ua));
        let want: BTreeMap<String, f64> = want.iter().map(|(c, p)| (c.to_string(), *p)).collect();
        let same = got.len() == want.len()
            && got
                .iter()
                .all(|(c, p)| want.get(c).is_some_and(|w| (w - p).abs() < 1e-9));
        if !same {
            failures.push(format!(
                "{stage} cookie={cookie:?} ua={}: want {want:?}, got {got:?}",
                &ua[..30]
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Draws `n` routing decisions as the data plane does and counts the subsets.
fn draw(
    stage: &str,
    from: &str,
    host: &str,
    hdrs: &[(String, String)],
    n: usize,
) -> BTreeMap<String, usize> {
    let (_, mesh) = shipped(stage);
    let caller = match mesh.workloads.iter().find(|w| w.name == from) {
        Some(w) => Caller::Workload {
            namespace: &w.namespace,
            labels: &w.labels,
        },
        None => Caller::Ingress,
    };
    let req = Request {
        authority: host,
        path: "/",
        method: "GET",
        scheme: "http",
        headers: hdrs,
    };
    let mut counts = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..n {
        let Routed::Route { targets, .. } = mesh.route(caller, &req) else {
            panic!("no route")
        };
        let t = Routed::pick(targets, rng.u32(..Routed::total(targets))).unwrap();
        *counts
            .entry(t.subset.clone().unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

#[test]
fn weighted_stages_split_within_three_points_over_10000_decisions() {
    let n = 10_000;
    // (stage, from, host, headers, [(subset, share)])
    type Split = (
        &'static str,
        &'static str,
        &'static str,
        Vec<(String, String)>,
        &'static [(&'static str, f64)],
    );
    let rows: [Split; 3] = [
        (
            "forecast-50-50",
            "frontend-v1",
            "forecast:3002",
            vec![],
            &[("v1", 0.5), ("v2", 0.5)],
        ),
        (
            "forecast-v2",
            "frontend-v1",
            "forecast:3002",
            vec![],
            &[("v2", 1.0)],
        ),
        (
            "frontend-combined",
            "ingress",
            "localhost:8080",
            headers("", ANDROID),
            &[("v1", 0.5), ("v2", 0.5)],
        ),
    ];
    for (stage, from, host, hdrs, want) in rows {
        let counts = draw(stage, from, host, &hdrs, n);
        assert_eq!(counts.len(), want.len(), "{stage}: {counts:?}");
        for (subset, p) in want {
            let got = counts.get(*subset).copied().unwrap_or(0) as f64 / n as f64;
            assert!(
                (got - p).abs() <= 0.03,
                "{stage}: {subset} took {got:.3}, want {p} ±0.03"
            );
        }
    }
}
