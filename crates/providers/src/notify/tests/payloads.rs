//! Each notifier posts exactly the documented body for a promotion, a
//! rollback with a metric reason, and every failure path of the alert catalogue.

use std::collections::BTreeMap;

use flagger_api::status::CanaryPhase;
use serde_json::{Value, json};

use super::receiver::Receiver;
use crate::notify::*;

const TS: i64 = 1_700_000_000_000;

fn base(phase: CanaryPhase, severity: Severity, message: &str) -> Alert {
    let mut a = Alert::new("podinfo", "test", phase, severity, message);
    a.timestamp_ms = TS;
    a.checksum = "r1.6f2c9a0d".into();
    a.target = "Deployment/podinfo.test".into();
    a
}

fn detail_fields() -> Vec<Field> {
    vec![
        Field::new("Target", "Deployment/podinfo.test"),
        Field::new("Failed checks threshold", "5"),
        Field::new("Progress deadline", "600s"),
        Field::new("Traffic routing", "Weight step: 10 max: 50"),
    ]
}

fn failure(reason: Reason) -> Alert {
    let mut a = Alert::failure("podinfo", "test", reason);
    a.timestamp_ms = TS;
    a.checksum = "r1.6f2c9a0d".into();
    a.target = "Deployment/podinfo.test".into();
    a
}

fn failed_checks(last: CheckFailure) -> Reason {
    Reason::FailedChecks {
        failed_checks: 5,
        threshold: 5,
        last: Some(last),
    }
}

/// Every alert of the catalogue that the tests post, by case name.
pub(super) fn cases() -> Vec<(&'static str, Alert)> {
    let mut new_revision = base(
        CanaryPhase::Progressing,
        Severity::Info,
        "New revision detected, progressing canary analysis.",
    );
    new_revision.fields = detail_fields();

    let mut rollback_metric = failure(failed_checks(CheckFailure::MetricOutOfRange {
        metric: "request-success-rate".into(),
        value: 97.234,
        range: ThresholdRange { min: Some(99.0), max: None },
        query: Some(r#"sum(rate(http_requests_total{namespace="test",status!~"5.*"}[1m])) / sum(rate(http_requests_total{namespace="test"}[1m])) * 100"#.into()),
    }));
    rollback_metric.checks = vec![CheckLine {
        iteration: 3,
        metric: "request-success-rate".into(),
        value: Some(97.234),
        threshold: Some("min 99".into()),
        failed: true,
        message: None,
    }];
    rollback_metric.fields = Alert::failed_check_fields(&rollback_metric.checks, 5);
    rollback_metric = rollback_metric.with_cluster("prod-eu-1");

    vec![
        ("new_revision", new_revision),
        ("waiting_approval", base(CanaryPhase::Waiting, Severity::Warn, "Canary is waiting for approval.")),
        ("promote", base(CanaryPhase::Succeeded, Severity::Info, "Canary analysis completed successfully, promotion finished.")),
        ("rollback_metric", rollback_metric),
        (
            "rollback_latency_above_max",
            failure(failed_checks(CheckFailure::MetricOutOfRange {
                metric: "request-duration".into(),
                value: 731.5,
                range: ThresholdRange { min: None, max: Some(500.0) },
                query: None,
            })),
        ),
        ("no_data", failure(failed_checks(CheckFailure::MetricNoData { metric: "request-success-rate".into(), query: None }))),
        (
            "query_failed",
            failure(failed_checks(CheckFailure::MetricQueryFailed {
                metric: "error-rate".into(),
                query: Some("rate(errors[1m])".into()),
                error: "Prometheus query failed: connection refused".into(),
            })),
        ),
        (
            "webhook_failed",
            failure(failed_checks(CheckFailure::WebhookFailed {
                hook: "acceptance-test".into(),
                status: Some(500),
                detail: "expected 200 from /api/info, got 503\n".into(),
            })),
        ),
        (
            "pre_rollout_failed",
            failure(failed_checks(CheckFailure::PreRolloutFailed {
                hook: "db-migrate".into(),
                status: None,
                detail: "timed out after 10s".into(),
            })),
        ),
        (
            "deadline_exceeded",
            failure(Reason::ProgressDeadline {
                deadline_seconds: Some(600),
                detail: "canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 updated replicas are available".into(),
            }),
        ),
        (
            "primary_not_ready",
            failure(Reason::PrimaryNotReady {
                detail: "podinfo-primary.test not ready: waiting for rollout to finish: 1 old replicas are pending termination".into(),
            }),
        ),
        ("manual_rollback", failure(Reason::ManualRollback { hook: "rollback-gate".into() })),
        ("reverted", failure(Reason::Reverted)),
        (
            "promotion_failed",
            failure(Reason::PromotionFailed { detail: "podinfo-primary.test not ready: progress deadline exceeded".into() }),
        ),
    ]
}

#[test]
fn default_messages_explain_every_failure_path() {
    let messages: BTreeMap<&str, String> =
        cases().into_iter().map(|(k, a)| (k, a.message)).collect();
    let want = [
        (
            "rollback_metric",
            "Failed checks threshold reached 5: request-success-rate is 97.23, below the minimum 99",
        ),
        (
            "rollback_latency_above_max",
            "Failed checks threshold reached 5: request-duration is 731.5, above the maximum 500",
        ),
        (
            "no_data",
            "Failed checks threshold reached 5: request-success-rate returned no data (is the canary receiving traffic?)",
        ),
        (
            "query_failed",
            "Failed checks threshold reached 5: error-rate query failed: Prometheus query failed: connection refused",
        ),
        (
            "webhook_failed",
            "Failed checks threshold reached 5: webhook acceptance-test failed with HTTP 500: expected 200 from /api/info, got 503",
        ),
        (
            "pre_rollout_failed",
            "Failed checks threshold reached 5: pre-rollout webhook db-migrate failed: timed out after 10s",
        ),
        (
            "deadline_exceeded",
            "Progress deadline exceeded after 600s: canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 2 updated replicas are available",
        ),
        (
            "primary_not_ready",
            "Rolling back, primary not ready: podinfo-primary.test not ready: waiting for rollout to finish: 1 old replicas are pending termination",
        ),
        (
            "manual_rollback",
            "Rolling back manual webhook invoked: rollback hook rollback-gate asked for it",
        ),
        (
            "reverted",
            "Rolling back podinfo.test: target reverted to the promoted revision",
        ),
        (
            "promotion_failed",
            "Promotion failed, primary not ready: podinfo-primary.test not ready: progress deadline exceeded",
        ),
    ];
    for (case, text) in want {
        assert_eq!(messages[case], text, "case {case}");
        assert!(!text.contains('\n'));
    }
    let failure = Reason::FailedChecks {
        failed_checks: 3,
        threshold: 3,
        last: None,
    };
    assert_eq!(
        failure.message("a", "b"),
        "Failed checks threshold reached 3"
    );
}

/// Posts every case through `notifier` and returns {case: body}, checking method, path and
/// headers on the way.
async fn post_all(
    rx: &mut Receiver,
    notifier: &dyn Notifier,
    path: &str,
    bearer: Option<&str>,
) -> Value {
    let mut bodies = serde_json::Map::new();
    for (case, alert) in cases() {
        notifier
            .send(&alert)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let r = rx.next().await;
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri.path(), path, "{case}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("authorization"),
            bearer.map(|t| format!("Bearer {t}")).as_deref(),
            "{case}"
        );
        bodies.insert(case.to_owned(), r.body);
    }
    assert!(rx.drain().is_empty(), "one request per alert");
    Value::Object(bodies)
}

fn provider(type_: ProviderType, address: &str) -> ResolvedProvider {
    ResolvedProvider {
        type_,
        address: SecretUrl::parse(address).unwrap(),
        token: None,
        proxy: None,
        channel: "general".into(),
        username: "flagger".into(),
        message_template: None,
    }
}

fn opts() -> DeliveryOptions {
    ensure_crypto_provider();
    DeliveryOptions::default()
}

fn by_case<'a>(bodies: &'a Value, case: &str) -> &'a Value {
    &bodies[case]
}

#[tokio::test]
async fn slack() {
    let mut rx = Receiver::start(vec![]).await;
    let mut p = provider(ProviderType::Slack, &rx.url("/services/T0/B0/X"));
    p.channel = "on-call".into();
    p.username = "canary-bot".into();
    let bodies = post_all(
        &mut rx,
        &Slack::new(&p, opts()).unwrap(),
        "/services/T0/B0/X",
        None,
    )
    .await;

    let promote = by_case(&bodies, "promote");
    assert_eq!(
        promote,
        &json!({
            "channel": "on-call", "username": "canary-bot", "icon_url": "", "icon_emoji": ":rocket:",
            "attachments": [{"color": "good", "author_name": "podinfo.test",
                "text": "Canary analysis completed successfully, promotion finished.",
                "mrkdwn_in": ["text"], "fields": []}]
        })
    );
    let rollback = by_case(&bodies, "rollback_metric");
    assert_eq!(rollback["attachments"][0]["color"], "danger");
    assert_eq!(
        rollback["attachments"][0]["fields"][0],
        json!({"title": "Cluster", "value": "prod-eu-1", "short": false})
    );
    assert_eq!(
        rollback["attachments"][0]["fields"][1]["value"],
        "request-success-rate: 97.23 (min 99) at iteration 3"
    );
    assert_eq!(
        by_case(&bodies, "waiting_approval")["attachments"][0]["color"],
        "good"
    );
    insta::assert_json_snapshot!("slack", bodies);
}

#[tokio::test]
async fn slack_with_token_sends_bearer() {
    let mut rx = Receiver::start(vec![]).await;
    let mut p = provider(ProviderType::Slack, &rx.url("/api/chat.postMessage"));
    p.token = Some(SecretToken::new("xoxb-test-token"));
    let bodies = post_all(
        &mut rx,
        &Slack::new(&p, opts()).unwrap(),
        "/api/chat.postMessage",
        Some("xoxb-test-token"),
    )
    .await;
    assert_eq!(by_case(&bodies, "promote")["channel"], "general");
    assert_eq!(by_case(&bodies, "promote")["username"], "flagger");
}

#[tokio::test]
async fn discord_posts_the_slack_body_to_slash_slack() {
    let mut rx = Receiver::start(vec![]).await;
    let p = provider(ProviderType::Discord, &rx.url("/api/webhooks/1/abc"));
    let bodies = post_all(
        &mut rx,
        &Discord::new(&p, opts()).unwrap(),
        "/api/webhooks/1/abc/slack",
        None,
    )
    .await;
    assert_eq!(
        by_case(&bodies, "rollback_metric")["attachments"][0]["color"],
        "danger"
    );
    insta::assert_json_snapshot!("discord", bodies);
}

#[tokio::test]
async fn rocket() {
    let mut rx = Receiver::start(vec![]).await;
    let p = provider(ProviderType::Rocket, &rx.url("/hooks/abc"));
    let bodies = post_all(
        &mut rx,
        &Rocket::new(&p, opts()).unwrap(),
        "/hooks/abc",
        None,
    )
    .await;
    assert_eq!(
        by_case(&bodies, "promote")["attachments"][0]["color"],
        "#0076D7"
    );
    assert_eq!(
        by_case(&bodies, "rollback_metric")["attachments"][0]["color"],
        "#FF0000"
    );
    insta::assert_json_snapshot!("rocket", bodies);
}

#[tokio::test]
async fn msteams_message_card() {
    let mut rx = Receiver::start(vec![]).await;
    let p = provider(ProviderType::MsTeams, &rx.url("/webhookb2/abc"));
    let bodies = post_all(
        &mut rx,
        &MsTeams::new(&p, opts()).unwrap(),
        "/webhookb2/abc",
        None,
    )
    .await;
    assert_eq!(
        by_case(&bodies, "new_revision"),
        &json!({
            "@type": "MessageCard", "@context": "http://schema.org/extensions", "themeColor": "0076D7",
            "summary": "podinfo.test",
            "sections": [{"activityTitle": "New revision detected, progressing canary analysis.",
                "activitySubtitle": "podinfo.test",
                "facts": [
                    {"name": "Target", "value": "Deployment/podinfo.test"},
                    {"name": "Failed checks threshold", "value": "5"},
                    {"name": "Progress deadline", "value": "600s"},
                    {"name": "Traffic routing", "value": "Weight step: 10 max: 50"}
                ]}]
        })
    );
    assert_eq!(
        by_case(&bodies, "deadline_exceeded")["themeColor"],
        "FF0000"
    );
    insta::assert_json_snapshot!("msteams_message_card", bodies);
}

#[tokio::test]
async fn msteams_adaptive_card() {
    let mut rx = Receiver::start(vec![]).await;
    let p = provider(
        ProviderType::MsTeams,
        &rx.url("/workflows/abc/triggers/manual/paths/invoke"),
    );
    let n = MsTeams::with_format(&p, opts(), MsTeamsFormat::AdaptiveCard).unwrap();
    let bodies = post_all(
        &mut rx,
        &n,
        "/workflows/abc/triggers/manual/paths/invoke",
        None,
    )
    .await;
    let card = &by_case(&bodies, "rollback_metric")["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["items"][1]["color"], "attention");
    assert!(
        by_case(&bodies, "promote")["attachments"][0]["content"]["body"][0]["items"][1]
            .get("color")
            .is_none()
    );
    insta::assert_json_snapshot!("msteams_adaptive_card", bodies);
}

#[tokio::test]
async fn gchat() {
    let mut rx = Receiver::start(vec![]).await;
    let p = provider(ProviderType::GChat, &rx.url("/v1/spaces/AAA/messages"));
    let bodies = post_all(
        &mut rx,
        &GChat::new(&p, opts()).unwrap(),
        "/v1/spaces/AAA/messages",
        None,
    )
    .await;
    let rollback = by_case(&bodies, "rollback_metric");
    assert_eq!(
        rollback["cards"][0]["header"],
        json!({"title": "Flagger", "subtitle": "podinfo.test", "imageUrl": "https://flagger.app/favicon.png"})
    );
    assert_eq!(
        rollback["cards"][0]["sections"][1],
        json!({"widgets": [{"textParagraph": {"text": "Cluster<br><font color=#848484><strong>prod-eu-1</strong></font>"}}]})
    );
    insta::assert_json_snapshot!("gchat", bodies);
}

#[tokio::test]
async fn generic_with_token() {
    let mut rx = Receiver::start(vec![]).await;
    let mut p = provider(ProviderType::Generic, &rx.url("/alerts"));
    p.token = Some(SecretToken::new("generic-token"));
    let bodies = post_all(
        &mut rx,
        &Generic::new(&p, opts()).unwrap(),
        "/alerts",
        Some("generic-token"),
    )
    .await;
    assert_eq!(
        by_case(&bodies, "manual_rollback"),
        &json!({
            "name": "podinfo", "namespace": "test", "phase": "Failed", "severity": "error",
            "message": "Rolling back manual webhook invoked: rollback hook rollback-gate asked for it",
            "fields": [], "checksum": "r1.6f2c9a0d", "timestamp": "1700000000000"
        })
    );
    assert_eq!(by_case(&bodies, "waiting_approval")["severity"], "warn");
    insta::assert_json_snapshot!("generic", bodies);
}

#[tokio::test]
async fn message_template_replaces_text_and_drops_fields() {
    let mut rx = Receiver::start(vec![]).await;
    let mut p = provider(ProviderType::Slack, &rx.url("/hook"));
    p.message_template = Some(
        "{{ .Status }} {{ .Name }}.{{ .Namespace }} env={{ .Metadata.environment }}\
         {{ range .CanaryAnalysis.Iterations }}{{ if .Failed }} | {{ .Metric }}: {{ .Value }} ({{ .Threshold }}){{ end }}{{ end }}"
            .into(),
    );
    let n = ProviderNotifier::new(&p, opts()).unwrap();
    let (_, mut alert) = cases()
        .into_iter()
        .find(|(c, _)| *c == "rollback_metric")
        .unwrap();
    alert
        .metadata
        .insert("environment".into(), "production".into());
    let d = n.notify(&alert).await;
    assert!(d.result.is_ok(), "{:?}", d.result);
    assert_eq!(d.template_warning, None);
    let body = rx.next().await.body;
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["text"],
        "failed podinfo.test env=production | request-success-rate: 97.234 (min 99)"
    );
    assert_eq!(attachment["fields"], json!([]));
    assert_eq!(attachment["color"], "danger");
    assert_eq!(attachment["author_name"], "podinfo.test");
}

#[tokio::test]
async fn broken_template_sends_the_standard_alert_and_warns() {
    let mut rx = Receiver::start(vec![]).await;
    let mut p = provider(ProviderType::Generic, &rx.url("/hook"));
    p.message_template = Some("{{ .Name ".into());
    let n = ProviderNotifier::new(&p, opts()).unwrap();
    let (_, alert) = cases()
        .into_iter()
        .find(|(c, _)| *c == "new_revision")
        .unwrap();
    let d = n.notify(&alert).await;
    assert!(d.result.is_ok(), "{:?}", d.result);
    let warning = d.template_warning.expect("a warning for the caller");
    assert!(
        warning.contains("messageTemplate") && warning.contains("standard message"),
        "{warning}"
    );
    let body = rx.next().await.body;
    assert_eq!(
        body["message"],
        "New revision detected, progressing canary analysis."
    );
    assert_eq!(body["fields"].as_array().map(Vec::len), Some(4));
}
