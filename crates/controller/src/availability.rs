//! Whether each metric provider a canary's checks use answers, asked on every initialising tick
//! as Flagger does, so a wrong Prometheus address or an expired API key shows up as an event
//! before the first analysis rather than as failed checks during it. Reported only: an unreachable
//! provider does not stop initialisation, because it may well be up by the time analysis starts.

use std::collections::BTreeSet;

use flagger_api::Canary;
use flagger_providers::metrics::MetricProvider;
use flagger_providers::metrics::check::{Entry, classify};
use kube::ResourceExt;

use crate::checks::{metrics_server, resolve_template};
use crate::context::Context;

/// Every distinct provider of the canary's metrics asked once; `Err` lists the ones that did not
/// answer, each naming where it was asked.
pub async fn providers_online(ctx: &Context, canary: &Canary) -> Result<(), String> {
    let namespace = canary.namespace().unwrap_or_default();
    let mut asked = BTreeSet::new();
    let mut problems = Vec::new();
    for metric in canary.spec.analysis.metrics.iter().flatten() {
        match (&metric.template_ref, classify(metric)) {
            (Some(template_ref), Entry::Template(_)) => {
                let ns = template_ref.namespace.as_deref().unwrap_or(&namespace);
                if !asked.insert(format!("template/{ns}/{}", template_ref.name)) {
                    continue;
                }
                match resolve_template(ctx, &namespace, template_ref).await {
                    Ok((template, provider, secrets)) => {
                        if let Err(e) = provider.is_online().await {
                            let said = crate::redact::redact(
                                &e.to_string(),
                                secrets.iter().map(String::as_str),
                            );
                            let at = template
                                .spec
                                .provider
                                .address
                                .as_deref()
                                .map(|a| format!(" at {a}"))
                                .unwrap_or_default();
                            problems.push(format!(
                                "MetricTemplate {}.{ns} provider {}{at} is not available: {said}",
                                template.name_any(),
                                template.spec.provider.type_
                            ));
                        }
                    }
                    Err(why) => problems.push(why),
                }
            }
            _ => {
                let server = metrics_server(ctx, canary);
                if !asked.insert(format!("prometheus/{server}")) {
                    continue;
                }
                let online = match ctx.prometheus(server) {
                    Ok(prometheus) => prometheus.is_online().await.map_err(|e| e.to_string()),
                    Err(why) => Err(why),
                };
                if let Err(why) = online {
                    problems.push(format!("prometheus {server} is not available: {why}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
