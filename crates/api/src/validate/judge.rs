//! `spec.analysis.judge` and `spec.analysis.metrics[].judge`: the statistical judge's settings.

use super::problems::{Problems, child, index};
use super::reason;
use crate::analysis::{CanaryAnalysis, CanaryMetric};
use crate::canary::CanarySpec;
use crate::judge::{AnalysisJudge, CORRECTIONS, CRITICALITIES, DIRECTIONS};

const BASE: &str = "spec.analysis.judge";

pub(crate) fn check(p: &mut Problems, spec: &CanarySpec) {
    let a = &spec.analysis;
    if let Some(judge) = a.judge.as_ref() {
        settings(p, judge, &spec.target_ref.name);
        if !a.metrics.iter().flatten().any(|m| m.judge.is_some()) {
            p.warn(
                reason::IGNORED,
                BASE,
                "no metric has a judge block: the judge has nothing to compare",
            );
        }
    }
    metrics(p, a);
}

fn settings(p: &mut Problems, j: &AnalysisJudge, target: &str) {
    if let Some(c) = j.confidence
        && !(c > 0.5 && c < 1.0)
    {
        p.invalid(
            child(BASE, "confidence"),
            format!("must be between 0.5 and 1 (exclusive), got {c}"),
        );
    }
    if let Some(t) = j.tolerance
        && !(t.is_finite() && t >= 0.0)
    {
        p.invalid(
            child(BASE, "tolerance"),
            format!("must be a fraction of at least 0 (0.1 = 10 %), got {t}"),
        );
    }
    if j.min_samples == Some(0) {
        p.schema(child(BASE, "minSamples"), "must be at least 1, got 0");
    }
    let pass = j.pass_score.unwrap_or(95.0);
    let marginal = j.marginal_score.unwrap_or(75.0);
    if !(0.0 <= marginal && marginal <= pass && pass <= 100.0) {
        p.invalid(
            BASE,
            format!(
                "scores must satisfy 0 <= marginalScore <= passScore <= 100, got marginalScore {marginal} and passScore {pass}"
            ),
        );
    }
    if let Some(c) = j.correction.as_deref()
        && !CORRECTIONS.contains(&c)
    {
        p.schema(
            child(BASE, "correction"),
            format!("unsupported value {c:?} ({})", CORRECTIONS.join(" or ")),
        );
    }
    match j.baseline.as_deref() {
        Some("") => p.invalid(child(BASE, "baseline"), "must name a workload"),
        Some(b) if b == target => p.invalid(
            child(BASE, "baseline"),
            format!("{b:?} is the canary itself: the judge would compare it with itself"),
        ),
        _ => {}
    }
}

fn metrics(p: &mut Problems, a: &CanaryAnalysis) {
    for (i, m) in a.metrics.iter().flatten().enumerate() {
        let Some(j) = m.judge.as_ref() else { continue };
        let path = child(&index("spec.analysis.metrics", i), "judge");
        if a.judge.is_none() {
            p.invalid(
                path.clone(),
                "needs spec.analysis.judge (which turns the judge on)",
            );
        }
        if m.template_ref.is_none() {
            p.invalid(
                path.clone(),
                "the judge runs the metric's MetricTemplate for the canary and the baseline: templateRef is required",
            );
        }
        for (field, value, allowed) in [
            ("direction", j.direction.as_deref(), DIRECTIONS),
            ("criticality", j.criticality.as_deref(), CRITICALITIES),
        ] {
            if let Some(v) = value
                && !allowed.contains(&v)
            {
                p.schema(
                    child(&path, field),
                    format!("unsupported value {v:?} ({})", allowed.join(", ")),
                );
            }
        }
        if let Some(w) = j.weight
            && !(w.is_finite() && w >= 0.0)
        {
            p.invalid(
                child(&path, "weight"),
                format!("must be a number of at least 0, got {w}"),
            );
        }
        if let Some(total) = j.total_template_ref.as_ref() {
            if total.name.is_empty() {
                p.invalid(
                    child(&child(&path, "totalTemplateRef"), "name"),
                    "must name the MetricTemplate whose query returns the request count",
                );
            } else if m.template_ref.as_ref() == Some(total) {
                p.invalid(
                    child(&path, "totalTemplateRef"),
                    format!(
                        "is the metric's own templateRef {:?}: the errors and the requests would be the same count",
                        total.name
                    ),
                );
            }
            count_window(p, a, m, &path);
        }
    }
}

/// The judge adds up each tick's counts: windows longer than a tick overlap and count requests
/// more than once (claiming more evidence than there is), shorter ones miss some. Flagger's
/// default for both intervals is one minute.
fn count_window(p: &mut Problems, a: &CanaryAnalysis, m: &CanaryMetric, path: &str) {
    let parse = |v: Option<&str>| crate::goflag::duration(v.unwrap_or("1m")).ok();
    let (Some(window), Some(tick)) = (parse(m.interval.as_deref()), parse(a.interval.as_deref()))
    else {
        return;
    };
    if window != tick {
        p.warn(
            reason::COUNT_WINDOW,
            child(path, "totalTemplateRef"),
            format!(
                "the metric's interval ({window:?}) is not the analysis interval ({tick:?}): the judge adds up every tick's errors and requests, so each should count one tick"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::{Options, canary};
    use serde_json::json;

    fn problems(analysis_judge: serde_json::Value, metric: serde_json::Value) -> Vec<String> {
        let mut analysis = json!({
            "interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50,
            "metrics": [metric],
        });
        if !analysis_judge.is_null() {
            analysis["judge"] = analysis_judge;
        }
        let c: crate::Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80},
                "analysis": analysis,
            },
        }))
        .unwrap();
        canary(&c, &Options::default())
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    fn latency(judge: serde_json::Value) -> serde_json::Value {
        json!({"name": "latency", "templateRef": {"name": "latency"}, "judge": judge})
    }

    #[test]
    fn a_judged_template_metric_is_accepted_without_a_threshold() {
        let out = problems(json!({}), latency(json!({"direction": "increase"})));
        let about_analysis: Vec<&String> = out
            .iter()
            .filter(|p| p.starts_with("spec.analysis"))
            .collect();
        assert!(about_analysis.is_empty(), "{out:#?}");
    }

    #[test]
    fn bad_values_are_named_with_what_is_allowed() {
        let out = problems(
            json!({"confidence": 1.0, "tolerance": -1, "passScore": 50, "marginalScore": 80,
                   "correction": "holm", "baseline": "podinfo", "minSamples": 0}),
            latency(json!({"direction": "up", "criticality": "high", "weight": -2})),
        );
        let text = out.join("\n");
        for want in [
            "spec.analysis.judge.confidence: must be between 0.5 and 1 (exclusive), got 1",
            "spec.analysis.judge.tolerance: must be a fraction of at least 0",
            "marginalScore 80 and passScore 50",
            "spec.analysis.judge.correction: unsupported value \"holm\" (bonferroni or none)",
            "spec.analysis.judge.baseline: \"podinfo\" is the canary itself",
            "spec.analysis.judge.minSamples: must be at least 1",
            "spec.analysis.metrics[0].judge.direction: unsupported value \"up\" (increase, decrease, either)",
            "spec.analysis.metrics[0].judge.criticality: unsupported value \"high\" (normal, critical, reportOnly)",
            "spec.analysis.metrics[0].judge.weight: must be a number of at least 0, got -2",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn a_counts_metric_needs_a_distinct_total_template() {
        let errors = |total: serde_json::Value| {
            json!({"name": "errors", "templateRef": {"name": "errors"},
                   "judge": {"totalTemplateRef": total}})
        };
        let ok = problems(json!({}), errors(json!({"name": "requests"})));
        let mut overlapping = errors(json!({"name": "requests"}));
        overlapping["interval"] = json!("5m");
        let overlap = problems(json!({}), overlapping).join("\n");
        assert!(
            overlap.contains("spec.analysis.metrics[0].judge.totalTemplateRef: the metric's interval (300s) is not the analysis interval (60s)"),
            "{overlap}"
        );
        assert!(
            !ok.iter().any(|p| p.starts_with("spec.analysis")),
            "{ok:#?}"
        );
        let text = [
            problems(json!({}), errors(json!({"name": ""}))),
            problems(json!({}), errors(json!({"name": "errors"}))),
        ]
        .concat()
        .join("\n");
        for want in [
            "spec.analysis.metrics[0].judge.totalTemplateRef.name: must name the MetricTemplate whose query returns the request count",
            "spec.analysis.metrics[0].judge.totalTemplateRef: is the metric's own templateRef \"errors\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn a_metric_judge_needs_the_analysis_judge_and_a_template() {
        let text = problems(
            serde_json::Value::Null,
            json!({"name": "request-duration", "judge": {}}),
        )
        .join("\n");
        assert!(text.contains("needs spec.analysis.judge"), "{text}");
        assert!(text.contains("templateRef is required"), "{text}");
    }
}
