//! The command line, through the real binary: contracts 8 and 9 (docs/architecture.md).

use std::process::{Command, Output};

use crate::{root, shipped_text};

fn weather(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weather"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("weather runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const MULTI: [&str; 6] = [
    "-f",
    "k8s",
    "-f",
    "istio/base",
    "-f",
    "istio/stages/multiservice",
];

#[test]
fn route_json_is_the_contract_shape() {
    let mut args = vec!["route"];
    args.extend(MULTI);
    args.extend([
        "--from",
        "frontend-v2",
        "--host",
        "forecast:3002",
        "--output",
        "json",
    ]);
    let o = weather(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o).trim(),
        r#"{"destinations":[{"host":"forecast","subset":"v2","weight":100}],"rule":"forecast-route http[0]"}"#
    );

    let mut args = vec!["route"];
    args.extend(MULTI);
    args.extend([
        "--from",
        "ingress",
        "--host",
        "weather.example.com",
        "-H",
        "Cookie: grafana_session=1; user=tester",
        "--output",
        "json",
    ]);
    let o = weather(&args);
    assert_eq!(
        stdout(&o).trim(),
        r#"{"destinations":[{"host":"frontend","subset":"v2","weight":100}],"rule":"frontend-route http[0]"}"#
    );
}

#[test]
fn route_text_explains_and_says_why_when_there_is_no_route() {
    let mut args = vec!["route"];
    args.extend(MULTI);
    args.extend([
        "--from",
        "frontend-v1",
        "--host",
        "forecast:3002",
        "--path",
        "/forecast?city=beijing",
    ]);
    let text = stdout(&weather(&args));
    assert!(
        text.contains(
            "rule: forecast-route http[1] (others-to-v1) of VirtualService weather/forecast-route"
        ),
        "{text}"
    );
    assert!(
        text.contains("-> forecast subset v1, weight 100: forecast-v1"),
        "{text}"
    );

    let mut args = vec!["route"];
    args.extend(MULTI);
    args.extend([
        "--from",
        "frontend-v1",
        "--host",
        "weather-nowhere:3002",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&weather(&args))).unwrap();
    assert_eq!(json["destinations"], serde_json::json!([]));
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("no Service answers \"weather-nowhere:3002\" on that port: the sidecar passes the request through"),
        "{json}"
    );
}

/// The path is routed as every Istio proxy sees it: normalized first.
#[test]
fn route_normalizes_the_path_as_istios_proxies_do() {
    let route = |path: &str| {
        let mut args = vec!["route"];
        args.extend(MULTI);
        args.extend([
            "--from",
            "ingress",
            "--host",
            "weather.example",
            "--path",
            path,
        ]);
        args.extend(["-H", "cookie: user=tester"]);
        stdout(&weather(&args))
    };
    let text = route("/static/..\\x/%2e%2e/api?y=1");
    assert!(text.contains("path normalized to /api?y=1"), "{text}");
    assert!(text.contains("-> frontend subset v2"), "{text}");
    let text = route("/a%00b");
    assert!(
        text.contains("the path is refused before any route is looked at"),
        "{text}"
    );
    assert!(text.contains("Envoy answers 400"), "{text}");
}

#[test]
fn route_refuses_unknown_callers_and_bad_headers_clearly() {
    let mut args = vec!["route"];
    args.extend(MULTI);
    args.extend(["--from", "frontend-v9", "--host", "forecast:3002"]);
    let o = weather(&args);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--from \"frontend-v9\": no such Deployment; use `ingress` or one of: "),
        "{err}"
    );

    let mut args = vec!["route"];
    args.extend(MULTI);
    args.extend(["--from", "ingress", "--host", "x", "-H", "no-colon"]);
    let o = weather(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected 'name: value'"));
}

/// The stage's frontend route from the ingress for these `-H` arguments:
/// `Some(subset)`, or `None` with no route.
fn tester_route(stage_text: &str, headers: &[&str]) -> Option<String> {
    let dir = crate::scratch(&format!("route-{}", fastrand::u64(..)));
    let file = dir.join("all.yaml");
    std::fs::write(&file, stage_text).unwrap();
    let mut args = vec!["route", "-f", file.to_str().unwrap(), "--from", "ingress"];
    args.extend(["--host", "localhost:8080", "--output", "json"]);
    for h in headers {
        args.extend(["-H", h]);
    }
    let o = weather(&args);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    json["destinations"][0]["subset"]
        .as_str()
        .map(str::to_owned)
}

/// Only SP and HTAB are optional whitespace around a value; other spaces are
/// part of it, as Envoy reads it.
#[test]
fn route_trims_header_values_of_spaces_and_tabs_only() {
    let stage = shipped_text("multiservice");
    for (header, subset) in [
        ("cookie: user=tester", "v2"),
        ("cookie:  \tuser=tester \t", "v2"),
        ("cookie: user=tester\u{a0}", "v1"),
        ("cookie: \u{3000}user=tester", "v1"),
        ("cookie: a=1;\u{a0}user=tester", "v1"),
    ] {
        assert_eq!(
            tester_route(&stage, &[header]).as_deref(),
            Some(subset),
            "{header:?}"
        );
    }
}

/// A header sent twice reads as Envoy's header map holds it: `user-agent`
/// merged, an empty value adding nothing; `cookie` kept apart, its values
/// joined with ",".
#[test]
fn route_reads_repeated_headers_as_envoy_merges_them() {
    let by_agent = shipped_text("multiservice").replace(
        "            cookie:\n              regex: '^(.*;\\s*)?user=tester(\\s*;.*)?$'",
        "            user-agent:\n              exact: user",
    );
    assert!(by_agent.contains("exact: user"));
    let by_agent = by_agent.replace(
        "    - name: others-to-v1",
        "    - name: others-to-v1\n      match: [{uri: {prefix: /nowhere}}]",
    );
    assert_eq!(
        tester_route(&by_agent, &["user-agent: ", "User-agent: user"]).as_deref(),
        Some("v2")
    );
    assert_eq!(
        tester_route(&by_agent, &["user-agent: user", "user-agent:"]).as_deref(),
        Some("v2")
    );
    assert_eq!(
        tester_route(&by_agent, &["user-agent: a", "user-agent: user"]),
        None
    );
    let stage = shipped_text("multiservice");
    assert_eq!(
        tester_route(&stage, &["cookie: a=1", "cookie: user=tester"]).as_deref(),
        Some("v1"),
        "read as \"a=1,user=tester\""
    );
}

/// What istiod's validating webhook refuses is refused, naming the field: a
/// cluster would never route by it.
#[test]
fn route_refuses_what_istiods_validation_refuses() {
    let star = shipped_text("multiservice")
        .replace(r"regex: '^(.*;\s*)?user=tester(\s*;.*)?$'", r#"regex: "*""#);
    let dir = crate::scratch("route-star");
    let file = dir.join("all.yaml");
    std::fs::write(&file, &star).unwrap();
    let o = weather(&[
        "route",
        "-f",
        file.to_str().unwrap(),
        "--from",
        "ingress",
        "--host",
        "localhost:8080",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("VirtualService weather/frontend-route: http[0].match[0].headers.cookie.regex: istiod's validation refuses the object: \"headers\": regex \"*\" does not compile"),
        "{err}"
    );
    let o = weather(&["check", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("Error [IST0106] (VirtualService frontend-route.weather) spec.http[0].match[0].headers.cookie.regex: istiod's validation refuses the object"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_passes_the_shipped_stage_and_fails_a_broken_copy() {
    let mut args = vec!["check"];
    args.extend(MULTI);
    let o = weather(&args);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("✔ No errors found"));

    let dir = crate::scratch("check");
    let file = dir.join("all.yaml");
    std::fs::write(
        &file,
        shipped_text("multiservice").replacen("subset: v2", "subset: v7", 1),
    )
    .unwrap();
    let o = weather(&["check", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("Error [IST0101] (VirtualService forecast-route.weather) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: \"forecast+v7\""), "{out}");
    assert!(
        out.contains(&format!("[{}, document ", file.display())),
        "{out}"
    );

    std::fs::write(
        &file,
        shipped_text("multiservice").replacen("      match:", "      matchs:", 1),
    )
    .unwrap();
    let o = weather(&["check", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "(VirtualService weather/forecast-route): spec.http[0].matchs: unknown field `matchs`"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["route", "--help"],
        vec!["check", "--help"],
        vec!["verify", "--help"],
        vec!["stage", "--help"],
        vec!["release", "--help"],
    ] {
        let o = weather(&sub);
        assert!(o.status.success(), "{sub:?}");
        assert!(stdout(&o).contains("Usage: weather"), "{sub:?}");
    }
    let o = weather(&["verify", "--url", "http://127.0.0.1:9", "--requests", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach http://127.0.0.1:9"));
    let o = weather(&["up", "--stage", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no stage \"nope\"; the stages are: all-v1, circuit-breaker, fault-abort")
    );
}

#[test]
fn release_dry_run_prints_the_plan_and_errors_exit_one_before_anything_is_applied() {
    let all_v1 = ["-f", "k8s", "-f", "istio/base", "-f", "istio/stages/all-v1"];
    let mut args = vec!["release", "release/frontend-forecast-v2.yaml", "--dry-run"];
    args.extend(all_v1);
    let o = weather(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan = stdout(&o);
    for step in [
        "== step 1/5: A/B iteration 1 (gateway: old 100%, new 0%)",
        "== step 3/5: weight 10% (gateway: old 90%, new 10%)",
        "== step 5/5: promotion (gateway: old 0%, new 100%)",
        "== on failure: rollback (gateway: old 100%, new 0%)",
    ] {
        assert!(plan.contains(step), "{step}\n{plan}");
    }
    assert!(plan.contains("kind: \"VirtualService\""));

    // Nothing listens on the admin port: an error, exit 1, said plainly.
    let o = weather(&[
        "release",
        "release/frontend-forecast-v2.yaml",
        "--admin",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot reach weather up's admin listener at http://127.0.0.1:9"),
        "{err}"
    );

    // Another namespace, where the train's services are not.
    let mut args = vec![
        "release",
        "release/frontend-forecast-v2.yaml",
        "--dry-run",
        "--namespace",
        "elsewhere",
    ];
    args.extend(all_v1);
    let o = weather(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no Service elsewhere/frontend"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut args = vec!["release", "nowhere.yaml", "--dry-run"];
    args.extend(all_v1);
    let o = weather(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read nowhere.yaml"));
}

/// What `weather up` cannot trace with is a clear error before anything
/// starts: an exporter this build has not, a trace viewer that is missing.
#[test]
fn up_says_clearly_what_it_cannot_trace_with() {
    let o = Command::new(env!("CARGO_BIN_EXE_weather"))
        .current_dir(root())
        .args(["up", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("OTEL_TRACES_EXPORTER", "jaeger")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "OTEL_TRACES_EXPORTER=\"jaeger\": this build exports with otlp, zipkin or none"
        ),
        "{err}"
    );
    let o = weather(&[
        "up",
        "--traces",
        "--zipkin-jar",
        "/nonexistent/zipkin.jar",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no Zipkin server at /nonexistent/zipkin.jar: fetch it with scripts/setup"),
        "{err}"
    );
}

/// `weather route` says what a route's fault does, as the caller's proxy
/// applies it.
#[test]
fn route_explains_a_routes_fault() {
    let text = shipped_text("multiservice").replace(
        "    - name: all-v1\n      route:",
        "    - name: all-v1\n      fault: {delay: {fixedDelay: 2s, percentage: {value: 100}}, abort: {httpStatus: 503, percentage: {value: 50}}}\n      route:",
    );
    assert!(text.contains("fixedDelay: 2s"));
    let dir = crate::scratch("route-fault");
    let file = dir.join("all.yaml");
    std::fs::write(&file, &text).unwrap();
    let o = weather(&[
        "route",
        "-f",
        file.to_str().unwrap(),
        "--from",
        "forecast-v2",
        "--host",
        "recommendation:3005",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(
        out.contains("fault injected by the caller's proxy before it routes: delay 2s (100%), abort 503 (50%)"),
        "{out}"
    );
}
