//! `flagger-rs plan FILE --replay SERIES.csv`: the statistical judge over recorded series,
//! interval by interval, for each Canary of FILE — "would this run have promoted?".

use std::fmt::Write as _;
use std::path::Path;

use flagger_core::RolloutSpec;
use flagger_core::plan::{checks_to_promote, plan};
use flagger_judge::{Outcome, Recording, Scoring, Settings, replay};

pub fn render_all(specs: &[RolloutSpec], series: &Path) -> Result<String, String> {
    let path = series.display();
    let text = std::fs::read_to_string(series).map_err(|e| format!("{path}: {e}"))?;
    let recording = Recording::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    if recording.intervals.is_empty() {
        return Err(format!("{path}: no recorded values"));
    }
    let mut out = String::new();
    for spec in specs {
        out.push_str(&render(spec, &recording, &path.to_string())?);
        out.push('\n');
    }
    Ok(out)
}

fn render(spec: &RolloutSpec, recording: &Recording, source: &str) -> Result<String, String> {
    let healthy = plan(spec, None);
    // The judge stands in for the canary's metric checks: the run needs as many passing
    // intervals as its plan has ticks with checks.
    let checks = checks_to_promote(spec);
    if checks == 0 {
        return Err(format!(
            "Canary {}.{} runs no metric checks: there is nothing for the judge to stand in for",
            healthy.name, healthy.namespace
        ));
    }
    let result = replay(
        recording,
        &Settings::default(),
        &Scoring::default(),
        spec.threshold,
        checks,
    );
    let mut out = format!(
        "Canary {}.{}: judge replay of {source} (threshold {}, {checks} passing checks to promote)\n",
        healthy.name, healthy.namespace, spec.threshold
    );
    let _ = writeln!(
        out,
        "{:>8}  {:<12} {:>6}  METRICS",
        "INTERVAL", "DECISION", "SCORE"
    );
    for interval in &result.intervals {
        let metrics: Vec<String> = interval
            .metrics
            .iter()
            .map(|(name, j)| format!("{name} {:?} ({})", j.classification, j.reason))
            .collect();
        let _ = writeln!(
            out,
            "{:>8}  {:<12} {:>6.1}  {}",
            interval.interval,
            format!("{:?}", interval.score.decision),
            interval.score.summary,
            metrics.join("; ")
        );
    }
    let verdict = match result.outcome {
        Outcome::Promoted { interval } => format!("would promote at interval {interval}"),
        Outcome::RolledBack { interval } => format!("would roll back at interval {interval}"),
        Outcome::Undecided {
            passed,
            failed,
            held,
        } => format!(
            "undecided when the recording ends: {passed} of {checks} checks passed, {failed} of {} failed, {held} held",
            spec.threshold
        ),
    };
    let _ = writeln!(out, "Outcome: {verdict}");
    Ok(out)
}
