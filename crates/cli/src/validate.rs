//! `flagger-rs validate [FILE|DIR|-]...`: checks every flagger.app document in the given files.
//!
//! Documents of other groups (Deployments, Services, Flux objects) are skipped, never a reason to
//! fail. A `v1` `List` (what `kubectl get -o yaml` prints) is checked item by item, with paths
//! prefixed by `items[i]`. Exit status: 0 when no error was found (warnings and notes allowed), 1
//! otherwise, including unreadable or unparsable input.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use flagger_api::decode::{self, MAX_INPUT_BYTES, ReadError};
use flagger_api::validate::{self, Options, Severity};
use serde::Serialize;
use serde_json::Value;

use crate::validate_cluster::{self, FoundCanary};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories (walked for *.yaml, *.yml, *.json); `-` reads standard input.
    #[arg(value_name = "FILE|DIR|-", required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
    /// Provider of canaries without spec.provider, as the controller flag -mesh-provider.
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Report templateRef/providerRef/upstreamRef naming another namespace, as the controller
    /// flag -no-cross-namespace-refs does.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Do not print warnings and notes (they never affect the exit status).
    #[arg(long)]
    pub quiet: bool,
    /// Also check each Canary against the cluster, reading only: resolve its MetricTemplates,
    /// Secrets, AlertProviders and webhook hosts, run every metric query once as the next
    /// analysis tick would, and exit 1 unless every check would pass now.
    #[arg(long)]
    pub cluster: bool,
    #[command(flatten)]
    pub cluster_args: crate::cluster::ClusterArgs,
    /// With --cluster: the Prometheus of builtin and inline metrics of canaries without
    /// spec.metricsServer, as the controller flag -metrics-server.
    #[arg(long, default_value = "http://prometheus:9090")]
    pub metrics_server: String,
}

/// One reported line; `document` is 0 for problems of the whole file.
#[derive(Debug, Serialize)]
struct Finding {
    file: String,
    document: usize,
    kind: String,
    name: String,
    path: String,
    severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    message: String,
}

pub fn run(args: &Args) -> ExitCode {
    let opts = Options {
        default_provider: args.mesh_provider.clone(),
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        ..Options::default()
    };
    let mut findings = Vec::new();
    let mut canaries = Vec::new();
    let mut checked = 0usize;
    for input in &args.paths {
        for file in expand(input, &mut findings) {
            checked += check_file(&file, &opts, &mut findings, &mut canaries);
        }
    }
    if args.quiet {
        findings.retain(|f| f.severity == Severity::Error);
    }
    let failed = findings.iter().any(|f| f.severity == Severity::Error);
    if args.cluster {
        let print = || print_text(&findings, checked);
        return validate_cluster::run(args, &findings, print, canaries, failed);
    }
    match args.output {
        Output::Json => match serde_json::to_string_pretty(&findings) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot encode the findings as JSON: {e}"),
        },
        Output::Text => print_text(&findings, checked),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_text(findings: &[Finding], checked: usize) {
    for f in findings {
        let sev = match f.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
            Severity::Info => "note: ",
        };
        let path = if f.path.is_empty() {
            String::new()
        } else {
            format!(" {}:", f.path)
        };
        println!("{}:{}:{path} {sev}{}", f.file, f.document, f.message);
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    eprintln!(
        "{checked} flagger.app object(s) checked: {errors} error(s), {warnings} warning(s), {notes} note(s)"
    );
}

fn file_error(file: &str, message: String) -> Finding {
    Finding {
        file: file.to_string(),
        document: 0,
        kind: String::new(),
        name: String::new(),
        path: String::new(),
        severity: Severity::Error,
        reason: None,
        message,
    }
}

/// The files an argument stands for: itself, `-`, or the manifests under a directory (sorted,
/// symlinked directories not followed so a link cycle cannot loop).
fn expand(input: &Path, findings: &mut Vec<Finding>) -> Vec<PathBuf> {
    if input.as_os_str() == "-" {
        return vec![input.to_path_buf()];
    }
    let meta = match std::fs::metadata(input) {
        Ok(m) => m,
        Err(e) => {
            findings.push(file_error(
                &input.display().to_string(),
                format!("cannot read: {e}"),
            ));
            return Vec::new();
        }
    };
    if !meta.is_dir() {
        return vec![input.to_path_buf()];
    }
    let mut files = Vec::new();
    let mut pending = vec![input.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                findings.push(file_error(
                    &dir.display().to_string(),
                    format!("cannot read directory: {e}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                pending.push(path);
            } else if is_manifest(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

/// Reads at most one byte more than the limit, so an endless stream cannot exhaust memory.
fn read_limited(file: &Path) -> Result<Vec<u8>, String> {
    let limit = u64::try_from(MAX_INPUT_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    let result = if file.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// Checks one file; returns how many flagger.app objects it held.
/// Canary documents go to `canaries` too, for `--cluster`.
fn check_file(
    file: &Path,
    opts: &Options,
    findings: &mut Vec<Finding>,
    canaries: &mut Vec<FoundCanary>,
) -> usize {
    let name = if file.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        file.display().to_string()
    };
    let bytes = match read_limited(file) {
        Ok(b) => b,
        Err(e) => {
            findings.push(file_error(&name, e));
            return 0;
        }
    };
    let docs = match decode::parse_documents(&bytes) {
        Ok(d) => d,
        Err(e) => {
            let message = match e {
                ReadError::TooLarge { limit, .. } => {
                    format!("file is larger than the limit of {limit} bytes")
                }
                other => other.to_string(),
            };
            findings.push(file_error(&name, message));
            return 0;
        }
    };
    let mut checked = 0;
    for (i, doc) in docs.iter().enumerate() {
        let number = i + 1;
        for (prefix, item) in items(doc) {
            if !decode::is_flagger_document(item) {
                continue;
            }
            checked += 1;
            let decoded = validate::document(item, opts);
            if decoded.kind == "Canary" {
                canaries.push(FoundCanary {
                    source: format!("{name}:{number}{}", suffix(&prefix)),
                    document: item.clone(),
                    invalid: decoded
                        .problems
                        .iter()
                        .any(|p| p.severity == Severity::Error),
                });
            }
            for p in decoded.problems {
                findings.push(Finding {
                    file: name.clone(),
                    document: number,
                    kind: decoded.kind.clone(),
                    name: decoded.name.clone().unwrap_or_default(),
                    path: join(&prefix, &p.path),
                    severity: p.severity,
                    reason: p.reason,
                    message: p.message,
                });
            }
        }
    }
    checked
}

/// A document, or the items of a `v1` `List` with their path prefixes.
fn items(doc: &Value) -> Vec<(String, &Value)> {
    let is_list = doc.get("kind").and_then(Value::as_str) == Some("List")
        && doc.get("apiVersion").and_then(Value::as_str) == Some("v1");
    match doc.get("items").and_then(Value::as_array) {
        Some(items) if is_list => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("items[{i}]"), v))
            .collect(),
        _ => vec![(String::new(), doc)],
    }
}

/// ` items[i]` after `file:doc` for an item of a List.
fn suffix(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!(" {prefix}")
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}
