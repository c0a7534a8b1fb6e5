//! Query-string and form parameters, parsed leniently so that no input can make the
//! extractor itself fail with an unhelpful rejection: handlers validate each value
//! and answer with their own clear message.

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::error::AppError;

/// The input, kept once, and each pair as a range of it, or decoded text where
/// decoding changed it: a query of plain pairs costs two allocations, not two
/// per pair.
#[derive(Debug, Default, Clone)]
pub struct Params {
    raw: String,
    pairs: Vec<(Part, Part)>,
}

#[derive(Debug, Clone)]
enum Part {
    /// `raw[start..end]`, as it was.
    Range(usize, usize),
    /// Percent-decoded or `+` replaced.
    Decoded(String),
}

impl Params {
    pub fn parse(input: &[u8]) -> Self {
        let raw = match std::str::from_utf8(input) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(input).into_owned(),
        };
        // As `form_urlencoded::parse` splits (on `&`, empty pieces skipped,
        // name and value at the first `=`), in one pass over the bytes; a
        // piece with nothing to decode is kept as a range of `raw`, the
        // others `form_urlencoded` decodes.
        let bytes = raw.as_bytes();
        let mut pairs = Vec::with_capacity(8);
        let (mut start, mut eq, mut decode) = (0, None, false);
        for i in 0..=bytes.len() {
            match bytes.get(i) {
                Some(b'=') if eq.is_none() => eq = Some(i),
                Some(b'%' | b'+') => decode = true,
                Some(b'&') | None => {
                    if i > start {
                        if decode {
                            if let Some((k, v)) = form_urlencoded::parse(&bytes[start..i]).next() {
                                pairs.push((
                                    Part::Decoded(k.into_owned()),
                                    Part::Decoded(v.into_owned()),
                                ));
                            }
                        } else {
                            let eq = eq.unwrap_or(i);
                            pairs.push((Part::Range(start, eq), Part::Range((eq + 1).min(i), i)));
                        }
                    }
                    (start, eq, decode) = (i + 1, None, false);
                }
                Some(_) => {}
            }
        }
        Params { raw, pairs }
    }

    fn text<'a>(&'a self, p: &'a Part) -> &'a str {
        match p {
            Part::Range(a, b) => &self.raw[*a..*b],
            Part::Decoded(s) => s,
        }
    }

    /// The first value given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| self.text(k) == name)
            .map(|(_, v)| self.text(v))
    }

    /// A number within `min..=max`, or a 400 that says which parameter and range.
    /// Absent or empty is `None`.
    pub fn number(&self, name: &str, min: f64, max: f64) -> Result<Option<f64>, AppError> {
        match self.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_number(v)
                .filter(|n| n.is_finite() && (min..=max).contains(n))
                .map(Some)
                .ok_or_else(|| {
                    AppError::BadRequest(format!("`{name}` must be a number from {min} to {max}"))
                }),
        }
    }

    /// Like [`Params::number`], but the parameter must be there.
    pub fn required_number(&self, name: &str, min: f64, max: f64) -> Result<f64, AppError> {
        self.number(name, min, max)?
            .ok_or_else(|| AppError::BadRequest(format!("`{name}` is required")))
    }
}

/// `v` as a number, as `str::parse::<f64>` reads it; plain integers (what the
/// services send each other) without its general algorithm.
fn parse_number(v: &str) -> Option<f64> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let n = digits
            .bytes()
            .fold(0i64, |n, b| n * 10 + i64::from(b - b'0')) as f64;
        return Some(if digits.len() < v.len() { -n } else { n });
    }
    v.parse::<f64>().ok()
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or("").as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_percent_encoding_is_decoded() {
        let p = Params::parse(b"city=new-york&days=3&city=london&q=%3Cb%3E+x");
        assert_eq!(p.get("city"), Some("new-york"));
        assert_eq!(p.get("days"), Some("3"));
        assert_eq!(p.get("q"), Some("<b> x"));
        assert_eq!(p.get("missing"), None);
    }

    #[test]
    fn numbers_are_range_checked_with_a_message_naming_the_parameter() {
        let p = Params::parse(b"a=3.5&b=abc&c=99&d=NaN&e=");
        assert_eq!(p.number("a", 0.0, 10.0), Ok(Some(3.5)));
        assert_eq!(p.number("e", 0.0, 10.0), Ok(None));
        assert_eq!(p.number("z", 0.0, 10.0), Ok(None));
        for bad in ["b", "c", "d"] {
            let err = p.number(bad, 0.0, 10.0).unwrap_err();
            assert_eq!(
                err,
                AppError::BadRequest(format!("`{bad}` must be a number from 0 to 10"))
            );
        }
        assert_eq!(
            p.required_number("z", 0.0, 1.0),
            Err(AppError::BadRequest("`z` is required".into()))
        );
    }

    #[test]
    fn broken_encoding_never_fails() {
        let p = Params::parse(b"city=%zz%&&=&days");
        assert_eq!(p.get("city"), Some("%zz%"));
        assert_eq!(p.get("days"), Some(""));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// What a form encodes reads back as it was, first value first; any
        /// bytes at all read without a panic.
        #[test]
        fn encoded_pairs_read_back(
            pairs in proptest::collection::vec(("[a-z]{1,4}", ".{0,12}"), 0..5),
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..60),
        ) {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .finish();
            let p = Params::parse(encoded.as_bytes());
            for (k, _) in &pairs {
                let first = pairs.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_str());
                proptest::prop_assert_eq!(p.get(k), first);
            }
            let p = Params::parse(&junk);
            let _ = p.number("days", 1.0, 7.0);
        }

        /// Any query reads as `form_urlencoded` reads it, pair for pair.
        #[test]
        fn pairs_are_those_form_urlencoded_reads(query in "[a-c=&%+2-4A-F\\x00-\\x7f]{0,40}") {
            let p = Params::parse(query.as_bytes());
            let ours: Vec<(&str, &str)> = p.pairs.iter().map(|(k, v)| (p.text(k), p.text(v))).collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(&str, &str)> = theirs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            proptest::prop_assert_eq!(ours, theirs);
        }

        /// Numbers read as `str::parse::<f64>` reads them.
        #[test]
        fn numbers_are_read_as_the_standard_library_reads_them(v in "-?[0-9]{0,17}(\\.[0-9]{0,3})?|[-+.eE0-9a-z]{0,8}") {
            let ours = parse_number(&v).map(f64::to_bits);
            proptest::prop_assert_eq!(ours, v.parse::<f64>().ok().map(f64::to_bits), "{}", v);
        }
    }
}
