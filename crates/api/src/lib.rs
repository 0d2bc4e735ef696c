//! `flagger.app/v1beta1`: Canary, MetricTemplate and AlertProvider, field for field with Flagger,
//! plus the extra fields the seed documents describe. No I/O: everything else depends on this crate.

pub mod alert_provider;
pub mod analysis;
pub mod canary;
pub mod crd;
pub mod decode;
pub mod duration;
pub mod goflag;
pub mod gotemplate;
pub mod istio;
pub mod judge;
pub mod metric_template;
pub mod number;
pub mod request;
pub mod service;
pub mod status;
pub mod string_match;
pub mod validate;

pub use alert_provider::{AlertProvider, AlertProviderSpec};
pub use analysis::{CanaryAlert, CanaryAnalysis, CanaryMetric, CanaryWebhook, HookType};
pub use canary::{Canary, CanarySpec, TargetRef};
pub use metric_template::{MetricTemplate, MetricTemplateSpec};
pub use number::Number;
pub use service::CanaryService;
pub use status::{CanaryPhase, CanaryStatus, CheckRecord, Condition, HandledRequest};

pub const GROUP: &str = "flagger.app";
pub const API_VERSION: &str = "flagger.app/v1beta1";
