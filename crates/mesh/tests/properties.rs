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

/// The shipped manifests, as the loader reads them from disk.
fn shipped_yaml() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut out = Vec::new();
        for dir in [
            "k8s",
            "istio/base",
            "istio/stages/multiservice",
            "istio/stages/frontend-combined",
            "istio/stages/forecast-50-50",
        ] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "yaml") {
                    out.push(std::fs::read_to_string(p).unwrap());
                }
            }
        }
        out
    })
}

/// Cases per property: `default` in the test command (a few seconds),
/// `WEATHER_FUZZ_CASES` for a longer campaign.
fn cases(default: u32) -> u32 {
    std::env::var("WEATHER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3000)))]

    /// Any text: the path is refused or normalized, never a panic; what comes
    /// out is absolute, without dot segments or backslashes, and keeps the
    /// query as sent.
    #[test]
    fn any_path_normalizes_to_a_canonical_one(p in "(/|[a-z./%])[a-zA-Z0-9./\\\\%~_|^{}\"<>`-]{0,30}(\\?[a-z=./%]{0,8})?") {
        if let Ok(n) = mesh::path::normalize(&p) {
            let (path, query) = n.split_once('?').map_or((&*n, None), |(a, b)| (a, Some(b)));
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains('\\'));
            prop_assert!(!path.split('/').any(|s| s == "." || s == ".."), "{} -> {}", p, n);
            prop_assert!(!path.bytes().any(|b| b"\"<>`^{|}".contains(&b)), "{} -> {}", p, n);
            prop_assert_eq!(query, p.split_once('?').map(|(_, q)| q));
        }
    }

    #[test]
    fn normalize_never_panics(p in ".{0,40}") {
        let _ = mesh::path::normalize(&p);
    }

    /// A header value of any bytes reads as one character per valid
    /// character and one per byte that is not part of one.
    #[test]
    fn header_text_counts_each_invalid_byte_once(v in prop::collection::vec(any::<u8>(), 0..40)) {
        let text = mesh::routing::header_text(&v);
        let mut expected = 0;
        for chunk in v.utf8_chunks() {
            expected += chunk.valid().chars().count() + chunk.invalid().len();
        }
        prop_assert_eq!(text.chars().count(), expected);
    }

    /// Durations as protobuf's JSON spells them, and anything else refused
    /// without a panic.
    #[test]
    fn durations_read_as_protobuf_writes_them(secs in 0u64..100_000, nanos in 0u32..1_000_000_000, junk in ".{0,12}") {
        let text = if nanos == 0 { format!("{secs}s") } else { format!("{secs}.{nanos:09}s") };
        prop_assert_eq!(mesh::policy::parse_duration(&serde_json::json!(text)), Ok(std::time::Duration::new(secs, nanos)));
        let _ = mesh::policy::parse_duration(&serde_json::json!(junk));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(400)))]

    /// The loader and the compiler take any text without a panic: a shipped
    /// manifest cut, spliced or with bytes replaced is read or refused with
    /// an error, and what is read compiles and routes.
    #[test]
    fn mangled_manifests_are_read_or_refused_never_a_panic(
        file in 0usize..64,
        cut in 0usize..4000,
        len in 0usize..40,
        insert in prop::sample::select(vec!["", ":", "\n", "- ", "{", "[", "*a", "&a ", "!!binary ", "\t", "'", "\"", "~", "{{", "0x", "1e999", "<<: *a"]),
        junk in ".{0,20}",
    ) {
        let texts = shipped_yaml();
        let text = &texts[file % texts.len()];
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        let mut end = (at + len).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        let mangled = format!("{}{insert}{junk}{}", &text[..at], &text[end..]);
        let mut m = mesh::Manifests::default();
        if m.add_yaml("mangled.yaml", &mangled).is_ok() {
            let compiled = mesh::Mesh::compile(&m);
            let headers: Vec<(String, String)> = vec![("cookie".into(), "user=tester".into())];
            let req = mesh::Request { authority: "weather.example", path: "/", method: "GET", scheme: "http", headers: headers.as_slice() };
            let _ = compiled.route(mesh::Caller::Ingress, &req);
            let _ = mesh::analyze::analyze(&m, &compiled);
        }
    }
}
