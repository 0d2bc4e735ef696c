//! Dry-run never writes the router, so the core rebuilds the routes from the
//! status. Whatever the strategy, a dry-run controller must then decide exactly what a real one
//! decides: the same statuses tick by tick and the same effects, only logged instead of applied.

mod common;

use common::{Harness, Obs, ok, spec_with};
use flagger_api::status::CanaryPhase;
use flagger_core::{Readiness, RolloutSpec, Settings};
use serde_json::{Value, json};

fn both(spec_extra: Value, analysis: Value) -> (RolloutSpec, RolloutSpec) {
    let real = spec_with(spec_extra.clone(), analysis.clone(), &Settings::default());
    let dry = spec_with(
        spec_extra,
        analysis,
        &Settings {
            dry_run: true,
            ..Settings::default()
        },
    );
    assert!(dry.dry_run && !real.dry_run);
    (real, dry)
}

/// A real and a dry-run controller fed the same observations.
struct Pair {
    real: Harness,
    dry: Harness,
    ticks: u32,
}

impl Pair {
    fn new((real, dry): (RolloutSpec, RolloutSpec)) -> Self {
        Pair {
            real: Harness::new(real),
            dry: Harness::new(dry),
            ticks: 0,
        }
    }

    #[track_caller]
    fn tick(&mut self, case: &str, o: Obs) {
        self.ticks += 1;
        let real = self.real.run(o.clone()).to_vec();
        let dry: Vec<String> = self
            .dry
            .run(o)
            .iter()
            .map(|s| s.strip_prefix("dry-run ").unwrap_or(s).to_string())
            .collect();
        let t = self.ticks;
        assert_eq!(dry, real, "{case} tick {t}: effects");
        assert_eq!(self.dry.status, self.real.status, "{case} tick {t}: status");
    }

    fn phase(&self) -> CanaryPhase {
        self.real.phase()
    }

    fn revision(&mut self, r: &str) {
        self.real.revision = r.into();
        self.dry.revision = r.into();
    }

    /// Healthy ticks until `done` holds (bounded: every case finishes well within 40 ticks).
    #[track_caller]
    fn until(&mut self, case: &str, done: impl Fn(CanaryPhase) -> bool) {
        for _ in 0..40 {
            if done(self.phase()) {
                return;
            }
            self.tick(case, ok());
        }
        panic!("{case}: stuck in {:?}", self.phase());
    }
}

fn failing_metrics() -> Obs {
    ok().metric("request-success-rate", 10.0)
}

/// Init, a healthy run to the end, a run rolled back by its metrics, and a run whose primary fails
/// during promotion: every kind of route the status has to stand for.
fn script(case: &str, specs: (RolloutSpec, RolloutSpec)) {
    let mut p = Pair::new(specs);
    p.tick(case, ok());
    assert_eq!(p.phase(), CanaryPhase::Initialized, "{case}");

    p.revision("r2");
    p.tick(case, ok());
    p.until(case, |ph| ph == CanaryPhase::Succeeded);

    p.revision("r3");
    p.tick(case, ok());
    p.tick(case, ok());
    p.tick(case, ok());
    for _ in 0..40 {
        if p.phase() == CanaryPhase::Failed {
            break;
        }
        p.tick(case, failing_metrics());
    }
    assert_eq!(p.phase(), CanaryPhase::Failed, "{case}");
    p.tick(case, ok());

    p.revision("r4");
    p.tick(case, ok());
    p.until(case, |ph| ph == CanaryPhase::Promoting);
    let broken = || {
        ok().primary(Readiness::Failed {
            message: "pods crash".into(),
        })
    };
    p.tick(case, broken());
    p.tick(case, broken());
    p.tick(case, ok());
    p.tick(case, ok());
}

#[test]
fn canary_weights() {
    script(
        "canary",
        both(
            json!({}),
            json!({"stepWeight": 10, "maxWeight": 30, "threshold": 2}),
        ),
    );
}

#[test]
fn canary_weight_ladder_with_gradual_promotion() {
    script(
        "ladder",
        both(
            json!({}),
            json!({"stepWeights": [5, 20, 60], "stepWeightPromotion": 30, "threshold": 2}),
        ),
    );
}

#[test]
fn canary_with_mirroring() {
    script(
        "mirror",
        both(
            json!({}),
            json!({"stepWeight": 20, "maxWeight": 40, "mirror": true, "mirrorWeight": 50}),
        ),
    );
}

#[test]
fn canary_with_progressive_mirroring() {
    script(
        "ramp",
        both(
            json!({}),
            json!({"stepWeight": 25, "maxWeight": 50, "mirror": true, "stepWeightPromotion": 50,
                   "canaryAnalysis": {"stepWeightPromotion": 30, "maxMirrorWeight": 90}}),
        ),
    );
}

#[test]
fn ab_testing_with_gradual_promotion() {
    script(
        "a/b",
        both(
            json!({}),
            json!({"iterations": 3, "stepWeightPromotion": 40,
                   "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}),
        ),
    );
}

#[test]
fn blue_green_with_gradual_promotion() {
    script(
        "b/g",
        both(
            json!({}),
            json!({"iterations": 3, "stepWeightPromotion": 40}),
        ),
    );
}

#[test]
fn blue_green_with_progressive_mirroring() {
    script(
        "b/g mirror",
        both(
            json!({}),
            json!({"iterations": 4, "mirror": true,
                   "canaryAnalysis": {"stepWeightPromotion": 25}}),
        ),
    );
}

#[test]
fn blue_green_on_the_kubernetes_provider() {
    script(
        "kubernetes",
        both(
            json!({"provider": "kubernetes"}),
            json!({"iterations": 2, "stepWeightPromotion": 40}),
        ),
    );
}
