//! Reading cookies as browsers send them (every cookie for the host, joined by
//! "; ", possibly over several `Cookie` headers), and the `user` cookie the release
//! routes on.

use axum::http::{HeaderMap, header};

/// The value of cookie `name`, if the request carries it.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// A username is 1 to 32 letters, digits, `-` or `_`: safe in a cookie, a header
/// and a page without any escaping.
pub fn valid_username(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The signed-in user, when the cookie holds a valid name.
pub fn user(headers: &HeaderMap) -> Option<String> {
    get(headers, "user").filter(|u| valid_username(u))
}

pub fn login_cookie(user: &str) -> String {
    format!("user={user}; Path=/; HttpOnly; SameSite=Lax")
}

pub const LOGOUT_COOKIE: &str = "user=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax";

pub fn lang_cookie(code: &str) -> String {
    format!("lang={code}; Path=/; Max-Age=31536000; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cookies(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn finds_the_user_among_other_cookies_in_any_order() {
        let rows: [&[&'static str]; 5] = [
            &["user=tester"],
            &["grafana_session=abc; user=tester"],
            &["user=tester; kiali-token=xyz; lang=en"],
            &["a=1", "user=tester"],
            &["  user = tester ;b=2"],
        ];
        for row in rows {
            assert_eq!(user(&cookies(row)).as_deref(), Some("tester"), "{row:?}");
        }
    }

    #[test]
    fn a_lookalike_cookie_is_not_the_user() {
        assert_eq!(user(&cookies(&["xuser=tester; user_id=7"])), None);
        assert_eq!(user(&cookies(&["user=<script>"])), None);
        assert_eq!(user(&HeaderMap::new()), None);
    }

    #[test]
    fn usernames_are_short_plain_words() {
        for ok in ["tester", "a", "Tester_2", "qa-team", &"x".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in [
            "",
            " ",
            "te ster",
            "<b>",
            "名字",
            "a;b",
            "a=b",
            &"x".repeat(33),
        ] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Cookie headers as browsers build them (pairs joined by "; " or
        /// ";", over one or two headers): the user is the first `user` pair,
        /// when its value is a valid name, and nothing else.
        #[test]
        fn the_user_is_the_first_user_pair(
            pairs in proptest::collection::vec((
                proptest::sample::select(vec!["user", "xuser", "user_id", "lang", " user", "USER"]),
                "[a-zA-Z0-9_<>\" =-]{0,12}",
            ), 0..6),
            tight in proptest::bool::ANY,
            split in 0usize..6,
        ) {
            let sep = if tight { ";" } else { "; " };
            let joined = |ps: &[(&str, String)]| ps.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(sep);
            let at = split.min(pairs.len());
            let mut h = HeaderMap::new();
            for part in [&pairs[..at], &pairs[at..]] {
                if !part.is_empty() && let Ok(v) = HeaderValue::from_str(&joined(part)) {
                    h.append(header::COOKIE, v);
                }
            }
            let sent: Vec<(&str, String)> = h.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';')).filter_map(|p| p.trim().split_once('='))
                .map(|(k, v)| (k.trim(), v.trim().trim_matches('"').to_owned())).collect();
            let expected = sent.iter().find(|(k, _)| *k == "user").map(|(_, v)| v.clone()).filter(|v| valid_username(v));
            proptest::prop_assert_eq!(user(&h), expected);
        }

        /// Any bytes at all in the header: no panic, and a user only when the
        /// name is valid.
        #[test]
        fn any_cookie_bytes_are_safe(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                h.append(header::COOKIE, v);
            }
            if let Some(u) = user(&h) {
                proptest::prop_assert!(valid_username(&u));
            }
        }
    }
}
