//! The shipped tester regex against cookie headers as browsers send them: the
//! very lists `weather verify` sends as tester and anonymous traffic, so what
//! verify expects of each request is what the cluster's Envoy decides.

use mesh::{matching::Matcher, model::StringMatch};
use weather::verify::{ANONYMOUS_COOKIES, TESTER_COOKIES};

use crate::shipped;

fn tester_matcher() -> Matcher {
    let (m, _) = shipped("multiservice");
    let vs = m
        .virtual_services
        .iter()
        .find(|v| v.metadata.name == "frontend-route")
        .expect("the multiservice stage has frontend-route");
    let cookie = &vs.spec.http[0].matches[0].headers["cookie"];
    assert!(matches!(cookie, StringMatch::Regex(_)), "{cookie:?}");
    Matcher::new(cookie).expect("the shipped regex compiles")
}

#[test]
fn the_tester_regex_matches_every_browser_cookie_header_holding_user_tester() {
    let m = tester_matcher();
    let missed: Vec<&&str> = TESTER_COOKIES.iter().filter(|c| !m.matches(c)).collect();
    assert!(missed.is_empty(), "tester cookies not matched: {missed:?}");
}

#[test]
fn the_tester_regex_matches_no_other_user_and_no_lookalike() {
    let m = tester_matcher();
    let matched: Vec<&&str> = ANONYMOUS_COOKIES.iter().filter(|c| m.matches(c)).collect();
    assert!(
        matched.is_empty(),
        "non-tester cookies matched: {matched:?}"
    );
}
