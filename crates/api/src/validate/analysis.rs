//! `spec.analysis`: the schema's oneOf, weights, mirroring, A/B matches and session affinity.
//! Metrics, webhooks and alerts are in their own modules.

use super::canary::{Context, Strategy};
use super::fields;
use super::names;
use super::problems::{Problems, child, index};
use super::providers;
use super::reason;
use super::{metrics, webhooks};
use crate::analysis::{AbMatch, CanaryAnalysis, CanaryAnalysisExtras, SessionAffinity};
use crate::canary::CanarySpec;

const BASE: &str = "spec.analysis";

pub(crate) fn check(p: &mut Problems, spec: &CanarySpec, ctx: &Context) {
    let a = &spec.analysis;
    one_of(p, a);
    let interval = match a.interval.as_deref() {
        None => {
            p.schema(format!("{BASE}.interval"), "required (e.g. 1m)");
            None
        }
        Some(v) => fields::schema_duration(p, &format!("{BASE}.interval"), Some(v)),
    };
    let minimum = ctx.opts.min_interval;
    if let Some(d) = interval
        && d < minimum
    {
        let minimum = crate::duration::format(minimum);
        p.warn(
            reason::IGNORED,
            format!("{BASE}.interval"),
            format!("below the minimum of {minimum}; the controller uses {minimum}"),
        );
    }
    match a.threshold.as_ref() {
        None => p.schema(
            format!("{BASE}.threshold"),
            "required (number of failed checks before rollback)",
        ),
        Some(n) => {
            if let Some(t) = fields::integer(p, &format!("{BASE}.threshold"), n)
                && t < 1
            {
                p.invalid(
                    format!("{BASE}.threshold"),
                    format!("must be at least 1, got {t}"),
                );
            }
        }
    }
    fields::schema_duration(p, &format!("{BASE}.delay"), a.delay.as_deref());
    weights(p, a, ctx);
    for (field, v) in [
        ("primaryReadyThreshold", &a.primary_ready_threshold),
        ("canaryReadyThreshold", &a.canary_ready_threshold),
    ] {
        fields::int_range(p, &format!("{BASE}.{field}"), v.as_ref(), 0, 100);
    }
    mirror(p, a, ctx);
    if let Some(m) = a.match_.as_deref() {
        ab_match(p, m, ctx);
    }
    if let Some(sa) = a.session_affinity.as_ref() {
        session_affinity(p, sa, ctx);
    }
    if let Some(x) = a.canary_analysis.as_ref() {
        extras(p, a, x, ctx);
    }
    metrics::check(p, a, ctx);
    super::judge::check(p, spec);
    webhooks::check(p, a, interval, ctx);
}

/// Exactly one of `iterations`, `stepWeight`, `stepWeights` must be present (schema `oneOf`).
fn one_of(p: &mut Problems, a: &CanaryAnalysis) {
    let set = fields::set_names(&[
        ("iterations", a.iterations.is_some()),
        ("stepWeight", a.step_weight.is_some()),
        ("stepWeights", a.step_weights.is_some()),
    ]);
    match set.as_slice() {
        [] => p.schema(
            BASE,
            "one of iterations (Blue/Green, A/B), stepWeight or stepWeights (canary) is required",
        ),
        [_] => {}
        [first, rest @ ..] => p.schema(
            format!("{BASE}.{first}"),
            format!(
                "{first} cannot be combined with {}: the schema admits exactly one of iterations, stepWeight, stepWeights",
                rest.join(" and ")
            ),
        ),
    }
}

fn weights(p: &mut Problems, a: &CanaryAnalysis, ctx: &Context) {
    let kubernetes = ctx.provider.as_deref() == Some("kubernetes");
    if let Some(n) = a.iterations.as_ref()
        && let Some(i) = fields::integer(p, &format!("{BASE}.iterations"), n)
        && i < 1
    {
        if kubernetes {
            p.warn(
                reason::IGNORED,
                format!("{BASE}.iterations"),
                format!("{i} is treated as 10 with the kubernetes provider"),
            );
        } else if a.step_weight.is_none() && a.step_weights.is_none() {
            p.invalid(
                format!("{BASE}.iterations"),
                format!("must be at least 1, got {i}"),
            );
        }
    }
    let max_weight = fields::int_range(
        p,
        &format!("{BASE}.maxWeight"),
        a.max_weight.as_ref(),
        0,
        100,
    );
    let step = fields::int_range(
        p,
        &format!("{BASE}.stepWeight"),
        a.step_weight.as_ref(),
        0,
        100,
    );
    fields::int_range(
        p,
        &format!("{BASE}.stepWeightPromotion"),
        a.step_weight_promotion.as_ref(),
        0,
        100,
    );
    if kubernetes {
        return;
    }
    if let Some(step) = step {
        let effective_max = max_weight.filter(|m| *m > 0).unwrap_or(100);
        if step == 0 && a.step_weights.is_none() && a.iterations.is_none() {
            p.invalid(
                format!("{BASE}.stepWeight"),
                "must be greater than 0: the canary weight would never increase",
            );
        } else if step > effective_max {
            p.invalid(
                format!("{BASE}.stepWeight"),
                format!("{step} is greater than maxWeight {effective_max}"),
            );
        }
    }
    if let Some(ladder) = a.step_weights.as_deref() {
        let path = format!("{BASE}.stepWeights");
        if ladder.is_empty() && a.step_weight.is_none() {
            p.invalid(path.clone(), "must not be empty");
        }
        let mut previous: Option<i64> = None;
        for (i, n) in ladder.iter().enumerate() {
            let item = index(&path, i);
            let Some(w) = fields::integer(p, &item, n) else {
                continue;
            };
            if !(1..=100).contains(&w) {
                p.invalid(item.clone(), format!("must be between 1 and 100, got {w}"));
            }
            if let Some(prev) = previous
                && w <= prev
            {
                p.invalid(
                    item,
                    format!(
                        "{w} is not greater than the previous step {prev}: weights must increase"
                    ),
                );
            }
            previous = Some(w);
        }
        if a.max_weight.is_some() && a.step_weight.is_none() {
            p.warn(
                reason::IGNORED,
                format!("{BASE}.maxWeight"),
                "ignored when stepWeights is set (the last step is the maximum)",
            );
        }
    }
}

fn mirror(p: &mut Problems, a: &CanaryAnalysis, ctx: &Context) {
    let weight = fields::int_range(
        p,
        &format!("{BASE}.mirrorWeight"),
        a.mirror_weight.as_ref(),
        0,
        100,
    );
    if a.mirror != Some(true) {
        if weight.is_some_and(|w| w > 0) {
            p.warn(
                reason::IGNORED,
                format!("{BASE}.mirrorWeight"),
                "ignored without mirror: true",
            );
        }
        return;
    }
    let path = format!("{BASE}.mirror");
    let Some(provider) = ctx.provider.as_deref() else {
        return;
    };
    let supported = match ctx.strategy {
        Strategy::AbTesting => {
            p.warn(
                reason::MIRROR_UNSUPPORTED,
                path,
                "A/B testing never mirrors traffic; mirror is ignored",
            );
            return;
        }
        Strategy::BlueGreen => providers::mirrors_blue_green(provider),
        Strategy::Canary => providers::mirrors_canary(provider),
    };
    if !supported {
        let strategy = if ctx.strategy == Strategy::BlueGreen {
            "Blue/Green"
        } else {
            "the canary strategy"
        };
        p.warn(
            reason::MIRROR_UNSUPPORTED,
            path,
            format!(
                "the {provider} provider cannot mirror traffic with {strategy}; mirror is ignored"
            ),
        );
    } else if weight.is_some_and(|w| w > 0) && !providers::mirror_percentage(provider) {
        p.warn(
            reason::MIRROR_UNSUPPORTED,
            format!("{BASE}.mirrorWeight"),
            format!("the {provider} provider cannot mirror a percentage of requests; all requests are mirrored"),
        );
    }
}

fn ab_match(p: &mut Problems, matches: &[AbMatch], ctx: &Context) {
    let path = format!("{BASE}.match");
    let provider = ctx.provider.as_deref();
    if !matches.is_empty() {
        match provider {
            Some("kubernetes") => {
                p.warn(
                    reason::IGNORED,
                    path.clone(),
                    "A/B testing is not supported with the kubernetes provider; match is ignored",
                );
            }
            Some(pr) if providers::header_ops(pr).is_none() => {
                p.error(
                    reason::STRATEGY_UNSUPPORTED,
                    path.clone(),
                    format!("the {pr} provider cannot route by header, cookie or query parameter"),
                );
            }
            _ => {}
        }
    }
    let header_ops = provider.and_then(providers::header_ops).unwrap_or(&[]);
    let routable = provider.is_some_and(|pr| providers::header_ops(pr).is_some());
    let mut conditions = 0usize;
    for (i, m) in matches.iter().enumerate() {
        let entry = index(&path, i);
        for (name, h) in m.headers.iter().flatten() {
            conditions += 1;
            let hp = child(&child(&entry, "headers"), name);
            let set = fields::set_names(&[
                ("exact", h.exact.is_some()),
                ("prefix", h.prefix.is_some()),
                ("suffix", h.suffix.is_some()),
                ("regex", h.regex.is_some()),
            ]);
            if set.len() != 1 {
                let has = if set.is_empty() {
                    "none".to_string()
                } else {
                    set.join(", ")
                };
                p.schema(
                    hp.clone(),
                    format!("must set exactly one of exact, prefix, suffix, regex (has {has})"),
                );
            }
            if let Some(r) = h.regex.as_deref() {
                fields::regex(p, &child(&hp, "regex"), r);
            }
            if routable
                && let Some(op) = set.first()
                && !header_ops.contains(op)
            {
                p.error(
                    reason::STRATEGY_UNSUPPORTED,
                    child(&hp, op),
                    format!(
                        "the {} provider cannot match headers by {op} (supported: {})",
                        provider.unwrap_or_default(),
                        header_ops.join(", ")
                    ),
                );
            }
        }
        for (name, q) in m.query_params.iter().flatten() {
            conditions += 1;
            let qp = child(&child(&entry, "queryParams"), name);
            let set = fields::set_names(&[
                ("exact", q.exact.is_some()),
                ("prefix", q.prefix.is_some()),
                ("regex", q.regex.is_some()),
            ]);
            if set.len() > 1 {
                p.schema(
                    qp.clone(),
                    format!(
                        "must set at most one of exact, prefix, regex (has {})",
                        set.join(", ")
                    ),
                );
            }
            if let Some(r) = q.regex.as_deref() {
                fields::regex(p, &child(&qp, "regex"), r);
            }
            if let Some(pr) = provider
                && routable
            {
                let ops = providers::query_ops(pr);
                if ops.is_empty() {
                    p.error(
                        reason::STRATEGY_UNSUPPORTED,
                        qp,
                        format!("the {pr} provider cannot match query parameters"),
                    );
                } else if let Some(op) = set.first()
                    && !ops.contains(op)
                {
                    p.error(
                        reason::STRATEGY_UNSUPPORTED,
                        child(&qp, op),
                        format!("the {pr} provider cannot match query parameters by {op} (supported: {})", ops.join(", ")),
                    );
                }
            }
        }
        if m.source_labels.as_ref().is_some_and(|l| !l.is_empty())
            && let Some(pr) = provider
            && pr != "istio"
        {
            p.warn(
                reason::IGNORED,
                child(&entry, "sourceLabels"),
                format!("used only by istio, not {pr}"),
            );
        }
    }
    if provider == Some("nginx") && conditions > 1 {
        p.error(
            reason::STRATEGY_UNSUPPORTED,
            path,
            format!("the nginx provider can route on one header or one cookie only, {conditions} conditions are set"),
        );
    }
}

fn session_affinity(p: &mut Problems, sa: &SessionAffinity, ctx: &Context) {
    let base = format!("{BASE}.sessionAffinity");
    if sa.cookie_name.is_empty() {
        p.schema(format!("{base}.cookieName"), "required");
    } else if !is_cookie_name(&sa.cookie_name) {
        p.invalid(
            format!("{base}.cookieName"),
            format!("{:?} is not a valid cookie name", sa.cookie_name),
        );
    }
    if let Some(primary) = sa.primary_cookie_name.as_deref() {
        if primary == sa.cookie_name {
            p.error(
                reason::SESSION_AFFINITY_COOKIE,
                format!("{base}.primaryCookieName"),
                "can't use the same cookie name for both primary and cookie name",
            );
        } else if !primary.is_empty() && !is_cookie_name(primary) {
            p.invalid(
                format!("{base}.primaryCookieName"),
                format!("{primary:?} is not a valid cookie name"),
            );
        }
    }
    if let Some(age) = fields::int_range(
        p,
        &format!("{base}.maxAge"),
        sa.max_age.as_ref(),
        0,
        i64::from(i32::MAX),
    ) {
        let _ = age;
    }
    if let Some(v) = sa.same_site.as_deref()
        && !matches!(v, "Strict" | "Lax" | "None")
    {
        p.schema(
            format!("{base}.sameSite"),
            format!("unsupported value {v:?} (Strict, Lax or None)"),
        );
    }
    if let Some(pr) = ctx.provider.as_deref()
        && !providers::session_affinity(pr)
    {
        p.warn(
            reason::IGNORED,
            base,
            format!("session affinity is supported by istio and gatewayapi only, not {pr}"),
        );
    }
}

/// RFC 6265 token.
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// Extensions beyond Flagger: progressive mirroring and canary pod overrides.
fn extras(p: &mut Problems, a: &CanaryAnalysis, x: &CanaryAnalysisExtras, ctx: &Context) {
    let base = format!("{BASE}.canaryAnalysis");
    let in_range = |p: &mut Problems, field: &str, v: Option<i64>, max: i64| {
        if let Some(v) = v
            && !(1..=max).contains(&v)
        {
            let range = if max == i64::MAX {
                "at least 1".to_string()
            } else {
                format!("between 1 and {max}")
            };
            p.invalid(
                format!("{base}.{field}"),
                format!("must be {range}, got {v}"),
            );
        }
    };
    in_range(p, "stepWeightPromotion", x.step_weight_promotion, 100);
    in_range(p, "maxMirrorWeight", x.max_mirror_weight, 100);
    in_range(p, "iterations", x.iterations, i64::MAX);
    if let Some(step) = x.step_weight_promotion.filter(|s| *s > 0) {
        let start = a
            .mirror_weight
            .as_ref()
            .and_then(|n| n.integer())
            .filter(|w| *w > 0)
            .unwrap_or(step);
        if let Some(max) = x.max_mirror_weight
            && (1..=100).contains(&max)
            && max < start
        {
            p.invalid(
                format!("{base}.maxMirrorWeight"),
                format!("{max} is below the starting mirror weight {start}"),
            );
        }
        if a.mirror != Some(true) {
            p.warn(
                reason::MIRROR_UNSUPPORTED,
                format!("{base}.stepWeightPromotion"),
                "progressive mirroring requires analysis.mirror: true",
            );
        } else if let Some(pr) = ctx.provider.as_deref()
            && !providers::mirror_percentage(pr)
        {
            p.warn(
                reason::MIRROR_UNSUPPORTED,
                format!("{base}.stepWeightPromotion"),
                format!("the {pr} provider cannot mirror a percentage of requests; progressive mirroring is ignored"),
            );
        }
    }
    let Some(tv) = x.template_variables.as_ref() else {
        return;
    };
    let tv_path = format!("{base}.templateVariables");
    if !ctx.workload_target {
        p.invalid(
            tv_path.clone(),
            "canary pod overrides need a Deployment or DaemonSet target",
        );
    }
    for (k, v) in tv.node_selector.iter().flatten() {
        let path = child(&format!("{tv_path}.nodeSelector"), k);
        if let Err(e) = names::label_key(k).and_then(|_| names::label_value(v)) {
            p.invalid(path, e);
        }
    }
    for (i, t) in tv.tolerations.iter().flatten().enumerate() {
        let path = index(&format!("{tv_path}.tolerations"), i);
        match t.operator.as_deref() {
            None | Some("Equal") => {}
            Some("Exists") => {
                if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                    p.invalid(
                        child(&path, "value"),
                        "must be empty when operator is Exists",
                    );
                }
            }
            Some(other) => p.schema(
                child(&path, "operator"),
                format!("unsupported value {other:?} (Equal or Exists)"),
            ),
        }
        if let Some(e) = t.effect.as_deref()
            && !matches!(e, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            p.schema(
                child(&path, "effect"),
                format!("unsupported value {e:?} (NoSchedule, PreferNoSchedule or NoExecute)"),
            );
        }
        if t.key.as_deref().unwrap_or("").is_empty() && t.operator.as_deref() != Some("Exists") {
            p.invalid(child(&path, "key"), "required unless operator is Exists");
        }
    }
}
