//! `spec.analysis.metrics[]`.

use std::collections::HashSet;

use super::canary::Context;
use super::fields;
use super::problems::{Problems, child, index};
use super::reason;
use super::template;
use crate::analysis::{CanaryAnalysis, NO_DATA_POLICIES};

/// Names Flagger evaluates itself when a metric has neither `query` nor `templateRef`.
pub const BUILTIN_METRICS: &[&str] = &["request-success-rate", "request-duration"];

pub(crate) fn check(p: &mut Problems, a: &CanaryAnalysis, ctx: &Context) {
    let mut seen = HashSet::new();
    for (i, m) in a.metrics.iter().flatten().enumerate() {
        let path = index("spec.analysis.metrics", i);
        if m.name.is_empty() {
            p.schema(child(&path, "name"), "required");
        } else if !seen.insert(m.name.as_str()) {
            p.invalid(
                child(&path, "name"),
                format!("duplicate metric name {:?}", m.name),
            );
        }
        fields::schema_duration(p, &child(&path, "interval"), m.interval.as_deref());
        if let Some(v) = m.no_data.as_deref() {
            if !NO_DATA_POLICIES.contains(&v) {
                p.schema(
                    child(&path, "noData"),
                    format!("unsupported value {v:?} (fail or hold)"),
                );
            } else if v == "hold" && m.dry_run == Some(true) {
                p.warn(
                    reason::IGNORED,
                    child(&path, "noData"),
                    "ignored with dryRun: true (a dry-run metric never holds the analysis)",
                );
            }
        }
        let query = m.query.as_deref().filter(|q| !q.trim().is_empty());
        let builtin = query.is_none()
            && m.template_ref.is_none()
            && BUILTIN_METRICS.contains(&m.name.as_str());
        if let Some(q) = query
            && let Err(e) = template::check_query_template(q)
        {
            p.invalid(child(&path, "query"), e);
        }
        if let Some(t) = m.template_ref.as_ref() {
            let tp = child(&path, "templateRef");
            if t.name.is_empty() {
                p.schema(child(&tp, "name"), "required");
            }
            fields::namespace_ref(
                p,
                &child(&tp, "namespace"),
                t.namespace.as_deref(),
                ctx.namespace,
                ctx.opts.no_cross_namespace_refs,
            );
        }
        if query.is_none() && m.template_ref.is_none() && !builtin && !m.name.is_empty() {
            p.warn(
                reason::METRIC_UNUSABLE,
                path.clone(),
                format!(
                    "{:?} is not a builtin metric ({}) and has neither query nor templateRef: its check fails at every analysis tick",
                    m.name,
                    BUILTIN_METRICS.join(", ")
                ),
            );
        }
        let min = m
            .threshold_range
            .as_ref()
            .and_then(|r| r.min.as_ref())
            .map(|n| n.as_f64());
        let max = m
            .threshold_range
            .as_ref()
            .and_then(|r| r.max.as_ref())
            .map(|n| n.as_f64());
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            p.invalid(
                child(&path, "thresholdRange"),
                format!("min {lo} is greater than max {hi}: no value can pass"),
            );
        }
        if query.is_none() && m.template_ref.is_none() {
            continue;
        }
        match m.threshold_range.as_ref() {
            Some(_) if min.is_none() && max.is_none() => p.warn(
                reason::NO_THRESHOLD,
                child(&path, "thresholdRange"),
                "sets neither min nor max: every value passes the check",
            ),
            // A judged metric is compared with its baseline; a fixed threshold is optional.
            None if m.threshold.is_none() && m.judge.is_none() => p.warn(
                reason::NO_THRESHOLD,
                path,
                "neither thresholdRange nor threshold is set: the threshold is 0, so any positive value fails the check",
            ),
            _ => {}
        }
    }
}
