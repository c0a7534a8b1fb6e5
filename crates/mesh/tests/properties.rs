//! Properties of the matchers, over generated values: a regex route never
//! matches a value RE2 would not match in full, and the shipped tester regex
//! holds exactly when the cookie header carries the pair user=tester.

use mesh::{matching::Matcher, model::StringMatch};
use proptest::prelude::*;

/// The cookie regex of the shipped multiservice stage.
fn shipped_tester_regex() -> &'static str {
    static RE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../istio/stages/multiservice");
        let m = mesh::load_paths(&[dir]).unwrap();
        let vs = m
            .virtual_services
            .iter()
            .find(|v| v.metadata.name == "frontend-route")
            .unwrap();
        match &vs.spec.http[0].matches[0].headers["cookie"] {
            StringMatch::Regex(r) => r.clone(),
            other => panic!("{other:?}"),
        }
    })
}

fn regex(r: &str) -> Matcher {
    Matcher::new(&StringMatch::Regex(r.to_owned())).unwrap()
}

proptest! {
    /// A literal regex is an exact match: never a substring, prefix or suffix.
    #[test]
    fn a_literal_regex_matches_only_the_whole_value(lit in "[a-zA-Z0-9/=;. -]{1,12}", before in "[a-z;= ]{0,6}", after in "[a-z;= ]{0,6}") {
        let m = regex(&regex::escape(&lit));
        let value = format!("{before}{lit}{after}");
        prop_assert_eq!(m.matches(&value), value == lit);
    }

    /// `.*(X).*` holds exactly when X occurs somewhere.
    #[test]
    fn a_wrapped_regex_is_a_substring_test(needle in "[A-Za-z/]{1,8}", hay in "[A-Za-z/ .0-9]{0,40}") {
        let m = regex(&format!(".*({}).*", regex::escape(&needle)));
        prop_assert_eq!(m.matches(&hay), hay.contains(&needle));
    }

    /// Envoy's exact and prefix matches are case-sensitive and byte-wise: a
    /// value with anything appended is a prefix match and not an exact one, and
    /// a value whose case differs is neither.
    #[test]
    fn exact_and_prefix_are_case_sensitive_and_whole(a in "[a-z0-9/=;.-]{1,10}", tail in ".{1,6}") {
        let exact = Matcher::new(&StringMatch::Exact(a.clone())).unwrap();
        let prefix = Matcher::new(&StringMatch::Prefix(a.clone())).unwrap();
        let longer = format!("{a}{tail}");
        prop_assert!(exact.matches(&a) && prefix.matches(&a));
        prop_assert!(!exact.matches(&longer));
        prop_assert!(prefix.matches(&longer));
        let upper = a.to_uppercase();
        if upper != a {
            prop_assert!(!exact.matches(&upper) && !prefix.matches(&upper));
        }
    }

    /// The shipped tester regex, over cookie headers built the way browsers
    /// build them: pairs joined by "; " (or ";"), in any order.
    #[test]
    fn the_tester_regex_holds_iff_a_cookie_is_user_tester(
        pairs in prop::collection::vec((prop::sample::select(vec!["user", "xuser", "user_id", "lang", "_ga", "grafana_session", "kiali-token", "myuser"]),
                                        prop::sample::select(vec!["tester", "tester2", "alice", "zh", "GA1.1.2", "user=tester", "Tester", ""])), 0..6),
        tight in any::<bool>(),
    ) {
        let header = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(if tight { ";" } else { "; " });
        let is_tester = pairs.iter().any(|(k, v)| *k == "user" && *v == "tester");
        prop_assert_eq!(regex(shipped_tester_regex()).matches(&header), is_tester, "{}", header);
    }
}
