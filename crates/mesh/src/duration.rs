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
