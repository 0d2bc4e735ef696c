//! `flagger-fuzz`: generated manifests and templates through the code `flagger-rs` runs on
//! user input, built in the shipped profile (`--profile dist`, where a panic aborts) so that
//! any panic ends the run with the input that caused it, and a watchdog ends it when one input
//! takes longer than the per-input limit.
//!
//! Usage: `flagger-fuzz [--manifests N] [--templates N] [--seconds S] [--seed X] [--limit S]
//! [SEED_DIR...]`, or `flagger-fuzz --replay FILE` to run one input a failed run saved. Each phase stops at its count or at its half of `--seconds` (0: no time
//! bound), whichever comes first; the counts and rates are printed at the end.

mod mutate;
mod rng;
mod seeds;
mod targets;
mod templates;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rng::Rng;
use targets::{Reach, Targets};

struct Config {
    manifests: u64,
    templates: u64,
    seconds: u64,
    seed: u64,
    limit: u64,
    dirs: Vec<PathBuf>,
    /// A file saved by an earlier run, to run alone.
    replay: Option<PathBuf>,
}

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        manifests: 1_000_000,
        templates: 100_000,
        seconds: 0,
        seed: 1,
        limit: 2,
        dirs: Vec::new(),
        replay: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--replay" {
            config.replay = args.next().map(PathBuf::from);
            continue;
        }
        let slot = match arg.as_str() {
            "--manifests" => &mut config.manifests,
            "--templates" => &mut config.templates,
            "--seconds" => &mut config.seconds,
            "--seed" => &mut config.seed,
            "--limit" => &mut config.limit,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            dir => {
                config.dirs.push(PathBuf::from(dir));
                continue;
            }
        };
        let value = args.next().ok_or_else(|| format!("{arg} needs a number"))?;
        *slot = value.parse().map_err(|e| format!("{arg} {value}: {e}"))?;
    }
    if config.dirs.is_empty() {
        config.dirs = seeds::default_dirs();
    }
    Ok(config)
}

/// When a phase given `share` of the run must stop.
fn deadline(seconds: u64, share: u64) -> Option<Instant> {
    (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds * share / 2))
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flagger-fuzz: {e}");
            return ExitCode::from(64);
        }
    };
    let seeds = match seeds::load(&config.dirs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flagger-fuzz: {e}");
            return ExitCode::from(66);
        }
    };
    let current = watchdog::install(Duration::from_secs(config.limit));
    let targets = Targets::new();
    if let Some(file) = &config.replay {
        return replay(file, &targets, &current);
    }
    let mut rng = Rng::new(config.seed);
    eprintln!(
        "flagger-fuzz: seed {}, {} seed documents, {} seed templates, per-input limit {}s",
        config.seed,
        seeds.documents.len(),
        seeds.templates.len(),
        config.limit
    );

    let start = Instant::now();
    let stop = deadline(config.seconds, 1);
    let mut reach = Reach::default();
    let mut manifests = 0u64;
    while reach.objects() < config.manifests && !past(stop) {
        let input = manifest(&mut rng, &seeds);
        current.begin("manifest", &input);
        targets.manifest(&input, &mut reach);
        manifests += 1;
    }
    let manifest_time = start.elapsed();

    let start = Instant::now();
    let stop = deadline(config.seconds, 1);
    let mut count = 0u64;
    while count < config.templates && !past(stop) {
        let text = templates::generate(&mut rng, &seeds.templates);
        current.begin("template", text.as_bytes());
        if let Err(e) = targets.template(&text) {
            eprintln!("flagger-fuzz: {e}, on the template:\n{text}");
            return ExitCode::from(3);
        }
        count += 1;
    }
    let template_time = start.elapsed();

    let rate = |n: u64, t: Duration| n as f64 / t.as_secs_f64().max(1e-9);
    println!(
        "objects: {} in {:.1}s ({:.0}/s) from {manifests} generated files ({} documents): {} Canaries ({} normalized and planned), {} MetricTemplates, {} AlertProviders, {} valid",
        reach.objects(),
        manifest_time.as_secs_f64(),
        rate(reach.objects(), manifest_time),
        reach.documents,
        reach.canaries,
        reach.planned,
        reach.metric_templates,
        reach.alert_providers,
        reach.valid
    );
    println!(
        "templates: {count} in {:.1}s ({:.0}/s), each through both parsers and both renderers",
        template_time.as_secs_f64(),
        rate(count, template_time)
    );
    println!("no panic, no input over {}s", config.limit);
    ExitCode::SUCCESS
}

/// Runs one saved input both as a manifest and as a template.
fn replay(file: &std::path::Path, targets: &Targets, current: &watchdog::Current) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("flagger-fuzz: {}: {e}", file.display());
            return ExitCode::from(66);
        }
    };
    current.begin("replayed", &bytes);
    targets.manifest(&bytes, &mut Reach::default());
    match targets.template(&String::from_utf8_lossy(&bytes)) {
        Ok(()) => {
            println!("{}: no panic, no hang", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flagger-fuzz: {e}");
            ExitCode::from(3)
        }
    }
}

/// One generated manifest: a seed document changed in a few places, written as JSON (which the
/// YAML reader also reads) or, now and then, a seed file's text damaged byte by byte.
fn manifest(rng: &mut Rng, seeds: &seeds::Seeds) -> Vec<u8> {
    if rng.chance(10) {
        let text = rng.pick(&seeds.texts).cloned().unwrap_or_default();
        return mutate::mutate_text(rng, &text).into_bytes();
    }
    let mut doc = rng
        .pick(&seeds.objects)
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    for _ in 0..=rng.below(6) {
        mutate::mutate_value(rng, &mut doc, &seeds.documents);
    }
    let text = serde_json::to_vec(&doc).unwrap_or_default();
    if rng.chance(10) {
        mutate::mutate_text(rng, &text).into_bytes()
    } else {
        text
    }
}
