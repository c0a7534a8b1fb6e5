//! What a train reports: each step with its checks, and how the run ended;
//! the final table `weather release` prints.

use serde::Serialize;

use super::plan::Phase;

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Promoted,
    RolledBack,
    /// Stopped by Ctrl-C: the routing is left as the last step applied it.
    Interrupted,
}

/// One gate's value against its range.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub target: String,
    pub value: Option<f64>,
    pub range: String,
    pub ok: bool,
}

/// One step as it went.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    #[serde(flatten)]
    pub phase: Phase,
    pub old_weight: u32,
    pub new_weight: u32,
    pub checks: Vec<Check>,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub train: String,
    pub outcome: Outcome,
    pub failed_checks: u32,
    pub steps: Vec<StepReport>,
    /// Requests the load generator sent.
    pub requests_sent: u64,
    /// Why the train stopped, in a sentence.
    pub summary: String,
}

impl Report {
    /// The final table, one line per step.
    pub fn render(&self) -> String {
        let mut out = format!("\nRelease train {}: {}\n\n", self.train, self.summary);
        out.push_str(&format!(
            "{:<18} {:>7}  {}\n",
            "step", "old/new", "checks (FAIL marks a failed one)"
        ));
        for s in &self.steps {
            let checks = s
                .checks
                .iter()
                .map(|c| {
                    let v = fmt_value(c.value);
                    let shown = match c.name.as_str() {
                        "request-success-rate" => format!("{} {v}%", c.target),
                        "request-duration" => format!("p99 {v} ms"),
                        "crossings" => format!("crossings {v}"),
                        "requests on the versions left behind" => {
                            format!("{v} on the versions left behind ({})", c.target)
                        }
                        other => format!("{other} {} {v}", c.target),
                    };
                    if c.ok { shown } else { format!("FAIL {shown}") }
                })
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "{:<18} {:>3}/{:<3}  {checks}\n",
                s.phase.to_string(),
                s.old_weight,
                s.new_weight
            ));
        }
        out.push_str(&format!(
            "\nfailed checks: {}; load sent: {} requests\n",
            self.failed_checks, self.requests_sent
        ));
        out
    }
}

pub(super) fn fmt_value(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "no data".into(),
    }
}
