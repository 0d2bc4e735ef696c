//! Validation of Canary, MetricTemplate and AlertProvider objects: one pure function per kind,
//! shared by `flagger-rs validate` and the controller.
//!
//! Two layers are checked in one pass and reported alike, each problem with a JSON-path-like field
//! path: what Flagger's CRD schema rejects (the API server would refuse the object; reason
//! [`reason::SCHEMA`]) and what the schema admits but the controller cannot run
//! (errors make the canary `Valid=False`, warnings keep it running).

mod alert_provider;
mod analysis;
mod canary;
mod fields;
mod judge;
mod metric_template;
mod metrics;
mod names;
mod problems;
pub mod providers;
mod request;
mod service;
mod template;
mod webhooks;

pub use alert_provider::alert_provider;
pub use canary::canary;
pub use metric_template::metric_template;
pub(crate) use problems::child as child_path;
pub use problems::{Problem, Severity};
pub use providers::runs as provider_runs;
pub use providers::session_affinity;
pub use template::{check_message_template, check_query_template};

/// Machine-readable reasons; the runtime ones are the reasons of the `Valid` condition.
pub mod reason {
    /// The CRD schema (kept identical to Flagger's) rejects the object at admission.
    pub const SCHEMA: &str = "SchemaViolation";
    /// A field the schema does not know; the API server would prune it, strict clients refuse it.
    pub const UNKNOWN_FIELD: &str = "UnknownField";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const STRATEGY_UNSUPPORTED: &str = "StrategyUnsupported";
    pub const SESSION_AFFINITY_COOKIE: &str = "SessionAffinityCookie";
    pub const CROSS_NAMESPACE_REF: &str = "CrossNamespaceRef";
    pub const KNATIVE_MISMATCH: &str = "KnativeMismatch";
    pub const MIRROR_UNSUPPORTED: &str = "MirrorUnsupported";
    pub const METRIC_UNUSABLE: &str = "MetricUnusable";
    pub const NO_THRESHOLD: &str = "NoThreshold";
    /// A metric judged on counts over windows other than the analysis interval.
    pub const COUNT_WINDOW: &str = "CountWindow";
    pub const WEBHOOK_TIMEOUTS: &str = "WebhookTimeouts";
    pub const APEX_SERVICE_OWNED: &str = "ApexServiceOwned";
    /// A provider, or a feature of a provider, that Flagger has and flagger-rs does not run yet.
    pub const NOT_IMPLEMENTED: &str = "NotImplemented";
    /// A value that is accepted but has no effect with this provider or strategy.
    pub const IGNORED: &str = "Ignored";
    /// A `flagger-rs.dev/request` annotation the controller will refuse.
    pub const UNKNOWN_REQUEST: &str = "UnknownRequest";
}

/// Controller-level settings that change what a spec means.
#[derive(Clone, Debug)]
pub struct Options {
    /// Flag `-mesh-provider`: the provider of canaries without `spec.provider`. May hold the
    /// suffixed forms the flag accepts (`smi:v1alpha3:istio`, bare `gatewayapi`).
    pub default_provider: String,
    /// Flag `-selector-labels`.
    pub selector_labels: Vec<String>,
    /// Flag `-no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
    /// Flag `--min-analysis-interval`: shorter intervals are raised to it.
    pub min_interval: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_provider: "istio".into(),
            selector_labels: vec!["app".into(), "name".into(), "app.kubernetes.io/name".into()],
            no_cross_namespace_refs: false,
            min_interval: std::time::Duration::from_secs(10),
        }
    }
}

/// Checks a decoded object of any kind.
pub fn object(o: &crate::decode::Object, opts: &Options) -> Vec<Problem> {
    use crate::decode::Object;
    match o {
        Object::Canary(c) => canary(c, opts),
        Object::MetricTemplate(t) => metric_template(t),
        Object::AlertProvider(a) => alert_provider(a),
    }
}

/// Decodes and checks one document: decoding problems (unknown fields, wrong types, wrong
/// apiVersion or kind) first, then the validation of what could be decoded.
pub fn document(v: &serde_json::Value, opts: &Options) -> crate::decode::Decoded {
    let mut decoded = crate::decode::decode(v);
    if let Some(o) = decoded.object.as_ref() {
        let found = object(o, opts);
        for p in found {
            if !decoded
                .problems
                .iter()
                .any(|d| d.path == p.path && d.message == p.message)
            {
                decoded.problems.push(p);
            }
        }
    }
    decoded
}

/// True when any problem makes the object unusable (warnings do not).
pub fn has_errors(problems: &[Problem]) -> bool {
    problems.iter().any(|p| p.severity == Severity::Error)
}
