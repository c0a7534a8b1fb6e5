//! String matching as Envoy does it for Istio's `StringMatch`: `exact`, `prefix`,
//! and `regex` with RE2 semantics over the WHOLE value (Envoy's safe_regex is a
//! full match, never a substring search).

use regex::Regex;

use crate::model::StringMatch;

/// A `StringMatch`, compiled once.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Matcher {
    /// Compiles a match; a regex that does not compile is an error naming it.
    pub fn new(m: &StringMatch) -> Result<Matcher, RegexError> {
        Ok(match m {
            StringMatch::Exact(s) => Matcher::Exact(s.clone()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatch::Regex(r) => Matcher::Regex(full_match_regex(r)?),
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

/// A regex RE2 refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("regex {regex:?} does not compile: {reason}")]
pub struct RegexError {
    pub regex: String,
    pub reason: String,
}

/// A regex anchored at both ends, so it must match the whole value.
pub fn full_match_regex(re: &str) -> Result<Regex, RegexError> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| RegexError {
        regex: re.to_owned(),
        reason: e.to_string().lines().last().unwrap_or("").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: StringMatch) -> Matcher {
        Matcher::new(&s).unwrap()
    }

    #[test]
    fn regex_must_match_the_whole_value() {
        let r = m(StringMatch::Regex("user=tester".into()));
        assert!(r.matches("user=tester"));
        assert!(!r.matches("a=1; user=tester"), "a substring is not a match");
        let chrome = m(StringMatch::Regex(r".*(Chrome/([\d.]+)).*".into()));
        assert!(
            chrome
                .matches("Mozilla/5.0 (X11) AppleWebKit/537.36 Chrome/120.0.6099.71 Safari/537.36")
        );
        assert!(!chrome.matches("Mozilla/5.0 (X11; rv:121.0) Gecko/20100101 Firefox/121.0"));
    }

    #[test]
    fn an_alternation_is_anchored_as_a_whole() {
        // Without the group, `^a|b$` would match "ab…" and "…b".
        let r = m(StringMatch::Regex("a|b".into()));
        assert!(r.matches("a") && r.matches("b"));
        assert!(!r.matches("ax") && !r.matches("xb"));
    }

    #[test]
    fn exact_and_prefix() {
        assert!(m(StringMatch::Exact("v2".into())).matches("v2"));
        assert!(!m(StringMatch::Exact("v2".into())).matches("v22"));
        assert!(m(StringMatch::Prefix("/api".into())).matches("/api/weather"));
        assert!(!m(StringMatch::Prefix("/api".into())).matches("/ap"));
    }

    #[test]
    fn a_bad_regex_is_an_error() {
        assert!(
            Matcher::new(&StringMatch::Regex("(".into()))
                .unwrap_err()
                .to_string()
                .starts_with("regex \"(\" does not compile")
        );
    }
}
