//! The `ReleaseTrain` object (docs/architecture.md, "The release train"): the
//! services of the train in call order with their versions, and an analysis
//! with Flagger's Canary field names and meanings. Loaded strictly: an unknown
//! field or a bad value is an error naming the field, before anything is
//! applied.

use std::{collections::BTreeMap, time::Duration};

use mesh::model::HttpMatch;
use serde::Deserialize;
use serde_json::Value;

pub const API_VERSION: &str = "weather.example/v1alpha1";
pub const KIND: &str = "ReleaseTrain";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseTrain {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: TrainSpec,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrainSpec {
    /// The Gateway the first service is reached through: `NAMESPACE/NAME`.
    pub gateway: String,
    /// In call order: the first is reached through the gateway, each next one
    /// is called by the one before.
    pub services: Vec<TrainService>,
    pub analysis: Analysis,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrainService {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// Flagger's `spec.analysis`, with its field names and meanings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Analysis {
    /// How long each step lasts before its checks (a Go duration: `30s`, `1m`).
    pub interval: String,
    /// Failed checks before the train is rolled back.
    pub threshold: u32,
    /// Intervals of the A/B phase (requests that satisfy `match`).
    pub iterations: Option<u32>,
    /// The A/B phase's requests: Istio HTTPMatchRequests, checked strictly.
    #[serde(rename = "match")]
    pub match_: Option<Vec<Value>>,
    pub step_weight: Option<u32>,
    pub max_weight: Option<u32>,
    pub step_weights: Option<Vec<u32>>,
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricSpec {
    /// `request-success-rate`, `request-duration`, or any name with a `query`.
    pub name: String,
    pub threshold_range: Option<ThresholdRange>,
    /// The window the metric is computed over (default: the analysis interval).
    pub interval: Option<String>,
    /// Custom PromQL; `{{ namespace }}`, `{{ target }}` and `{{ interval }}` are
    /// filled in per service of the train, as Flagger fills its templates.
    pub query: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRange {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl ThresholdRange {
    pub fn holds(&self, v: f64) -> bool {
        v.is_finite() && self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

impl std::fmt::Display for ThresholdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(a), Some(b)) => write!(f, "{a}..{b}"),
            (Some(a), None) => write!(f, ">= {a}"),
            (None, Some(b)) => write!(f, "<= {b}"),
            (None, None) => write!(f, "any"),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: WebhookType,
    pub url: String,
    pub timeout: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Flagger's webhook types that a train calls.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookType {
    PreRollout,
    Rollout,
    ConfirmPromotion,
    PostRollout,
    Rollback,
}

impl WebhookType {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookType::PreRollout => "pre-rollout",
            WebhookType::Rollout => "rollout",
            WebhookType::ConfirmPromotion => "confirm-promotion",
            WebhookType::PostRollout => "post-rollout",
            WebhookType::Rollback => "rollback",
        }
    }
}

/// A spec that cannot be run, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: not valid YAML: {reason}")]
    Yaml { file: String, reason: String },
    #[error("{file}: {field}: {reason}")]
    Field {
        file: String,
        field: String,
        reason: String,
    },
}

/// A checked train: the spec and what was derived from it.
#[derive(Clone, Debug)]
pub struct Train {
    pub spec: ReleaseTrain,
    pub interval: Duration,
    /// The weighted steps, in order (empty: A/B phase only).
    pub weights: Vec<u32>,
    /// The A/B phase's matches, checked as Istio reads them.
    pub matches: Vec<Value>,
    pub iterations: u32,
}

impl Train {
    pub fn name(&self) -> &str {
        &self.spec.metadata.name
    }

    pub fn namespace(&self) -> &str {
        &self.spec.metadata.namespace
    }

    pub fn services(&self) -> &[TrainService] {
        &self.spec.spec.services
    }

    pub fn analysis(&self) -> &Analysis {
        &self.spec.spec.analysis
    }

    pub fn webhooks(&self, kind: WebhookType) -> impl Iterator<Item = &Webhook> {
        self.analysis()
            .webhooks
            .iter()
            .filter(move |w| w.kind == kind)
    }
}

mod parse;

pub use parse::{check_against, deployment, duration, parse};
