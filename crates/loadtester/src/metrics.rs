//! The loadtester's own Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub code: String,
}

pub struct Metrics {
    registry: Registry,
    pub tasks: Family<TaskLabels, Counter>,
    pub running: Gauge,
    pub load_responses: Family<StatusLabels, Counter>,
    pub load_errors: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flagger_loadtester");
        let tasks = Family::<TaskLabels, Counter>::default();
        let running = Gauge::default();
        let load_responses = Family::<StatusLabels, Counter>::default();
        let load_errors = Counter::default();
        registry.register(
            "tasks",
            "Tasks by type and result (started, skipped, succeeded, failed, rejected)",
            tasks.clone(),
        );
        registry.register("tasks_running", "Tasks running now", running.clone());
        registry.register(
            "load_responses",
            "Responses received by the built-in load generator, by status code",
            load_responses.clone(),
        );
        registry.register(
            "load_errors",
            "Requests of the built-in load generator that got no response",
            load_errors.clone(),
        );
        Self {
            registry,
            tasks,
            running,
            load_responses,
            load_errors,
        }
    }

    pub fn task(&self, kind: &str, result: &str) {
        self.tasks
            .get_or_create(&TaskLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
