//! `spec.analysis.webhooks[]` and `spec.analysis.alerts[]`.

use std::collections::HashSet;
use std::time::Duration;

use super::canary::Context;
use super::fields;
use super::problems::{Problems, child, index};
use super::reason;
use crate::analysis::{CanaryAnalysis, HookType, WEBHOOK_TYPES};

/// Flagger's per-attempt timeout when `timeout` is absent (or shorter than two characters).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn check(
    p: &mut Problems,
    a: &CanaryAnalysis,
    interval: Option<Duration>,
    ctx: &Context,
) {
    let mut seen = HashSet::new();
    let mut per_tick = Duration::ZERO;
    let mut per_tick_hooks = 0usize;
    for (i, w) in a.webhooks.iter().flatten().enumerate() {
        let path = index("spec.analysis.webhooks", i);
        if w.name.is_empty() {
            p.schema(child(&path, "name"), "required");
        } else if !seen.insert(w.name.as_str()) {
            p.invalid(
                child(&path, "name"),
                format!("duplicate webhook name {:?}", w.name),
            );
        }
        let hook = w.hook_type();
        if hook.is_none() {
            let known: Vec<&str> = WEBHOOK_TYPES
                .iter()
                .filter(|t| !t.is_empty())
                .copied()
                .collect();
            p.schema(
                child(&path, "type"),
                format!(
                    "unknown webhook type {:?} (one of {})",
                    w.type_.as_deref().unwrap_or_default(),
                    known.join(", ")
                ),
            );
        }
        if let Err(e) = fields::http_url(&w.url) {
            p.schema(child(&path, "url"), e);
        }
        if let Some(secret) = &w.bearer_token_secret_ref {
            let secret_path = child(&path, "bearerTokenSecretRef");
            if secret.name.is_empty() {
                p.schema(child(&secret_path, "name"), "required");
            }
            if secret.key.is_empty() {
                p.schema(child(&secret_path, "key"), "required");
            }
        }
        let timeout = match w.timeout.as_deref() {
            Some(t) if t.len() >= 2 => {
                fields::schema_duration(p, &child(&path, "timeout"), Some(t))
            }
            Some(t) => {
                if !t.is_empty() {
                    fields::schema_duration(p, &child(&path, "timeout"), Some(t));
                }
                Some(DEFAULT_TIMEOUT)
            }
            None => Some(DEFAULT_TIMEOUT),
        };
        let retries = w.retries.as_ref().and_then(|n| {
            let r = fields::integer(p, &child(&path, "retries"), n)?;
            if r < 0 {
                p.invalid(
                    child(&path, "retries"),
                    format!("must not be negative, got {r}"),
                );
                return None;
            }
            Some(r)
        });
        if matches!(hook, Some(HookType::Rollout)) {
            let attempts =
                u32::try_from(retries.unwrap_or(0).saturating_add(1)).unwrap_or(u32::MAX);
            per_tick = per_tick
                .saturating_add(timeout.unwrap_or(DEFAULT_TIMEOUT).saturating_mul(attempts));
            per_tick_hooks += 1;
        }
    }
    if let Some(interval) = interval
        && per_tick_hooks > 0
        && per_tick > interval
    {
        p.warn(
            reason::WEBHOOK_TIMEOUTS,
            "spec.analysis.webhooks",
            format!(
                "the rollout hooks of one tick may take up to {}s, longer than the interval of {}s",
                per_tick.as_secs(),
                interval.as_secs()
            ),
        );
    }
    alerts(p, a, ctx);
}

fn alerts(p: &mut Problems, a: &CanaryAnalysis, ctx: &Context) {
    let mut seen = HashSet::new();
    for (i, alert) in a.alerts.iter().flatten().enumerate() {
        let path = index("spec.analysis.alerts", i);
        if alert.name.is_empty() {
            p.schema(child(&path, "name"), "required");
        } else if !seen.insert(alert.name.as_str()) {
            p.invalid(
                child(&path, "name"),
                format!("duplicate alert name {:?}", alert.name),
            );
        }
        if let Some(s) = alert.severity.as_deref()
            && !matches!(s, "" | "info" | "warn" | "error")
        {
            p.schema(
                child(&path, "severity"),
                format!("unknown severity {s:?} (info, warn or error)"),
            );
        }
        let pr = child(&path, "providerRef");
        if alert.provider_ref.name.is_empty() {
            p.schema(child(&pr, "name"), "required");
        }
        fields::namespace_ref(
            p,
            &child(&pr, "namespace"),
            alert.provider_ref.namespace.as_deref(),
            ctx.namespace,
            ctx.opts.no_cross_namespace_refs,
        );
    }
}
