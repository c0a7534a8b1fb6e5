//! `weather verify`: sends anonymous and tester traffic to an ingress (local or a
//! real cluster's), reads `x-weather-chain` from every answer, prints the version
//! matrix, and judges it: against the model's prediction for a stage when given
//! one, otherwise against the multiservice promise (testers all on the v2 chain,
//! everyone else all on v1, no crossing).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use mesh::{Manifests, Mesh};
use tokio::sync::Semaphore;

use weather_core::client::root_cause;

use crate::predict::{Prediction, predict};

/// Cookie headers as browsers send them for a host: every cookie they hold,
/// joined by "; " (some clients write ";"), in an order the user does not
/// choose. Each holds the pair `user=tester`. The tests hold the shipped
/// tester regex against both lists.
pub const TESTER_COOKIES: &[&str] = &[
    "user=tester",
    "user=tester; lang=en",
    "lang=zh; user=tester",
    "_ga=GA1.1.1234567890.1700000000; user=tester",
    "grafana_session=4f1e6c0d9a; grafana_session_expiry=1732550000; user=tester",
    "kiali-token-nonce=abc123; user=tester; kiali-token-aes=eyJhbGciOi",
    "user=tester; _ga=GA1.1.1; _gid=GA1.1.2; lang=en",
    "csrftoken=x; sessionid=y; user=tester; theme=dark",
    "a=1;user=tester",
    "a=1;user=tester;b=2",
    "csrftoken=x; sessionid=y; theme=dark; user=tester; lang=en; consent=yes",
    "JSESSIONID=node0abc; user=tester",
    "empty=; user=tester",
    "weird=a=b; user=tester",
];

/// Cookie headers of everyone else, lookalikes included: none holds the pair
/// `user=tester`.
pub const ANONYMOUS_COOKIES: &[&str] = &[
    "",
    "lang=en",
    "user=",
    "user=alice",
    "_ga=GA1.1.1234567890.1700000000",
    "grafana_session=4f1e6c0d9a; user=guest",
    "xuser=tester; lang=zh",
    "user=tester2",
    "user=testers",
    "user=Tester",
    "kiali-token-nonce=abc123; myuser=tester",
    "user_id=tester",
    "superuser=tester",
    "lang=zh; user=tester1",
    "note=user=tester",
    "user= tester",
    "user=tester-x",
    "username=tester",
    "a=1; xuser=tester; b=2",
];

pub const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];

const CITIES: [&str; 5] = ["beijing", "shanghai", "shenzhen", "london", "new-york"];

/// What the matrix is judged against.
pub enum Judge {
    /// The multiservice promise.
    Promise,
    /// The model's prediction for the stage of these manifests.
    Stage {
        name: String,
        manifests: Box<Manifests>,
        mesh: Box<Mesh>,
    },
}

pub struct Options {
    pub url: String,
    /// Requests per class (anonymous, tester).
    pub requests: usize,
    pub concurrency: usize,
    pub judge: Judge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Anonymous,
    Tester,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Anonymous => "anonymous",
            Class::Tester => "tester",
        }
    }
}

/// The `i`-th request of a class: its cookie and user-agent headers.
pub fn request_headers(class: Class, i: usize) -> Vec<(String, String)> {
    let cookies = match class {
        Class::Anonymous => ANONYMOUS_COOKIES,
        Class::Tester => TESTER_COOKIES,
    };
    let mut h = vec![(
        "user-agent".to_owned(),
        USER_AGENTS[(i / cookies.len()) % USER_AGENTS.len()].to_owned(),
    )];
    let c = cookies[i % cookies.len()];
    if !c.is_empty() {
        h.push(("cookie".to_owned(), c.to_owned()));
    }
    h
}

#[derive(Debug, Default)]
pub struct Row {
    pub observed: BTreeMap<String, usize>,
    pub expected: Prediction,
    pub sent: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: BTreeMap<Class, Row>,
    pub crossings: usize,
    pub problems: Vec<String>,
    /// What the judge left unjudged, and why.
    pub notes: Vec<String>,
}

impl Report {
    /// Every problem found is in `problems`; crossings are one when the
    /// multiservice promise is the judge, and intended in some stages.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The versions of frontend and forecast in a chain, when both are there.
fn versions(chain: &str) -> (Option<&str>, Option<&str>) {
    let find = |app: &str| {
        chain
            .split(',')
            .find_map(|l| l.strip_prefix(app)?.strip_prefix(':'))
    };
    (find("frontend"), find("forecast"))
}

/// frontend of one version calling forecast of another.
pub fn is_crossing(chain: &str) -> bool {
    matches!(versions(chain), (Some(a), Some(b)) if a != b)
}

/// Why no matrix could be measured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--url {0:?} must start with http:// or https://")]
    NotHttp(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("a request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

pub async fn run(opts: Options) -> Result<Report, Error> {
    let base = opts.url.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Error::NotHttp(base));
    }
    let http = reqwest::Client::builder()
        .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(Error::Client)?;
    // Fail early and clearly when nothing answers there.
    if let Err(e) = http.get(format!("{base}/healthz")).send().await {
        return Err(Error::Unreachable {
            url: base,
            cause: root_cause(&e),
        });
    }

    // Testers log in as a browser does: on a stage that routes on a signed
    // token (multiservice-jwt), the cookie alone no longer makes a tester.
    let token = tester_token(&http, &base).await;
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = Vec::new();
    for class in [Class::Anonymous, Class::Tester] {
        for i in 0..opts.requests {
            let mut headers = request_headers(class, i);
            if let (Class::Tester, Some(t)) = (class, &token) {
                match headers.iter_mut().find(|(k, _)| k == "cookie") {
                    Some((_, c)) => c.push_str(&format!("; token={t}")),
                    None => headers.push(("cookie".into(), format!("token={t}"))),
                }
            }
            let url = format!("{base}/?city={}", CITIES[i % CITIES.len()]);
            let http = http.clone();
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let mut req = http.get(url);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                let outcome = match req.send().await {
                    Ok(res) => {
                        let status = res.status();
                        let chain = res
                            .headers()
                            .get("x-weather-chain")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let _ = res.bytes().await;
                        Ok((status.as_u16(), chain))
                    }
                    Err(e) => Err(root_cause(&e)),
                };
                (class, headers, outcome)
            }));
        }
    }
    let mut report = Report::default();
    for t in tasks {
        let (class, headers, outcome) = t.await?;
        let row = report.rows.entry(class).or_default();
        row.sent += 1;
        if let Judge::Stage {
            manifests, mesh, ..
        } = &opts.judge
        {
            for (chain, p) in predict(manifests, mesh, &headers) {
                *row.expected.entry(chain).or_default() += p;
            }
        }
        let key = match outcome {
            Ok((200, Some(chain))) => chain,
            Ok((status, Some(chain))) => format!("{chain} (HTTP {status})"),
            Ok((status, None)) => format!("(no chain, HTTP {status})"),
            Err(e) => format!("(failed: {e})"),
        };
        if is_crossing(&key) {
            report.crossings += 1;
        }
        *row.observed.entry(key).or_default() += 1;
    }
    judge(&opts.judge, &mut report);
    Ok(report)
}

/// Logs in as `tester` through the ingress; the JWT the login set (cookie
/// `token`), if the frontend issues one.
async fn tester_token(http: &reqwest::Client, base: &str) -> Option<String> {
    let res = http
        .post(format!("{base}/login"))
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=tester")
        .send()
        .await
        .ok()?;
    res.headers().get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let t = v.strip_prefix("token=")?.split(';').next()?;
        (!t.is_empty()).then(|| t.to_owned())
    })
}

/// How far an observed share may stray from the expected one: 3 points, or four
/// standard deviations of a binomial sample when that is wider.
fn tolerance(p: f64, n: usize) -> f64 {
    (4.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()).max(0.03)
}

fn judge(j: &Judge, report: &mut Report) {
    let mut problems = Vec::new();
    for (class, row) in &mut report.rows {
        let n = row.sent;
        match j {
            Judge::Promise => {
                let want = match class {
                    Class::Anonymous => "v1",
                    Class::Tester => "v2",
                };
                for (chain, count) in &row.observed {
                    let ok = versions(chain) == (Some(want), Some(want))
                        && !chain.contains("HTTP")
                        && !chain.starts_with('(');
                    if !ok {
                        let what = if is_crossing(chain) {
                            "a crossing"
                        } else {
                            "the wrong chain"
                        };
                        problems.push(format!(
                            "{count} {} request(s) reached {chain}: {what}, not the {want} chain",
                            class.name()
                        ));
                    }
                }
                row.expected = match class {
                    Class::Anonymous => {
                        Prediction::from([("frontend:v1,forecast:v1".to_owned(), n as f64)])
                    }
                    Class::Tester => Prediction::from([(
                        "frontend:v2,forecast:v2,recommendation:v1".to_owned(),
                        n as f64,
                    )]),
                };
            }
            Judge::Stage { name, mesh, .. } => {
                let load_dependent = mesh.load_dependent();
                // Under circuit breakers a call may also end early, at any hop.
                let cut_short = |chain: &str| {
                    load_dependent
                        && row
                            .expected
                            .keys()
                            .any(|e| e.starts_with(chain) && e[chain.len()..].starts_with(','))
                };
                for (chain, count) in &row.observed {
                    if !row.expected.contains_key(chain) && !cut_short(chain) {
                        problems.push(format!("{count} {} request(s) reached {chain}, which stage {name} never routes to", class.name()));
                    }
                }
                if load_dependent {
                    // Circuit breakers: the routes say where requests may go,
                    // the load how many get there.
                    let note = format!(
                        "stage {name} has circuit breakers or outlier detection: which chains are reached is judged, their shares are not (they depend on the load)"
                    );
                    if !report.notes.contains(&note) {
                        report.notes.push(note);
                    }
                    continue;
                }
                for (chain, expected) in &row.expected {
                    let p = expected / n.max(1) as f64;
                    let got = *row.observed.get(chain).unwrap_or(&0) as f64 / n.max(1) as f64;
                    let tol = tolerance(p, n);
                    if (got - p).abs() > tol {
                        problems.push(format!(
                            "{}: {chain} took {:.1}% of requests, the stage predicts {:.1}% (tolerance ±{:.1} points)",
                            class.name(),
                            got * 100.0,
                            p * 100.0,
                            tol * 100.0
                        ));
                    }
                }
            }
        }
    }
    report.problems = problems;
}

impl Report {
    /// The version matrix, for a terminal.
    pub fn render(&self, judged_by: &str) -> String {
        let mut s = String::new();
        let total: usize = self.rows.values().map(|r| r.sent).sum();
        s.push_str(&format!("{total} requests, judged by {judged_by}\n\n"));
        let width = self
            .rows
            .values()
            .flat_map(|r| r.observed.keys().chain(r.expected.keys()))
            .map(|c| c.len())
            .max()
            .unwrap_or(10)
            .max(5);
        s.push_str(&format!(
            "{:<10} {:<width$} {:>6} {:>8} {:>9}\n",
            "traffic", "chain", "count", "share", "expected"
        ));
        for (class, row) in &self.rows {
            let mut chains: Vec<&String> = row.observed.keys().chain(row.expected.keys()).collect();
            chains.sort();
            chains.dedup();
            for chain in chains {
                let count = row.observed.get(chain).copied().unwrap_or(0);
                let share = 100.0 * count as f64 / row.sent.max(1) as f64;
                let expected = row
                    .expected
                    .get(chain)
                    .map(|e| format!("{:.1}%", 100.0 * e / row.sent.max(1) as f64))
                    .unwrap_or_else(|| "0.0%".into());
                let mark = if is_crossing(chain) {
                    "  <- crossing"
                } else {
                    ""
                };
                s.push_str(&format!(
                    "{:<10} {chain:<width$} {count:>6} {share:>7.1}% {expected:>9}{mark}\n",
                    class.name()
                ));
            }
        }
        let intended = if self.crossings > 0
            && self.problems.iter().all(|p| !p.contains("crossing"))
            && judged_by.contains("stage")
        {
            " (the stage routes them there)"
        } else {
            ""
        };
        s.push_str(&format!("\ncrossings: {}{intended}\n", self.crossings));
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        if self.ok() {
            s.push_str("OK: every request went where it should\n");
        } else {
            for p in &self.problems {
                s.push_str(&format!("FAIL: {p}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossings_are_frontend_and_forecast_of_different_versions() {
        assert!(is_crossing("frontend:v1,forecast:v2,recommendation:v1"));
        assert!(is_crossing("frontend:v2,forecast:v1"));
        assert!(!is_crossing("frontend:v2,forecast:v2,recommendation:v1"));
        assert!(!is_crossing("frontend:v1"));
    }

    #[test]
    fn traffic_mixes_cookies_and_browsers() {
        // Every cookie header with every browser, within one round of each.
        let n = TESTER_COOKIES.len() * USER_AGENTS.len();
        let all: Vec<Vec<(String, String)>> =
            (0..n).map(|i| request_headers(Class::Tester, i)).collect();
        assert!(all.iter().all(|h| {
            h.iter()
                .any(|(k, v)| k == "cookie" && v.contains("user=tester"))
        }));
        let pairs: std::collections::HashSet<&[(String, String)]> =
            all.iter().map(|h| h.as_slice()).collect();
        assert_eq!(pairs.len(), n);
        assert!(
            (0..8).any(|i| request_headers(Class::Anonymous, i).len() == 1),
            "one anonymous request has no cookie at all"
        );
    }

    #[test]
    fn tolerance_is_three_points_or_four_sigma() {
        assert_eq!(tolerance(0.5, 10_000), 0.03);
        assert!((tolerance(0.5, 100) - 0.2).abs() < 1e-9);
        assert_eq!(tolerance(1.0, 10), 0.03);
    }
}
