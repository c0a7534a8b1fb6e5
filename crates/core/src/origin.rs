//! Whether a write comes from another site's page: a page the user opened must
//! not log them in or out, or switch a release, by posting a form here.
//! Browsers say where a POST comes from (`Sec-Fetch-Site`, `Origin`); `curl`
//! and the project's own tools send neither, and are let through.

use axum::http::{HeaderMap, header};

/// True when the request's headers show it was sent by another origin's page.
pub fn cross_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).map(|h| h.as_bytes());
    let origin = origin.as_bytes();
    let authority = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    authority.is_none() || authority != host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn another_sites_page_is_told_from_this_one_and_from_tools() {
        let host = ("host", "127.0.0.1:8080");
        assert!(!cross_origin(&headers(&[host])), "curl");
        assert!(!cross_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!cross_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(cross_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(cross_origin(&headers(&[host, ("origin", "null")])));
        assert!(cross_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
    }
}
