//! The product's own entry points for what a user writes, called as `flagger-rs validate`,
//! `flagger-rs plan` and the controller call them.

use std::collections::BTreeMap;

use flagger_api::decode::{self, Object};
use flagger_api::validate::{self, Options};
use flagger_api::{Canary, gotemplate};
use flagger_core::plan::plan;
use flagger_core::{Settings, normalize};
use flagger_providers::metrics::template::{QueryModel, collapse_whitespace, render};
use flagger_providers::notify::template::render as render_message;
use flagger_providers::notify::{Alert, CheckLine, Field};
use serde_json::Value;

/// How far the manifests got, summed over a run.
#[derive(Debug, Default)]
pub struct Reach {
    pub documents: u64,
    pub canaries: u64,
    pub metric_templates: u64,
    pub alert_providers: u64,
    pub valid: u64,
    pub planned: u64,
}

impl Reach {
    /// The flagger.app objects that reached validation.
    pub fn objects(&self) -> u64 {
        self.canaries + self.metric_templates + self.alert_providers
    }
}

pub struct Targets {
    validation: Options,
    settings: Settings,
    model: QueryModel,
    alert: Alert,
}

impl Targets {
    pub fn new() -> Targets {
        Targets {
            validation: Options::default(),
            settings: Settings::default(),
            model: QueryModel {
                name: "podinfo".into(),
                namespace: "test".into(),
                target: "podinfo".into(),
                service: "podinfo".into(),
                ingress: "podinfo".into(),
                route: "podinfo".into(),
                interval: "1m".into(),
                variables: BTreeMap::from([
                    ("key".to_string(), "value".to_string()),
                    ("quantile".to_string(), "0.99".to_string()),
                ]),
            },
            alert: sample_alert(),
        }
    }

    /// A file's bytes through the reader, the decoder, validation, and for Canaries the
    /// normalisation and the plan; templates found on the way are rendered as the controller
    /// renders them.
    pub fn manifest(&self, bytes: &[u8], reach: &mut Reach) {
        let Ok(docs) = decode::parse_documents(bytes) else {
            return;
        };
        for doc in &docs {
            self.document(doc, reach);
        }
    }

    pub fn document(&self, doc: &Value, reach: &mut Reach) {
        reach.documents += 1;
        if !decode::is_flagger_document(doc) {
            return;
        }
        let decoded = validate::document(doc, &self.validation);
        let valid = !validate::has_errors(&decoded.problems);
        reach.valid += u64::from(valid);
        match decoded.object {
            Some(Object::Canary(c)) => {
                reach.canaries += 1;
                self.canary(&c, reach);
                // `flagger-rs plan` decodes without the validator's clean-up: both must hold.
                if let Ok(raw) = serde_json::from_value::<Canary>(doc.clone()) {
                    self.canary(&raw, reach);
                }
            }
            Some(Object::MetricTemplate(t)) => {
                reach.metric_templates += 1;
                if let Ok(q) = render(&t.spec.query, &self.model) {
                    let _ = collapse_whitespace(&q);
                }
            }
            Some(Object::AlertProvider(a)) => {
                reach.alert_providers += 1;
                if let Some(t) = &a.spec.message_template {
                    let _ = render_message(t, &self.alert);
                }
            }
            None => {}
        }
    }

    fn canary(&self, canary: &Canary, reach: &mut Reach) {
        let Ok(spec) = normalize(canary, &self.settings) else {
            return;
        };
        reach.planned += 1;
        let _ = plan(&spec, None);
        let _ = plan(&spec, Some(3));
        for metric in canary.spec.analysis.metrics.as_ref().into_iter().flatten() {
            let model = QueryModel::for_canary(
                canary,
                metric.interval.as_deref(),
                metric.template_variables.as_ref(),
            );
            if let Some(q) = &metric.query {
                let _ = render(q, &model);
            }
        }
    }

    /// One template through the parser with each function set and through both renderers.
    /// Returns the parser's complaint when it did not finish: a hang the deadline caught.
    pub fn template(&self, text: &str) -> Result<(), String> {
        if let Err(e @ gotemplate::ParseError::Unfinished(_)) = gotemplate::parse(text, &[]) {
            return Err(e.to_string());
        }
        let _ = validate::check_query_template(text);
        let _ = validate::check_message_template(text);
        let _ = gotemplate::check_safe(text);
        let _ = render(text, &self.model);
        let _ = render_message(text, &self.alert);
        Ok(())
    }
}

fn sample_alert() -> Alert {
    let mut alert = Alert::example_rollback();
    alert.metadata = BTreeMap::from([("environment".to_owned(), "production".to_owned())]);
    alert.fields = vec![Field::new("Target", "Deployment/podinfo.test")];
    alert.checks = (1..=4)
        .map(|i| CheckLine {
            iteration: i,
            metric: "request-success-rate".into(),
            value: Some(97.5),
            threshold: Some("min 99".into()),
            failed: i % 2 == 0,
            message: None,
        })
        .collect();
    alert
}
