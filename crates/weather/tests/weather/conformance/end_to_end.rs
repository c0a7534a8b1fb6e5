//! `weather up` end to end against Envoy's hop-by-hop prediction: the same
//! browser requests sent through `weather up`'s ingress (which answers with
//! the chain that served them, `x-weather-chain`) and, hop by hop, through the
//! real Envoy loaded with istiod's route configurations: the gateway's choice
//! of frontend, then that frontend's sidecar asked for forecast with the
//! headers the frontend forwards (its `user-agent`), then forecast v2's
//! sidecar for recommendation. The chain `weather up` served must be one that
//! Envoy allows; where a hop is weighted, either of its destinations is.

use std::collections::BTreeSet;

use weather::dataplane;

use super::{corpus::NOT_UTF8, *};

/// The page every request asks for: it takes the whole chain.
const PAGE: &str = "/?city=paris";

/// Where a hop may go, as Envoy decides it for the rolls 0 and 99 (a weighted
/// route gives two answers): `(app, version)`, or `None` for no route; with
/// the `baggage` Envoy forwarded there (a route may set or remove a lane).
async fn hop(
    http: &reqwest::Client,
    envoy: &envoy::Envoy,
    from: &str,
    listener: &str,
    authority: &str,
    headers: &[(String, Vec<u8>)],
) -> BTreeSet<(Option<(String, String)>, Option<Vec<u8>>)> {
    let addr = envoy.listeners[&(from.to_owned(), listener.to_owned())];
    let mut out = BTreeSet::new();
    for roll in [0, 99] {
        let ask = Ask {
            from: from.to_owned(),
            listener: listener.to_owned(),
            authority: authority.to_owned(),
            path: PAGE.to_owned(),
            method: "GET",
            headers: headers.to_vec(),
            roll,
        };
        let (met, baggage) = envoy_forwards(http, addr, &ask).await;
        out.insert((
            match met {
                // outbound|3000|v2|frontend.weather.svc.cluster.local
                Met::Cluster(c) => {
                    let parts: Vec<&str> = c.split('|').collect();
                    let app = parts[3].split('.').next().unwrap_or("").to_owned();
                    Some((app, parts[2].to_owned()))
                }
                Met::NoRoute | Met::NoCluster | Met::NoBackend | Met::Blocked => None,
            },
            baggage,
        ));
    }
    out
}

/// The chains Envoy allows for a browser request with `headers`.
async fn predicted(
    http: &reqwest::Client,
    envoy: &envoy::Envoy,
    headers: &[(String, Vec<u8>)],
) -> BTreeSet<String> {
    // What the frontend forwards to forecast, and forecast to recommendation:
    // the browser's user agent, and the baggage the gateway left.
    let user_agent: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        .cloned()
        .collect();
    let mut chains = BTreeSet::new();
    for (front, baggage) in hop(http, envoy, "ingress", "http.80", "localhost:8080", headers).await
    {
        let mut forwarded = user_agent.clone();
        forwarded.extend(baggage.map(|b| ("baggage".to_owned(), b)));
        let Some((app, v)) = front else {
            chains.insert("(no route)".to_owned());
            continue;
        };
        let caller = format!("{app}-{v}");
        let first = format!("{app}:{v}");
        for (fc, _) in hop(http, envoy, &caller, "3002", "forecast:3002", &forwarded).await {
            let Some((fapp, fv)) = fc else {
                chains.insert(format!("{first} (forecast: no route)"));
                continue;
            };
            if fv != "v2" {
                chains.insert(format!("{first},{fapp}:{fv}"));
                continue;
            }
            let caller = format!("{fapp}-{fv}");
            for (rec, _) in hop(
                http,
                envoy,
                &caller,
                "3005",
                "recommendation:3005",
                &forwarded,
            )
            .await
            {
                match rec {
                    Some((rapp, rv)) => chains.insert(format!("{first},{fapp}:{fv},{rapp}:{rv}")),
                    // forecast v2 answers without advice, and without its link.
                    None => chains.insert(format!("{first},{fapp}:{fv}")),
                };
            }
        }
    }
    chains
}

/// Browser requests: the differential corpus's cookies and user agents, some
/// cookies in two headers, some values not UTF-8.
fn browser_requests(n: usize, seed: u64) -> Vec<Vec<(String, Vec<u8>)>> {
    corpus("ingress", &["http.80".to_owned()], n, seed)
        .into_iter()
        .enumerate()
        .map(|(i, ask)| {
            let mut headers = ask.headers;
            if i % 25 == 0 {
                headers.push(("x-note".into(), NOT_UTF8[i % NOT_UTF8.len()].to_vec()));
            }
            headers
        })
        .collect()
}

/// Whether the chains of `stage` follow from its routes alone: no route's
/// fault, no callee slowed (`FAULT_DELAY_MS`), no circuit breaker, each of
/// which ends some chains early (the resilience lab's stages).
fn chains_follow_routes(stage: &str) -> bool {
    let (m, mesh) = crate::shipped(stage);
    let faults = m
        .virtual_services
        .iter()
        .any(|v| v.spec.http.iter().any(|r| r.fault.is_some()));
    let slowed = m.deployments.iter().any(|d| {
        d.spec
            .template
            .spec
            .containers
            .iter()
            .any(|c| c.env("FAULT_DELAY_MS").is_some())
    });
    !(faults || slowed || mesh.load_dependent())
}

#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn weather_up_serves_the_chains_envoy_predicts_hop_by_hop() {
    let bench = Bench::new();
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for (s, stage) in stages().iter().enumerate() {
        if !chains_follow_routes(stage) {
            report.push(format!(
                "{stage}: left out: its faults, slow callee or circuit breakers cut chains short (conformance::resilience holds them)"
            ));
            continue;
        }
        let paths = stage_paths(stage);
        let name = format!("e2e-{stage}");
        let export = istiod_export(&paths, &name);
        let envoy = start_envoy(&export, bench.stand_in.addr, &name);
        let running = bench
            .rt
            .block_on(dataplane::start(dataplane::Options::local(
                paths,
                Some(stage.clone()),
            )))
            .unwrap();
        let requests = browser_requests(300, 500 + s as u64);
        let (mut agreed, mut seen) = (0, BTreeSet::new());
        bench.rt.block_on(async {
            for headers in &requests {
                let allowed = predicted(&bench.http, &envoy, headers).await;
                let mut req = bench
                    .http
                    .get(format!("http://{}{PAGE}", running.ingress))
                    .header("host", "localhost:8080");
                for (k, v) in headers {
                    req = req.header(k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
                }
                let res = req.send().await.expect("weather up answers");
                let served = match res.headers().get("x-weather-chain") {
                    Some(c) => String::from_utf8_lossy(c.as_bytes()).into_owned(),
                    None => "(no route)".to_owned(),
                };
                seen.insert(served.clone());
                if allowed.contains(&served) {
                    agreed += 1;
                } else if wrong.len() < 10 {
                    let shown: Vec<String> = headers
                        .iter()
                        .map(|(k, v)| format!("-H '{k}: {}'", String::from_utf8_lossy(v)))
                        .collect();
                    wrong.push(format!(
                        "{stage}: weather up served {served}, Envoy allows {allowed:?}: {}",
                        shown.join(" ")
                    ));
                }
            }
        });
        report.push(format!(
            "{stage}: {} requests through weather up, {agreed} on a chain Envoy allows; chains served: {seen:?}",
            requests.len()
        ));
        bench.rt.block_on(running.shutdown());
        drop(envoy);
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        report.join("\n"),
        wrong.join("\n")
    );
}
