//! A tick-by-tick driver for table tests: each row is an observation, each expectation the status
//! and the effects after the tick.

#![allow(dead_code)]

use flagger_api::Canary;
use flagger_api::analysis::HookType;
use flagger_api::status::{CanaryPhase, CanaryStatus};
use flagger_core::status::StatusExt;
use flagger_core::{
    Action, FreshCookies, HookResult, ManualRequest, MetricOutcome, MetricResult, Need,
    Observation, Outcome, Readiness, RolloutSpec, RouteState, Settings, normalize,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// The common setup of the worked scenarios with `analysis` merged over the defaults.
pub fn canary_json(spec_extra: Value, analysis: Value) -> Value {
    let mut a = json!({
        "interval": "1m",
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"}
        ]
    });
    merge(&mut a, analysis);
    let mut spec = json!({
        "provider": "istio",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "service": {"port": 9898},
        "analysis": a
    });
    merge(&mut spec, spec_extra);
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": spec
    })
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, e) => *b = e,
    }
}

pub fn spec_with(spec_extra: Value, analysis: Value, settings: &Settings) -> RolloutSpec {
    let canary: Canary =
        serde_json::from_value(canary_json(spec_extra, analysis)).expect("test canary parses");
    normalize(&canary, settings).expect("test canary is valid")
}

pub fn spec(analysis: Value) -> RolloutSpec {
    spec_with(json!({}), analysis, &Settings::default())
}

/// What the shell sees in one tick; everything not stated is healthy.
#[derive(Clone, Debug)]
pub struct Obs {
    pub primary: Readiness,
    pub canary: Readiness,
    pub routes_error: Option<String>,
    /// Hooks that answer with a failure (a rollback hook "fails" = no rollback, the default).
    pub failing: Vec<&'static str>,
    /// Rollback hooks that signal a rollback.
    pub rollback: Vec<&'static str>,
    pub metrics: Vec<(&'static str, MetricOutcome)>,
    /// The statistical judge's look, for canaries with `analysis.judge`.
    pub judge: Option<flagger_core::judging::JudgeReport>,
    pub skip_annotation: bool,
    pub reset: Option<&'static str>,
    pub deleting: bool,
    pub finalizer: Option<bool>,
    pub request: Option<ManualRequest>,
}

impl Default for Obs {
    fn default() -> Self {
        Obs {
            primary: Readiness::Ready,
            canary: Readiness::Ready,
            routes_error: None,
            failing: Vec::new(),
            rollback: Vec::new(),
            metrics: Vec::new(),
            judge: None,
            skip_annotation: false,
            reset: None,
            deleting: false,
            finalizer: None,
            request: None,
        }
    }
}

pub fn ok() -> Obs {
    Obs::default()
}

pub fn waiting(message: &str) -> Readiness {
    Readiness::Waiting {
        message: message.into(),
        since: None,
    }
}

impl Obs {
    pub fn fail(mut self, hook: &'static str) -> Self {
        self.failing.push(hook);
        self
    }
    pub fn rollback(mut self, hook: &'static str) -> Self {
        self.rollback.push(hook);
        self
    }
    pub fn metric(mut self, name: &'static str, v: f64) -> Self {
        self.metrics.push((name, MetricOutcome::Value(v)));
        self
    }
    pub fn metric_outcome(mut self, name: &'static str, o: MetricOutcome) -> Self {
        self.metrics.push((name, o));
        self
    }
    pub fn canary(mut self, r: Readiness) -> Self {
        self.canary = r;
        self
    }
    pub fn primary(mut self, r: Readiness) -> Self {
        self.primary = r;
        self
    }
}

/// Different random-looking letters every tick, as a shell draws them, so a test sees whether the
/// core rotated a cookie it should have kept.
pub fn fresh_cookies(now: Timestamp) -> FreshCookies {
    let letters = |base: u8, salt: u64| -> String {
        let mut n = now.as_second().unsigned_abs().wrapping_mul(2_654_435_761) ^ salt;
        (0..10)
            .map(|_| {
                let c = char::from(base + u8::try_from(n % 26).expect("below 26"));
                n = n / 26 + 7;
                c
            })
            .collect()
    };
    FreshCookies {
        canary: letters(b'a', 1),
        primary: letters(b'A', 2),
    }
}

pub struct Harness {
    pub spec: RolloutSpec,
    pub status: CanaryStatus,
    pub router: RouteState,
    pub mirror: u32,
    pub revision: String,
    pub configs: std::collections::BTreeMap<String, String>,
    pub now: Timestamp,
    pub has_finalizer: bool,
    /// Summaries of the last tick's effects.
    pub last: Vec<String>,
    pub last_actions: Vec<Action>,
}

pub fn summary(a: &Action) -> String {
    match a {
        Action::AddFinalizer => "add-finalizer".into(),
        Action::RemoveFinalizer => "remove-finalizer".into(),
        Action::EnsurePrimary => "ensure-primary".into(),
        Action::RouteApexToPrimary => "apex-to-primary".into(),
        Action::ScaleTargetUp => "scale-up".into(),
        Action::ScaleTargetToZero => "scale-to-zero".into(),
        Action::PauseTargetScaler => "pause-scaler".into(),
        Action::ResumeTargetScaler => "resume-scaler".into(),
        Action::ReconcilePrimaryScaler => "primary-scaler".into(),
        Action::Promote => "promote".into(),
        Action::SetRoutes(r) if r.mirror > 0 => {
            format!("routes {}/{} +m{}", r.primary, r.canary, r.mirror)
        }
        Action::SetRoutes(r) => format!("routes {}/{}", r.primary, r.canary),
        Action::RestoreTarget => "restore-target".into(),
        Action::RevertRouting => "revert-routing".into(),
        Action::CallWebhooks { kind, phase, hooks } => {
            format!("call {} ({phase}): {}", kind.as_str(), hooks.join(","))
        }
        Action::Need(Need::Webhooks { kind, phase, hooks }) => {
            format!("ask {} ({phase}): {}", kind.as_str(), hooks.join(","))
        }
        Action::Need(Need::Metrics { names }) => format!("query {}", names.join(",")),
        Action::Need(Need::Judge) => "judge".into(),
        Action::Event(e) => format!("{:?}: {}", e.type_, e.message),
        Action::Alert(al) => {
            format!("alert {:?}: {}", al.severity, al.message).to_lowercase_prefix()
        }
        Action::Report(Outcome::Succeeded { skipped }) => {
            format!("report succeeded skipped={skipped}")
        }
        Action::Report(Outcome::RolledBack { reason }) => {
            format!("report rollback {}", reason.label())
        }
        Action::Report(Outcome::PromotionFailed { .. }) => "report promotion-failed".into(),
        Action::RequeueAfter(d) => format!("requeue {}s", d.as_secs()),
        Action::RequeueWhenReady(w) => format!("requeue when {w:?} ready").to_lowercase(),
        Action::DryRun(inner) => format!("dry-run {}", summary(inner)),
    }
}

trait LowerPrefix {
    fn to_lowercase_prefix(self) -> String;
}

impl LowerPrefix for String {
    /// `alert Error: …` → `alert error: …`, keeping the message as written.
    fn to_lowercase_prefix(self) -> String {
        match self.split_once(':') {
            Some((head, tail)) => format!("{}:{tail}", head.to_lowercase()),
            None => self,
        }
    }
}

impl Harness {
    pub fn new(spec: RolloutSpec) -> Self {
        Harness {
            spec,
            status: CanaryStatus::default(),
            router: RouteState::PRIMARY,
            mirror: 0,
            revision: "r1.6.0.0".into(),
            configs: Default::default(),
            now: Timestamp::UNIX_EPOCH,
            has_finalizer: false,
            last: Vec::new(),
            last_actions: Vec::new(),
        }
    }

    /// Created, initialised, then a new revision: the state after S1's t1 with 6.0.1 applied.
    pub fn initialized(spec: RolloutSpec) -> Self {
        let mut h = Harness::new(spec);
        h.run(ok());
        assert_eq!(h.phase(), CanaryPhase::Initialized);
        h.revision = "r1.6.0.1".into();
        h
    }

    /// Initialised and through run start: S1 after t2.
    pub fn progressing(spec: RolloutSpec) -> Self {
        let mut h = Harness::initialized(spec);
        h.run(ok());
        assert_eq!(h.phase(), CanaryPhase::Progressing);
        h
    }

    pub fn phase(&self) -> CanaryPhase {
        self.status.phase_or_new()
    }

    pub fn observation(&self, o: &Obs) -> Observation {
        let mut obs = Observation::ready(self.revision.clone(), self.router);
        obs.configs = self.configs.clone();
        obs.primary = o.primary.clone();
        obs.canary = o.canary.clone();
        if let Some(e) = &o.routes_error {
            obs.routes = Err(e.clone());
        }
        obs.skip_analysis_annotation = o.skip_annotation;
        obs.reset_token = o.reset.map(str::to_string);
        obs.deleting = o.deleting;
        obs.request = o.request.clone();
        obs.has_finalizer = o.finalizer.unwrap_or(self.has_finalizer);
        obs.fresh_cookies = fresh_cookies(self.now);
        obs
    }

    fn metric_value(&self, name: &str) -> f64 {
        match name {
            "request-success-rate" => 99.9,
            "request-duration" => 120.0,
            _ => {
                let m = self
                    .spec
                    .metrics
                    .iter()
                    .find(|m| m.name == name)
                    .expect("known metric");
                m.min.or(m.max).unwrap_or(0.0)
            }
        }
    }

    /// One tick: answers the core's requests from `o`, applies routes, advances the clock.
    pub fn run(&mut self, o: Obs) -> &[String] {
        let mut obs = self.observation(&o);
        let mut asked = Vec::new();
        let (status, actions) = loop {
            let (status, actions) = flagger_core::advance(&self.spec, &self.status, &obs, self.now);
            match actions.as_slice() {
                [Action::Need(need)] => {
                    match need {
                        Need::Webhooks { kind, hooks, phase } => {
                            // A shell stops a gate run at the first failure; answer one at a time.
                            let name = hooks[0].clone();
                            asked.push(format!("ask {} {name} ({phase})", kind.as_str()));
                            let outcome = if *kind == HookType::Rollback {
                                if o.rollback.contains(&name.as_str()) {
                                    Ok(())
                                } else {
                                    Err("403 closed".to_string())
                                }
                            } else if o.failing.contains(&name.as_str()) {
                                Err("500 failed".to_string())
                            } else {
                                Ok(())
                            };
                            obs.webhooks.push(HookResult {
                                kind: *kind,
                                name,
                                outcome,
                            });
                        }
                        Need::Metrics { names } => {
                            let name = names[0].clone();
                            asked.push(format!("query {name}"));
                            let outcome = o
                                .metrics
                                .iter()
                                .find(|(n, _)| *n == name)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_else(|| MetricOutcome::Value(self.metric_value(&name)));
                            obs.metrics.push(MetricResult {
                                name,
                                query: Some("q".into()),
                                outcome,
                            });
                        }
                        Need::Judge => {
                            asked.push("judge".to_string());
                            obs.judge = Some(o.judge.clone().expect("a judge look for this tick"));
                        }
                    }
                    assert!(asked.len() < 64, "the core keeps asking: {asked:?}");
                }
                _ => break (status, actions),
            }
        };
        for a in &actions {
            match a {
                Action::SetRoutes(r) => {
                    self.router = RouteState {
                        primary: r.primary,
                        canary: r.canary,
                        mirrored: r.mirror > 0,
                    };
                    self.mirror = r.mirror;
                }
                Action::AddFinalizer => self.has_finalizer = true,
                Action::RemoveFinalizer => self.has_finalizer = false,
                _ => {}
            }
        }
        self.status = status;
        self.last = asked
            .into_iter()
            .chain(
                actions
                    .iter()
                    .filter(|a| !matches!(a, Action::RequeueAfter(_)))
                    .map(summary),
            )
            .collect();
        self.last_actions = actions;
        self.now += SignedDuration::try_from(self.spec.interval).expect("interval fits");
        &self.last
    }

    pub fn routes(&self) -> String {
        if self.mirror > 0 {
            format!(
                "{}/{} +m{}",
                self.router.primary, self.router.canary, self.mirror
            )
        } else {
            format!("{}/{}", self.router.primary, self.router.canary)
        }
    }

    /// Runs one row and checks the expectation; `label` names the tick in failure messages.
    #[track_caller]
    pub fn row(
        &mut self,
        label: &str,
        o: Obs,
        phase: CanaryPhase,
        wfi: (u32, u32, u32),
        routes: &str,
        actions: &[&str],
    ) {
        self.run(o);
        let got = (
            self.status.weight(),
            self.status.failed(),
            self.status.iter(),
        );
        assert_eq!(
            self.phase(),
            phase,
            "{label}: phase; effects {:#?}",
            self.last
        );
        assert_eq!(got, wfi, "{label}: w f i; effects {:#?}", self.last);
        assert_eq!(self.routes(), routes, "{label}: routes");
        // Requests are answered before the tick's effects exist, so they are compared in their own
        // order, apart from the effects.
        let is_request = |s: &&str| s.starts_with("ask ") || s.starts_with("query ");
        let split = |list: Vec<&str>| -> (Vec<String>, Vec<String>) {
            let (a, b): (Vec<&str>, Vec<&str>) = list.into_iter().partition(is_request);
            (
                a.into_iter().map(String::from).collect(),
                b.into_iter().map(String::from).collect(),
            )
        };
        let (want_asks, want_effects) = split(actions.to_vec());
        let (got_asks, got_effects) = split(self.last.iter().map(String::as_str).collect());
        assert_eq!(got_asks, want_asks, "{label}: requests");
        assert_eq!(got_effects, want_effects, "{label}: effects");
        assert_eq!(
            self.router.primary + self.router.canary,
            100,
            "{label}: routes add up"
        );
    }
}
