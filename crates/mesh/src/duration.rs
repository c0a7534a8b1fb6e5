//! Durations as Istio's objects spell them (protobuf's JSON form).

use std::time::Duration;

use serde_json::Value;

/// A protobuf `Duration` as JSON (and so Istio's YAML) spells it: seconds
/// with up to nine decimals and an `s`, `"1.5s"`.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{v} is not a duration string like \"1.5s\""))?;
    let bad =
        || format!("{s:?} is not a duration: write seconds with an s, like \"1.5s\" or \"0.25s\"");
    let n = s.strip_suffix('s').ok_or_else(bad)?;
    let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let secs: u64 = whole.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Duration::new(secs, nanos))
}

/// A Go duration of hours, minutes, seconds and milliseconds, as Go's
/// `time.ParseDuration` reads it (and so Gateway API's `Duration`, Flagger's
/// intervals): `1m30s`, `500ms`, `1.5s`; `0s` is zero. `None` for anything
/// else (an empty string, a number without a unit, another unit).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else {
            return None;
        };
        total += Duration::try_from_secs_f64(n * unit).ok()?;
        rest = &rest[len..];
    }
    Some(total)
}
