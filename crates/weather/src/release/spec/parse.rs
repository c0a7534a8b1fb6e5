//! Reading a `ReleaseTrain` strictly: YAML into the object, every field
//! checked with a message naming it, weights and durations read as Flagger
//! reads them, and the services held against the manifests' Deployments.

use std::time::Duration;

use mesh::Manifests;
use serde_json::Value;

use super::*;

/// Reads and checks a spec's text (`file` names it in messages).
pub fn parse(file: &str, text: &str) -> Result<Train, Error> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| Error::Yaml {
        file: file.to_owned(),
        reason: e.to_string().lines().next().unwrap_or("").to_owned(),
    })?;
    let field = |field: &str, reason: String| Error::Field {
        file: file.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let spec: ReleaseTrain = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        field(&path, e.into_inner().to_string())
    })?;
    if spec.api_version != API_VERSION {
        return Err(field(
            "apiVersion",
            format!("{:?}: expected {API_VERSION}", spec.api_version),
        ));
    }
    if spec.kind != KIND {
        return Err(field("kind", format!("{:?}: expected {KIND}", spec.kind)));
    }
    let s = &spec.spec;
    if s.gateway
        .split_once('/')
        .is_none_or(|(ns, n)| ns.is_empty() || n.is_empty())
    {
        return Err(field(
            "spec.gateway",
            format!("{:?}: expected NAMESPACE/NAME", s.gateway),
        ));
    }
    if s.services.is_empty() {
        return Err(field(
            "spec.services",
            "no service: name at least one".into(),
        ));
    }
    for (i, svc) in s.services.iter().enumerate() {
        let at = |f: &str| format!("spec.services[{i}].{f}");
        for (f, v) in [("name", &svc.name), ("from", &svc.from), ("to", &svc.to)] {
            if v.is_empty() {
                return Err(field(&at(f), "empty".into()));
            }
        }
        if svc.from == svc.to {
            return Err(field(
                &at("to"),
                format!(
                    "{:?} is also `from`: a release moves to another version",
                    svc.to
                ),
            ));
        }
        if s.services[..i].iter().any(|o| o.name == svc.name) {
            return Err(field(
                &at("name"),
                format!("{:?} is listed twice", svc.name),
            ));
        }
    }
    let a = &s.analysis;
    let interval = duration(&a.interval)
        .ok_or_else(|| field("spec.analysis.interval", bad_duration(&a.interval)))?;
    if a.threshold == 0 {
        return Err(field(
            "spec.analysis.threshold",
            "0: at least one failed check must be allowed to count".into(),
        ));
    }
    let weights = weights(a).map_err(|(f, r)| field(&f, r))?;
    let matches = a.match_.clone().unwrap_or_default();
    for (i, m) in matches.iter().enumerate() {
        serde_path_to_error::deserialize::<_, HttpMatch>(m.clone()).map_err(|e| {
            let path = e.path().to_string();
            let f = if path == "." {
                format!("spec.analysis.match[{i}]")
            } else {
                format!("spec.analysis.match[{i}].{path}")
            };
            field(&f, e.into_inner().to_string())
        })?;
    }
    let iterations = match (a.iterations, matches.is_empty()) {
        (Some(0), false) | (None, false) => {
            return Err(field(
                "spec.analysis.iterations",
                "the A/B phase (`match`) needs at least one iteration".into(),
            ));
        }
        (Some(n), false) => n,
        (Some(_), true) => {
            return Err(field(
                "spec.analysis.iterations",
                "iterations count the A/B phase: give its `match` too".into(),
            ));
        }
        (None, true) => 0,
    };
    if matches.is_empty() && weights.is_empty() {
        return Err(field(
            "spec.analysis",
            "neither an A/B phase (`match` and `iterations`) nor weighted steps (`stepWeights`, or `stepWeight` and `maxWeight`)".into(),
        ));
    }
    for (i, m) in a.metrics.iter().enumerate() {
        let at = |f: &str| format!("spec.analysis.metrics[{i}].{f}");
        let builtin = matches!(m.name.as_str(), "request-success-rate" | "request-duration");
        if !builtin && m.query.is_none() {
            return Err(field(
                &at("name"),
                format!(
                    "{:?} is not a built-in metric (request-success-rate, request-duration): give its `query`",
                    m.name
                ),
            ));
        }
        match &m.threshold_range {
            None
            | Some(ThresholdRange {
                min: None,
                max: None,
            }) => {
                return Err(field(
                    &at("thresholdRange"),
                    "give `min`, `max` or both".into(),
                ));
            }
            Some(ThresholdRange {
                min: Some(lo),
                max: Some(hi),
            }) if lo > hi => {
                return Err(field(
                    &at("thresholdRange"),
                    format!("min {lo} is above max {hi}"),
                ));
            }
            _ => {}
        }
        if let Some(iv) = &m.interval
            && duration(iv).is_none()
        {
            return Err(field(&at("interval"), bad_duration(iv)));
        }
    }
    for (i, w) in a.webhooks.iter().enumerate() {
        let at = |f: &str| format!("spec.analysis.webhooks[{i}].{f}");
        if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
            return Err(field(
                &at("url"),
                format!("{:?}: expected an http:// or https:// URL", w.url),
            ));
        }
        if let Some(t) = &w.timeout
            && duration(t).is_none()
        {
            return Err(field(&at("timeout"), bad_duration(t)));
        }
    }
    Ok(Train {
        spec,
        interval,
        weights,
        matches,
        iterations,
    })
}

/// The weighted steps: `stepWeights`, or `stepWeight` up to `maxWeight` (as
/// Flagger counts them). Every weight 1..=100, rising.
fn weights(a: &Analysis) -> Result<Vec<u32>, (String, String)> {
    let list = match (&a.step_weights, a.step_weight, a.max_weight) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err((
                "spec.analysis.stepWeights".into(),
                "give either stepWeights or stepWeight and maxWeight, not both".into(),
            ));
        }
        (Some(list), None, None) => {
            for (i, w) in list.iter().enumerate() {
                if !(1..=100).contains(w) {
                    return Err((
                        format!("spec.analysis.stepWeights[{i}]"),
                        format!("{w}: a weight is from 1 to 100"),
                    ));
                }
                if i > 0 && *w <= list[i - 1] {
                    return Err((
                        format!("spec.analysis.stepWeights[{i}]"),
                        format!("{w} is not above the step before ({})", list[i - 1]),
                    ));
                }
            }
            list.clone()
        }
        (None, Some(step), max) => {
            let max = max.unwrap_or(50);
            if !(1..=100).contains(&step) {
                return Err((
                    "spec.analysis.stepWeight".into(),
                    format!("{step}: a weight is from 1 to 100"),
                ));
            }
            if !(step..=100).contains(&max) {
                return Err((
                    "spec.analysis.maxWeight".into(),
                    format!("{max}: from stepWeight ({step}) to 100"),
                ));
            }
            (1..).map(|i| i * step).take_while(|w| *w <= max).collect()
        }
        (None, None, Some(_)) => {
            return Err((
                "spec.analysis.maxWeight".into(),
                "maxWeight needs stepWeight".into(),
            ));
        }
        (None, None, None) => Vec::new(),
    };
    Ok(list)
}

fn bad_duration(s: &str) -> String {
    format!("{s:?} is not a duration: expected e.g. 500ms, 30s, 1m or 1m30s")
}

/// A Go duration of hours, minutes, seconds and milliseconds: `1m30s`,
/// `500ms`; above zero.
pub fn duration(s: &str) -> Option<Duration> {
    mesh::duration::parse_go_duration(s.trim()).filter(|d| !d.is_zero())
}

/// Checks the train against the manifests it will be applied over: every
/// service of it a Service of the namespace, with a Deployment and a
/// DestinationRule subset for both versions, and the gateway present.
pub fn check_against(train: &Train, m: &Manifests, file: &str) -> Result<(), Error> {
    let field = |field: String, reason: String| Error::Field {
        file: file.to_owned(),
        field,
        reason,
    };
    let ns = train.namespace();
    let (gw_ns, gw_name) = train.spec.spec.gateway.split_once('/').unwrap_or(("", ""));
    // An Istio Gateway (VirtualServices), or a Gateway API one (HTTPRoutes,
    // a Service per version).
    let gateway_api = m
        .kube_gateways
        .iter()
        .any(|g| g.metadata.ns() == gw_ns && g.metadata.name == gw_name);
    if !gateway_api
        && !m
            .gateways
            .iter()
            .any(|g| g.metadata.ns() == gw_ns && g.metadata.name == gw_name)
    {
        return Err(field(
            "spec.gateway".into(),
            format!("no Gateway {gw_ns}/{gw_name} in the manifests"),
        ));
    }
    for (i, s) in train.services().iter().enumerate() {
        if !m
            .services
            .iter()
            .any(|x| x.metadata.ns() == ns && x.metadata.name == s.name)
        {
            return Err(field(
                format!("spec.services[{i}].name"),
                format!("no Service {ns}/{} in the manifests", s.name),
            ));
        }
        for (f, version) in [("from", &s.from), ("to", &s.to)] {
            if deployment(m, ns, &s.name, version).is_none() {
                return Err(field(
                    format!("spec.services[{i}].{f}"),
                    format!(
                        "no Deployment in {ns} runs {} {version} (pod labels app={}, version={version})",
                        s.name, s.name
                    ),
                ));
            }
            if gateway_api {
                let svc = crate::release::routes::version_service(&s.name, version);
                if !m
                    .services
                    .iter()
                    .any(|x| x.metadata.ns() == ns && x.metadata.name == svc)
                {
                    return Err(field(
                        format!("spec.services[{i}].{f}"),
                        format!(
                            "no Service {ns}/{svc} (the Service of {} {version}, which the HTTPRoutes name)",
                            s.name
                        ),
                    ));
                }
                continue;
            }
            let subset = m.destination_rules.iter().any(|d| {
                d.metadata.ns() == ns
                    && mesh::hosts::resolve(&d.spec.host, ns) == mesh::hosts::resolve(&s.name, ns)
                    && d.spec.subsets.iter().any(|x| x.name == *version)
            });
            if !subset {
                return Err(field(
                    format!("spec.services[{i}].{f}"),
                    format!(
                        "no DestinationRule in {ns} defines subset {version} of {}",
                        s.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The Deployment running `app` at `version` in `ns`.
pub fn deployment<'a>(m: &'a Manifests, ns: &str, app: &str, version: &str) -> Option<&'a str> {
    m.deployments
        .iter()
        .find(|d| {
            let l = &d.spec.template.metadata.labels;
            d.metadata.ns() == ns
                && l.get("app").is_some_and(|a| a == app)
                && l.get("version").is_some_and(|v| v == version)
        })
        .map(|d| d.metadata.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "30", "s", "1d", "0s", "-1s"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn step_weight_counts_up_to_max_weight_as_flagger_does() {
        let a: Analysis = serde_json::from_value(serde_json::json!({
            "interval": "1m", "threshold": 1, "stepWeight": 20, "maxWeight": 50
        }))
        .unwrap();
        assert_eq!(weights(&a).unwrap(), [20, 40]);
    }
}
