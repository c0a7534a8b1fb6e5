//! The train's gates, from Istio's standard metrics: read from the admin
//! listener's `/stats/prometheus` (two scrapes, one interval apart: the same
//! arithmetic as Prometheus's `increase()` and `histogram_quantile()`), or from
//! a Prometheus with Flagger's own queries.

use std::collections::BTreeMap;

/// One sample of an exposition: its labels and value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The series of one scrape that the gates read.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub requests: Vec<Sample>,
    pub buckets: Vec<Sample>,
}

impl Scrape {
    /// Reads Prometheus text: `istio_requests_total` and
    /// `istio_request_duration_milliseconds_bucket`.
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            let target = if line.starts_with("istio_requests_total{") {
                &mut s.requests
            } else if line.starts_with("istio_request_duration_milliseconds_bucket{") {
                &mut s.buckets
            } else {
                continue;
            };
            if let Some(sample) = sample(line) {
                target.push(sample);
            }
        }
        s
    }
}

fn sample(line: &str) -> Option<Sample> {
    let open = line.find('{')?;
    let close = line.rfind('}')?;
    let value = line[close + 1..].trim().parse().ok()?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[open + 1..close];
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut v = String::new();
        let mut end = after.len();
        let mut chars = after.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        v.push(if e == 'n' { '\n' } else { e });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => v.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_owned(), v);
        rest = &after[end..];
    }
    Some(Sample { labels, value })
}

/// A label filter: every pair must match.
pub type Filter<'a> = &'a [(&'a str, &'a str)];

fn matches(s: &Sample, filter: Filter<'_>) -> bool {
    filter
        .iter()
        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
}

/// The increase of each series between two scrapes, keyed by its labels (a
/// series that was reset counts from zero, as `increase()` does).
fn increases<'a>(
    before: &'a [Sample],
    after: &'a [Sample],
) -> impl Iterator<Item = (&'a Sample, f64)> + 'a {
    after.iter().map(move |a| {
        let was = before
            .iter()
            .find(|b| b.labels == a.labels)
            .map_or(0.0, |b| b.value);
        let d = if a.value >= was {
            a.value - was
        } else {
            a.value
        };
        (a, d)
    })
}

/// Requests that grew between the scrapes, matching `filter`, and those of them
/// that `also` holds for.
pub fn requests(
    before: &Scrape,
    after: &Scrape,
    filter: Filter<'_>,
    also: impl Fn(&Sample) -> bool,
) -> (f64, f64) {
    increases(&before.requests, &after.requests)
        .filter(|(s, _)| matches(s, filter))
        .fold((0.0, 0.0), |(all, some), (s, d)| {
            (all + d, if also(s) { some + d } else { some })
        })
}

/// Flagger's request-success-rate of a workload, as the destination reports
/// it: the share of non-5xx answers, in percent. `None` without requests.
pub fn success_rate(before: &Scrape, after: &Scrape, workload: &str) -> Option<f64> {
    let filter = [
        ("reporter", "destination"),
        ("destination_workload", workload),
    ];
    let (all, ok) = requests(before, after, &filter, |s| {
        !s.labels
            .get("response_code")
            .is_some_and(|c| c.starts_with('5'))
    });
    (all > 0.0).then(|| ok / all * 100.0)
}

/// Flagger's request-duration of a workload: the p99 in milliseconds, from the
/// histogram's buckets as `histogram_quantile(0.99, ...)` reads them.
pub fn p99(before: &Scrape, after: &Scrape, workload: &str) -> Option<f64> {
    let filter = [
        ("reporter", "destination"),
        ("destination_workload", workload),
    ];
    let mut by_le: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (s, d) in increases(&before.buckets, &after.buckets) {
        if !matches(s, &filter) {
            continue;
        }
        let le = match s.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(v) => match v.parse() {
                Ok(v) => v,
                Err(_) => continue,
            },
            None => continue,
        };
        by_le.entry(le.to_bits()).or_insert((le, 0.0)).1 += d;
    }
    let mut buckets: Vec<(f64, f64)> = by_le.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    quantile(0.99, &buckets)
}

/// Prometheus's `histogram_quantile` over cumulative buckets `(le, count)`.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // The highest finite bound, as Prometheus answers.
                return Some(prev.0);
            }
            let within = count - prev.1;
            let share = if within > 0.0 {
                (rank - prev.1) / within
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * share);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
istio_requests_total{reporter="destination",destination_workload="forecast-v2",response_code="200"} 10
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="forecast-v2",le="1"} 0
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="forecast-v2",le="5"} 10
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="forecast-v2",le="+Inf"} 10
"#;
    const AFTER: &str = r#"
istio_requests_total{reporter="destination",destination_workload="forecast-v2",response_code="200"} 100
istio_requests_total{reporter="destination",destination_workload="forecast-v2",response_code="500"} 10
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="forecast-v2",le="1"} 0
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="forecast-v2",le="5"} 100
istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload="forecast-v2",le="+Inf"} 100
"#;

    #[test]
    fn success_rate_counts_the_increase_between_scrapes() {
        let (b, a) = (Scrape::parse(BEFORE), Scrape::parse(AFTER));
        let rate = success_rate(&b, &a, "forecast-v2").unwrap();
        assert!((rate - 90.0).abs() < 1e-9, "{rate}");
        assert_eq!(success_rate(&b, &a, "forecast-v1"), None);
    }

    #[test]
    fn p99_interpolates_within_the_bucket_as_prometheus_does() {
        let (b, a) = (Scrape::parse(BEFORE), Scrape::parse(AFTER));
        // 90 new observations, all in (1, 5]: rank 89.1 of 90.
        let p = p99(&b, &a, "forecast-v2").unwrap();
        assert!((p - (1.0 + 4.0 * 89.1 / 90.0)).abs() < 1e-9, "{p}");
    }
}
