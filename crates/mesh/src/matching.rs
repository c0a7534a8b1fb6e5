//! String matching as Envoy does it for Istio's `StringMatch`: `exact`, `prefix`,
//! and `regex` with RE2 semantics over the WHOLE value (Envoy's safe_regex is a
//! full match, never a substring search).
//!
//! Rust's regex syntax is close to RE2's but not the same, so a pattern is
//! translated first ([`re2`]): RE2's `\d`, `\w`, `\s` and `\b` are ASCII only
//! (Rust's are Unicode), RE2 knows `\Q...\E`, and inside a class RE2 reads `[`,
//! `&&`, `--` and `~~` as characters where Rust reads nested classes and set
//! operations. The conformance test holds the result against a real Envoy.

use regex::Regex;

use crate::model::StringMatch;

/// A `StringMatch`, compiled once.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    /// Any value, as long as there is one.
    Present,
    /// Envoy's `path_separated_prefix`: the path is the prefix, or goes on
    /// after it with a `/` (never used for headers).
    PathSeparatedPrefix(String),
}

impl Matcher {
    /// Compiles a match; a regex that does not compile is an error naming it.
    pub fn new(m: &StringMatch) -> Result<Matcher, RegexError> {
        Ok(match m {
            StringMatch::Exact(s) => Matcher::Exact(s.clone()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.clone()),
            StringMatch::Present => Matcher::Present,
            StringMatch::Regex(r) => Matcher::Regex(full_match_regex(r)?),
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(p) => value.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(value),
            Matcher::Present => true,
            Matcher::PathSeparatedPrefix(p) => value
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
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

/// RE2's Perl classes, spelled for Rust: outside a class, and inside one.
fn perl_class(c: char) -> Option<(&'static str, &'static str)> {
    Some(match c {
        'd' => ("[0-9]", "0-9"),
        'D' => ("[^0-9]", "[^0-9]"),
        'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
        'W' => ("[^0-9A-Za-z_]", "[^0-9A-Za-z_]"),
        's' => (r"[\t\n\x0C\r ]", r"\t\n\x0C\r "),
        'S' => (r"[^\t\n\x0C\r ]", r"[^\t\n\x0C\r ]"),
        _ => return None,
    })
}

/// An RE2 pattern in Rust's syntax, meaning what RE2 means by it.
pub fn re2(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    // Right after `[` or `[^`, where `]` is a character.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                if let Some((outside, inside)) = perl_class(next) {
                    out.push_str(if in_class { inside } else { outside });
                } else if next == 'b' && !in_class {
                    out.push_str(r"(?-u:\b)");
                } else if next == 'B' && !in_class {
                    out.push_str(r"(?-u:\B)");
                } else if next == 'Q' {
                    // A literal up to `\E`.
                    let mut literal = String::new();
                    while let Some(l) = chars.next() {
                        if l == '\\' && chars.peek() == Some(&'E') {
                            chars.next();
                            break;
                        }
                        literal.push(l);
                    }
                    let escaped = regex::escape(&literal);
                    if in_class {
                        for ch in escaped.chars() {
                            if matches!(ch, '[' | '&' | '~' | '-') {
                                out.push('\\');
                            }
                            out.push(ch);
                        }
                    } else {
                        out.push_str(&escaped);
                    }
                } else {
                    out.push('\\');
                    out.push(next);
                }
            }
            '[' if !in_class => {
                out.push('[');
                in_class = true;
                class_start = true;
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class, `[:alpha:]`: ASCII in both.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class && !at_start => {
                out.push(']');
                in_class = false;
            }
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.peek() == Some(&'-') => {
                chars.next();
                out.push_str(r"-\-");
            }
            _ => {
                if in_class && at_start && c == ']' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// A regex anchored at both ends, so it must match the whole value, with RE2's
/// meaning.
pub fn full_match_regex(re: &str) -> Result<Regex, RegexError> {
    Regex::new(&format!("^(?:{})$", re2(re))).map_err(|e| RegexError {
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

    /// RE2's classes are ASCII: a digit or a space of another script is not one.
    #[test]
    fn perl_classes_are_ascii_as_in_re2() {
        let chrome = m(StringMatch::Regex(r".*(Chrome/([\d.]+)).*".into()));
        assert!(chrome.matches("Mozilla/5.0 Chrome/120.0 Safari"));
        assert!(!chrome.matches("Mozilla/5.0 Chrome/\u{661}\u{662}\u{660} Safari"));
        let tester = m(StringMatch::Regex(
            r"^(.*;\s*)?user=tester(\s*;.*)?$".into(),
        ));
        assert!(tester.matches("lang=en; user=tester"));
        assert!(!tester.matches("lang=en;\u{a0}user=tester"));
        assert!(m(StringMatch::Regex(r"\w+".into())).matches("abc_1"));
        assert!(!m(StringMatch::Regex(r"\w+".into())).matches("\u{e9}t\u{e9}"));
        assert!(m(StringMatch::Regex(r"[^\d]+".into())).matches("\u{661}"));
        assert!(m(StringMatch::Regex(r"[\D]".into())).matches("\u{661}"));
        assert!(m(StringMatch::Regex(r"\S+\s\S+".into())).matches("a b"));
        assert!(!m(StringMatch::Regex(r"\S+\s\S+".into())).matches("a\u{2003}b"));
        // `.` is a whole character in both.
        assert!(m(StringMatch::Regex(r"^.$".into())).matches("\u{4e2d}"));
    }

    /// What RE2 reads as characters inside a class, Rust would read as syntax.
    #[test]
    fn class_syntax_means_what_re2_means() {
        assert!(m(StringMatch::Regex("[a&&b]".into())).matches("&"));
        assert!(m(StringMatch::Regex("[[]".into())).matches("["));
        assert!(m(StringMatch::Regex("[]a]".into())).matches("]"));
        assert!(m(StringMatch::Regex("[+--]".into())).matches(","));
        assert!(m(StringMatch::Regex("[~~]".into())).matches("~"));
        assert!(m(StringMatch::Regex("[[:digit:]x]+".into())).matches("12x"));
        assert!(m(StringMatch::Regex(r"\Qa.b*\E".into())).matches("a.b*"));
        assert!(!m(StringMatch::Regex(r"\Qa.b*\E".into())).matches("axb"));
        assert!(m(StringMatch::Regex(r"\bab\b".into())).matches("ab"));
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
