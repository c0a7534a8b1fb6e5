//! The path a request is routed by, as Istio's proxies see it: Istio turns on
//! Envoy's `normalize_path` (mesh config `pathNormalization: BASE`, the
//! default; pilot/pkg/networking/core/listener_builder.go), so every
//! proxy canonicalizes the path before any route matches and forwards the
//! canonical one (docs/architecture.md, "Path normalization"). Without it a
//! `prefix: /api` rule could be walked around with `/x/../api`.
//!
//! What Envoy does, measured with Envoy 1.40 (the fault conformance test
//! holds this module against it):
//! - `\` becomes `/`;
//! - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded;
//!   other escapes are kept as sent, `%2F` included; a `%` not followed by two
//!   hex digits is kept; `%00` is refused;
//! - `"` `<` `>` `` ` `` `^` `{` `|` `}` are escaped (`%22`, ...);
//! - `.` and `..` segments (also written `%2e`) are removed as RFC 3986 says,
//!   never above the root; a path that ends in one keeps its trailing `/`;
//! - the query is left as it is; a fragment is refused.

use std::borrow::Cow;

/// Why a path cannot be normalized: Envoy answers 400 without forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// `%00`, or a byte a path never holds.
    BadCharacter,
    /// A `#` fragment, which a client must never send.
    Fragment,
}

/// `path_and_query` as Istio's proxies route and forward it. Borrowed when
/// it is already canonical, as nearly every request's is.
pub fn normalize(path_and_query: &str) -> Result<Cow<'_, str>, PathError> {
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if path_and_query.contains('#') {
        return Err(PathError::Fragment);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(path)? {
        return Ok(Cow::Borrowed(path_and_query));
    }
    let escaped = canonical_characters(path)?;
    let mut out = remove_dot_segments(&escaped);
    out.push_str(query);
    Ok(Cow::Owned(out))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn escaped_in_path(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'`' | b'^' | b'{' | b'|' | b'}')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// No escape to decode, no character to escape, no dot segment: nothing to do.
fn is_canonical(path: &str) -> Result<bool, PathError> {
    let b = path.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            0..=0x20 | 0x7f.. => return Err(PathError::BadCharacter),
            b'\\' | b'%' => return Ok(false),
            b'.' if b[i - 1] == b'/' => {
                let rest = &b[i + 1..];
                if rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && matches!(rest.get(1), None | Some(b'/')))
                {
                    return Ok(false);
                }
            }
            c if escaped_in_path(c) => return Ok(false),
            _ => {}
        }
    }
    Ok(true)
}

/// Backslashes, escapes and characters, segment by segment still joined.
fn canonical_characters(path: &str) -> Result<String, PathError> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            0..=0x20 | 0x7f.. => return Err(PathError::BadCharacter),
            b'\\' => out.push('/'),
            b'%' => match (
                b.get(i + 1).and_then(|&h| hex(h)),
                b.get(i + 2).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => {
                    let v = h * 16 + l;
                    if v == 0 {
                        return Err(PathError::BadCharacter);
                    }
                    if unreserved(v) {
                        out.push(v as char);
                    } else {
                        out.push_str(&path[i..i + 3]);
                    }
                    i += 3;
                    continue;
                }
                _ => out.push('%'),
            },
            c if escaped_in_path(c) => {
                out.push('%');
                out.push(HEX[usize::from(c >> 4)] as char);
                out.push(HEX[usize::from(c & 15)] as char);
            }
            c => out.push(c as char),
        }
        i += 1;
    }
    Ok(out)
}

/// RFC 3986 5.2.4 on an absolute path: `.` and `..` segments go; `..` never
/// climbs above the root; a path ending in one ends in `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    segments.pop();
                }
                if i == last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair was sent to Envoy 1.40 with `normalize_path: true` and read
    /// back from the upstream.
    #[test]
    fn paths_normalize_as_envoy_forwarded_them() {
        for (sent, forwarded) in [
            ("/", "/"),
            ("/a/b?x=1", "/a/b?x=1"),
            ("/a/./b", "/a/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E./b", "/b"),
            ("/a//b", "/a//b"),
            ("/a\\b", "/a/b"),
            ("/%41%7e", "/A~"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a/b/", "/a/b/"),
            ("/a?x=/../y", "/a?x=/../y"),
            ("/a/.hidden", "/a/.hidden"),
            ("/a/...", "/a/..."),
            ("/a%c3%a4", "/a%c3%a4"),
            ("/a?%zz", "/a?%zz"),
            ("/a;b/../c", "/c"),
            ("/a/b%2f..%2fc", "/a/b%2f..%2fc"),
            ("/a|b", "/a%7Cb"),
            ("/a{b}", "/a%7Bb%7D"),
            ("/a^b", "/a%5Eb"),
            ("/a'b", "/a'b"),
            ("/a[b]", "/a[b]"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/b/./", "/a/b/"),
            ("/a/%2e", "/a/"),
            ("/a/.%2E/b", "/b"),
            ("/a%2e/b", "/a./b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/%7E%2d%5F%2E%30", "/~-_.0"),
            ("/%3f%2F%25", "/%3f%2F%25"),
            ("/a%", "/a%"),
            ("/a%4", "/a%4"),
            ("/a%G1", "/a%G1"),
            ("/a\"b", "/a%22b"),
            ("/a<b>", "/a%3Cb%3E"),
            ("/a`b", "/a%60b"),
            ("/a!$&()*+,;=:@", "/a!$&()*+,;=:@"),
            ("/a%7c", "/a%7c"),
            ("/a%20b", "/a%20b"),
        ] {
            assert_eq!(normalize(sent).as_deref(), Ok(forwarded), "{sent}");
        }
    }

    #[test]
    fn envoy_refuses_these() {
        assert_eq!(normalize("/a%00b"), Err(PathError::BadCharacter));
        assert_eq!(normalize("/a b"), Err(PathError::BadCharacter));
        assert_eq!(normalize("/ä"), Err(PathError::BadCharacter));
        assert_eq!(normalize("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("/a#frag"), Err(PathError::Fragment));
    }

    #[test]
    fn a_canonical_path_is_borrowed() {
        assert!(matches!(
            normalize("/forecast?city=Paris&days=3"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(
            normalize("/a/.well-known/x"),
            Ok(Cow::Borrowed(_))
        ));
    }
}
