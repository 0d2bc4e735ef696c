//! `flagger-rs plan FILE`: what a Canary will do, tick by tick, before it is applied.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use flagger_api::Canary;
use flagger_api::decode::parse_documents;
use flagger_core::plan::{Plan, plan};
use flagger_core::{RolloutSpec, Settings, normalize};

use crate::duration::short as duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML file with one or more Canary documents (other kinds are skipped).
    pub file: PathBuf,
    /// Simulate every check failing from this tick on (tick 0 detects the new revision).
    #[arg(long)]
    pub fail_at: Option<u32>,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    /// Controller `-mesh-provider`, used for canaries without `spec.provider`.
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Run the statistical judge over recorded canary and primary series (CSV rows
    /// `interval,metric,side,value[,total]`, see docs/judge.md) and say whether the run would
    /// have promoted or rolled back, counting failed checks against the Canary's threshold.
    #[arg(long, value_name = "SERIES.csv", conflicts_with = "fail_at")]
    pub replay: Option<PathBuf>,
}

pub fn run(args: &Args) -> ExitCode {
    if let Some(series) = &args.replay {
        return match specs(args).and_then(|specs| crate::replay::render_all(&specs, series)) {
            Ok(text) => {
                let _ = writeln!(std::io::stdout().lock(), "{}", text.trim_end());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match plans(args) {
        Ok(plans) => {
            let text = match args.output {
                Output::Json if plans.len() == 1 => serde_json::to_string_pretty(&plans[0]),
                Output::Json => serde_json::to_string_pretty(&plans),
                Output::Text => Ok(plans.iter().map(render).collect::<Vec<_>>().join("\n")),
            };
            match text {
                Ok(text) => {
                    // A closed pipe (`| head`) is the reader's choice, not an error worth a panic.
                    let _ = writeln!(std::io::stdout().lock(), "{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn plans(args: &Args) -> Result<Vec<Plan>, String> {
    Ok(specs(args)?
        .iter()
        .map(|spec| plan(spec, args.fail_at))
        .collect())
}

fn specs(args: &Args) -> Result<Vec<RolloutSpec>, String> {
    let path = args.file.display();
    let bytes = std::fs::read(&args.file).map_err(|e| format!("{path}: {e}"))?;
    // The api's reader bounds hostile input (alias bombs, deep nesting, huge files).
    let docs = parse_documents(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let settings = Settings {
        mesh_provider: args.mesh_provider.clone(),
        ..Settings::default()
    };
    let mut specs = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.get("kind").and_then(|k| k.as_str()) != Some("Canary") {
            continue;
        }
        let n = i + 1;
        let canary: Canary = serde_json::from_value(doc).map_err(|e| format!("{path}:{n}: {e}"))?;
        let spec = normalize(&canary, &settings).map_err(|e| format!("{path}:{n}: {e}"))?;
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(format!("{path}: no Canary document found"));
    }
    Ok(specs)
}

fn render(p: &Plan) -> String {
    let mut out = format!(
        "Canary {}.{} ({} strategy, interval {})\n",
        p.name,
        p.namespace,
        p.strategy,
        duration(p.interval_seconds)
    );
    if let Some(n) = p.fail_at {
        out.push_str(&format!("Checks fail from tick {n}\n"));
    }
    out.push_str(&format!(
        "{:>4}  {:>8}  {:<17} {:>7}  {:>6}  {:<24} {}\n",
        "TICK", "TIME", "PHASE", "ROUTES", "MIRROR", "WEBHOOKS", "CHECKS"
    ));
    for s in &p.steps {
        let mirror = if s.mirror_weight > 0 {
            format!("{}%", s.mirror_weight)
        } else {
            "-".into()
        };
        let hooks = if s.webhooks.is_empty() {
            "-".to_string()
        } else {
            s.webhooks.join(",")
        };
        let checks = if s.checks.is_empty() {
            "-".to_string()
        } else {
            s.checks.join(",")
        };
        out.push_str(&format!(
            "{:>4}  {:>8}  {:<17} {:>7}  {:>6}  {:<24} {}\n",
            s.tick,
            duration(s.elapsed_seconds),
            s.phase.as_str(),
            format!("{}/{}", s.primary_weight, s.canary_weight),
            mirror,
            hooks,
            checks
        ));
    }
    match p.promote_after_seconds {
        Some(t) => out.push_str(&format!(
            "Promotion after: {} (all checks passing; add the time the canary and the primary take to roll out)\n",
            duration(t)
        )),
        None => out.push_str("Promotion after: never (the run does not finish)\n"),
    }
    match p.rollback_after_seconds {
        Some(t) => out.push_str(&format!(
            "Rollback after:  {} (checks failing from tick {})\n",
            duration(t),
            p.fail_at.unwrap_or(1)
        )),
        None => out.push_str(
            "Rollback after:  never by checks (nothing can fail, or the threshold is beyond the plan's horizon)\n",
        ),
    }
    out
}
