//! The corpus sent to the shipped stages: browser cookie headers, real and odd
//! user agents (digits and spaces outside ASCII among them), paths, methods,
//! header-name case.

use super::*;

const ODD_AGENTS: &[&str] = &[
    "",
    "curl/8.5.0",
    "Chrome/",
    "chrome/120.0",
    "Mozilla/5.0 (Linux; Android 14) Chrome/131.0 Mobile",
    "Mozilla/5.0 (Android)",
    "Mozilla/5.0 AppleWebKit Chrome/1.2.3 Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Version/17.0 Mobile/15E148 Safari/604.1",
    // Digits and spaces outside ASCII: RE2's \d and \s are ASCII only.
    "Mozilla/5.0 Chrome/\u{661}\u{662}\u{660}.0 Safari",
    "Mozilla/5.0 Chrome/\u{ff11}\u{ff12}\u{ff10}",
    "Mozilla/5.0 (Linux; Android\u{a0}14) Chrome/131.0",
    "Mozilla/5.0 Chrome/120\u{2003}Safari",
    "Mozilla/5.0 (Android) \u{6d4f}\u{89c8}\u{5668}",
    // Spaces outside ASCII at either end: part of the value (only SP and
    // HTAB are optional whitespace).
    "\u{3000}Mozilla/5.0 Chrome/120.0",
    "\u{a0}Mozilla/5.0 Chrome/120.0\u{a0}",
];

const PATHS: &[&str] = &[
    "/",
    "/?city=beijing",
    "/forecast?city=london&days=3",
    "/api/weather?city=new-york",
    "/FORECAST",
    "/login",
    "/static/style.css",
    // Routed after normalization (Istio's default): dot segments, backslashes,
    // escaped unreserved characters.
    "/static/../forecast?days=2",
    "/x/%2e%2e/login",
    "/static\\..\\login",
    "/%46ORECAST",
    "/./forecast",
];

/// Cookie headers built as browsers build them: pairs from a pool, in any
/// order, joined by "; " or ";".
fn random_cookie(rng: &mut fastrand::Rng) -> String {
    const POOL: &[&str] = &[
        "user=tester",
        "user=alice",
        "xuser=tester",
        "user=tester2",
        "lang=zh",
        "lang=en",
        "_ga=GA1.1.99",
        "theme=dark",
        "user=\"tester\"",
        "user=",
        "lang=\u{4e2d}\u{6587}",
        "\u{a0}user=tester",
        "user=tester\u{a0}",
        "\u{3000}user=tester",
    ];
    let n = rng.usize(1..5);
    let sep = ["; ", ";", ";\u{a0}", ";\u{2009}"][rng.usize(..4)];
    (0..n)
        .map(|_| POOL[rng.usize(..POOL.len())])
        .collect::<Vec<_>>()
        .join(sep)
}

/// Header bytes that are not UTF-8 (HTTP allows any byte from 0x80 in a
/// value): a lone Latin-1 byte, a truncated sequence, an overlong encoding, a
/// surrogate, bytes never valid.
pub(super) const NOT_UTF8: &[&[u8]] = &[
    b"\xe9t\xe9",
    b"Chrome/\xe2\x82",
    b"\xe2\x82",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xff\xfe",
    b"tester\x80",
];

/// At least `n` requests from `from` to each of its listeners.
pub(super) fn corpus(proxy: &str, listeners: &[String], n: usize, seed: u64) -> Vec<Ask> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for listener in listeners {
        // A sidecar's listener is named by port; the authorities its Service's
        // virtual host answers, and one it does not.
        let authorities: Vec<String> = match listener.as_str() {
            "http.80" => vec!["weather.example.com".into(), "localhost:8080".into()],
            port => ["frontend", "forecast", "recommendation", "nowhere"]
                .iter()
                .map(|h| format!("{h}:{port}"))
                .collect(),
        };
        for i in 0..n {
            let mut headers = Vec::new();
            let cookie = match i % 3 {
                0 => TESTER_COOKIES[rng.usize(..TESTER_COOKIES.len())].to_owned(),
                1 => ANONYMOUS_COOKIES[rng.usize(..ANONYMOUS_COOKIES.len())].to_owned(),
                _ => random_cookie(&mut rng),
            };
            // Now and then an empty header before or after the others of its
            // name: Envoy merges some headers as they arrive, where an empty
            // value adds nothing, and keeps each value of the rest.
            let empty_at = rng.u8(..16);
            if empty_at == 0 {
                headers.push(("cookie".to_owned(), Vec::new()));
            }
            if !cookie.is_empty() {
                let name = if rng.u8(..10) == 0 {
                    "Cookie"
                } else {
                    "cookie"
                };
                // Now and then the pairs in two Cookie headers, as some
                // clients send them.
                match cookie.split_once("; ") {
                    Some((a, b)) if rng.u8(..5) == 0 => {
                        headers.push((name.to_owned(), a.as_bytes().to_vec()));
                        headers.push(("cookie".to_owned(), b.as_bytes().to_vec()));
                    }
                    _ => {
                        let mut value = cookie.into_bytes();
                        // Now and then a cookie whose bytes are not UTF-8.
                        if rng.u8(..15) == 0 {
                            value.extend_from_slice(b"; pref=");
                            value.extend_from_slice(NOT_UTF8[rng.usize(..NOT_UTF8.len())]);
                        }
                        headers.push((name.to_owned(), value));
                    }
                }
            }
            let ua = if rng.bool() {
                USER_AGENTS[rng.usize(..USER_AGENTS.len())]
            } else {
                ODD_AGENTS[rng.usize(..ODD_AGENTS.len())]
            };
            if !ua.is_empty() {
                let name = if rng.u8(..10) == 0 {
                    "User-Agent"
                } else {
                    "user-agent"
                };
                let mut value = ua.as_bytes().to_vec();
                // Now and then bytes that are not UTF-8 in it.
                if rng.u8(..15) == 0 {
                    value.extend_from_slice(NOT_UTF8[rng.usize(..NOT_UTF8.len())]);
                }
                headers.push((name.to_owned(), value));
                // Now and then a second user-agent.
                if rng.u8(..10) == 0 {
                    let other = USER_AGENTS[rng.usize(..USER_AGENTS.len())];
                    headers.push(("user-agent".to_owned(), other.as_bytes().to_vec()));
                }
            }
            // A lane in the baggage, now and then, as a client might send
            // one (which the edge must not let through) or a service passes
            // one on: the lane among other members, with properties, spaced,
            // or nearly the lane.
            if rng.u8(..3) == 0 {
                const LANES: &[&str] = &[
                    "lane=v2",
                    "lane=v1",
                    "session=42,lane=v2",
                    "lane=v2;ttl=60,session=42",
                    " lane = v2 ",
                    "lane=v22",
                    "xlane=v2",
                    "Lane=v2",
                    "lane=v2,lane=v1",
                    "session=lane=v2",
                    "",
                ];
                let mut value = LANES[rng.usize(..LANES.len())].as_bytes().to_vec();
                if rng.u8(..15) == 0 {
                    value.extend_from_slice(NOT_UTF8[rng.usize(..NOT_UTF8.len())]);
                }
                headers.push(("baggage".to_owned(), value));
            }
            match empty_at {
                1 => headers.insert(0, ("user-agent".to_owned(), Vec::new())),
                2 => headers.push(("User-agent".to_owned(), Vec::new())),
                3 => headers.push(("cookie".to_owned(), Vec::new())),
                _ => {}
            }
            out.push(Ask {
                from: proxy.to_owned(),
                listener: listener.clone(),
                authority: authorities[rng.usize(..authorities.len())].clone(),
                path: PATHS[rng.usize(..PATHS.len())].to_owned(),
                method: ["GET", "GET", "POST", "HEAD"][rng.usize(..4)],
                headers,
                roll: rng.u32(..100),
            });
        }
    }
    out
}
