//! Delivering the core's alerts: to the canary's AlertProviders filtered by severity, or to the
//! global notifier of the flags when the canary names none. A failed
//! delivery is a Warning event and a log line; it never affects the run.
//!
//! Deliveries share the limits of webhooks and metric queries (see `outbound`): a rollback of
//! thousands of canaries at once must not open thousands of connections to one chat service,
//! which would rate-limit or drop most of them.

use flagger_api::{AlertProvider, Canary, CanaryStatus};
use flagger_core::{Alert as CoreAlert, EventType};
use flagger_providers::notify::{
    self, DeliveryOptions, GlobalFlags, ProviderNotifier, ResolveError, Route, resolve_global,
};
use flagger_providers::wording::kube_error;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::context::Context;
use crate::flags::Flags;
use crate::fulfil;
use crate::redact::redact;

/// The notifier for canaries without `analysis.alerts`, from `-slack-*` / `-msteams-*`.
pub fn global_notifier(flags: &Flags) -> Result<Option<ProviderNotifier>, String> {
    let global = GlobalFlags {
        slack_url: flags.slack_url.clone(),
        slack_token: flags.slack_token.clone(),
        slack_proxy_url: flags.slack_proxy_url.clone(),
        slack_user: flags.slack_user.clone(),
        slack_channel: flags.slack_channel.clone(),
        msteams_url: flags.msteams_url.clone(),
        msteams_proxy_url: flags.msteams_proxy_url.clone(),
    };
    let Some(resolved) = resolve_global(&global).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    ProviderNotifier::new(&resolved, DeliveryOptions::default())
        .map(Some)
        .map_err(|e| e.to_string())
}

pub async fn deliver(
    ctx: &Context,
    canary: &Canary,
    status: &CanaryStatus,
    alert: &CoreAlert,
    progress_deadline_seconds: u32,
) {
    let name = canary.name_any();
    let namespace = canary.namespace().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let mut message = notify::Alert::from_core(
        &name,
        &namespace,
        phase,
        alert,
        Some(progress_deadline_seconds),
    );
    let target = &canary.spec.target_ref;
    message.target = format!("{}/{}.{namespace}", target.kind, target.name);
    message.checksum = fulfil::checksum(status);
    let count = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    message.canary_weight = count(status.canary_weight);
    message.failed_checks = count(status.failed_checks);
    message.iterations = count(status.iterations);
    message.checks = status
        .canary_analysis
        .as_ref()
        .and_then(|a| a.iterations.as_ref())
        .map(|records| records.iter().map(notify::CheckLine::from).collect())
        .unwrap_or_default();
    // Template metadata: built-ins overlaid by the Canary's labels.
    message
        .metadata
        .insert("target".into(), target.name.clone());
    message
        .metadata
        .insert("revision".into(), message.checksum.clone());
    if !ctx.flags.cluster_name.is_empty() {
        message
            .metadata
            .insert("cluster".into(), ctx.flags.cluster_name.clone());
    }
    message.metadata.extend(canary.labels().clone());
    if !ctx.flags.cluster_name.is_empty() {
        message = message.with_cluster(&ctx.flags.cluster_name);
    }
    match notify::route(canary.spec.analysis.alerts.as_deref(), message.severity) {
        Route::Global => {
            if let Some(global) = &ctx.global_notifier {
                // The global notifier's URLs carry their tokens in the path.
                let secrets = [ctx.flags.slack_url.clone(), ctx.flags.msteams_url.clone()];
                let delivery = send(ctx, global, &message).await;
                report(ctx, canary, "global notifier", delivery, &secrets).await;
            }
        }
        Route::Providers(entries) => {
            for entry in entries {
                let provider_ns = entry
                    .provider_ref
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone());
                let id = format!("{}.{provider_ns}", entry.provider_ref.name);
                match notifier_for(ctx, &entry.provider_ref.name, &provider_ns).await {
                    Ok(Some((notifier, secrets))) => {
                        let delivery = send(ctx, &notifier, &message).await;
                        report(ctx, canary, &id, delivery, &secrets).await
                    }
                    Ok(None) => {}
                    Err(why) => {
                        let text = format!(
                            "Alert provider {id} unusable, alert {} skipped: {why}",
                            entry.name
                        );
                        ctx.recorder.record(canary, EventType::Warning, &text).await;
                    }
                }
            }
        }
    }
}

/// One delivery, once the notifier's host and the controller as a whole have room for it.
async fn send(
    ctx: &Context,
    notifier: &ProviderNotifier,
    message: &notify::Alert,
) -> notify::Delivery {
    ctx.outbound
        .run(&backend(notifier), notifier.notify(message))
        .await
}

/// The host a notifier posts to, without the path (Slack and Teams webhook paths are tokens).
fn backend(notifier: &ProviderNotifier) -> String {
    notifier
        .address()
        .map(|url| crate::outbound::backend_of(url.expose().as_str()))
        .unwrap_or_else(|| format!("{:?}", notifier.type_))
}

/// The provider's notifier and the values of its Secret (a receiver's error may quote the
/// webhook URL or token it was given; they must not reach the Warning event).
pub async fn notifier_for(
    ctx: &Context,
    name: &str,
    namespace: &str,
) -> Result<Option<(ProviderNotifier, Vec<String>)>, String> {
    let provider = ctx
        .cache
        .get::<AlertProvider>(&ctx.client, namespace, name)
        .await
        .map_err(|e| kube_error(&e))?
        .ok_or_else(|| "not found".to_string())?;
    let secret_data = match &provider.spec.secret_ref {
        Some(secret_ref) => {
            let secret = ctx
                .cache
                .get::<Secret>(&ctx.client, namespace, &secret_ref.name)
                .await
                .map_err(|e| kube_error(&e))?;
            Some(secret.and_then(|s| s.data).unwrap_or_default())
        }
        None => None,
    };
    let secrets: Vec<String> = secret_data
        .iter()
        .flat_map(|d| d.values())
        .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
        .collect();
    let hide = |e: String| redact(&e, secrets.iter().map(String::as_str));
    let secret = secret_data.as_ref().map(|d| d as &dyn notify::SecretData);
    let resolved =
        notify::resolve(&provider.spec, secret).map_err(|e: ResolveError| hide(e.to_string()))?;
    let Some(resolved) = resolved else {
        return Ok(None);
    };
    let notifier = ProviderNotifier::new(&resolved, DeliveryOptions::default())
        .map_err(|e| hide(e.to_string()))?;
    Ok(Some((notifier, secrets)))
}

async fn report(
    ctx: &Context,
    canary: &Canary,
    target: &str,
    delivery: notify::Delivery,
    secrets: &[String],
) {
    let hide = |text: String| redact(&text, secrets.iter().map(String::as_str));
    if let Some(warning) = delivery.template_warning {
        let text = format!(
            "Alert provider {target} messageTemplate failed, standard message sent: {warning}"
        );
        ctx.recorder
            .record(canary, EventType::Warning, &hide(text))
            .await;
    }
    if let Err(e) = delivery.result {
        let text = format!("Alert to {target} failed: {e}");
        ctx.recorder
            .record(canary, EventType::Warning, &hide(text))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_to_one_chat_service_share_one_backend_whatever_their_webhook_path() {
        let notifier = |url: &str| {
            let flags = crate::flags::parse(&[&format!("--slack-url={url}")]).ok()?;
            global_notifier(&flags).ok().flatten().map(|n| backend(&n))
        };
        let a = notifier("https://hooks.slack.com/services/T000/B000/secret-a");
        let b = notifier("https://hooks.slack.com/services/T111/B111/secret-b");
        assert_eq!(a.as_deref(), Some("https://hooks.slack.com:443"));
        assert_eq!(a, b);
        assert_eq!(
            notifier("http://127.0.0.1:8080/hook").as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }
}
