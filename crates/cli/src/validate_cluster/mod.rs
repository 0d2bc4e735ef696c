//! `flagger-rs validate --cluster FILE…`: after the offline checks, each valid Canary of the files
//! is checked against the cluster as the controller's next analysis tick would check it: its
//! MetricTemplates and their Secrets are read, every query is rendered with the canary's real
//! `target`, `namespace`, `interval` and `variables` and run once against its provider, and the
//! answer is judged against the thresholds. Webhooks are not called (they have side effects):
//! their host is looked up and their token Secret read. AlertProviders are resolved, not sent to.
//!
//! The controller's own code does all of it (a [`Context`] without watch caches reads every
//! object with a GET), so what this prints is what a tick would do now. It only reads.

mod probe;
pub mod report;

use std::process::ExitCode;
use std::sync::Arc;

use flagger_api::{Canary, MetricTemplate};
use flagger_controller::context::Context;
use flagger_controller::flags::Flags;
use serde::Serialize;
use serde_json::Value;

use kube::Api;
use kube::api::ListParams;

use crate::cluster::{CliError, Cluster, api_error};
use crate::validate::{Args, Output};
use report::CanaryReport;

/// A Canary document of the files, with where it was read and whether the offline checks found
/// an error in it (the controller would refuse it, so it is not checked against the cluster).
pub struct FoundCanary {
    pub source: String,
    pub document: Value,
    pub invalid: bool,
}

/// Checks the canaries, prints the offline findings with the cluster report, and exits 0 only
/// when there was no offline error and every check of every canary would pass now.
pub fn run<F: Serialize>(
    args: &Args,
    findings: &[F],
    print_findings: impl FnOnce(),
    canaries: Vec<FoundCanary>,
    offline_failed: bool,
) -> ExitCode {
    let reports = crate::command::block_on(check_all(args, canaries)).and_then(|r| r);
    let reports = match reports {
        Ok(reports) => reports,
        Err(e) => {
            if args.output == Output::Text {
                print_findings();
            }
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pass = !offline_failed && reports.iter().all(|r| r.pass);
    match args.output {
        Output::Json => println!("{}", report::json(findings, &reports, pass)),
        Output::Text => {
            print_findings();
            print!("{}", report::text(&reports));
            let failing = reports.iter().filter(|r| !r.pass).count();
            eprintln!(
                "{} canar{} checked against the cluster: {failing} would not pass",
                reports.len(),
                if reports.len() == 1 { "y" } else { "ies" }
            );
        }
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn check_all(args: &Args, canaries: Vec<FoundCanary>) -> Result<Vec<CanaryReport>, CliError> {
    let cluster = args.cluster_args.connect().await?;
    reachable(&cluster).await?;
    let flags = controller_flags(args)?;
    let webhooks = flagger_controller::webhooks::Caller::new()
        .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
    let metrics = Arc::new(flagger_controller::metrics::Metrics::new(false));
    // No watch stores: every MetricTemplate, Secret and AlertProvider is read with a GET, and
    // nothing is recorded since no check here emits an event.
    let ctx = Context::new(cluster.client, flags, metrics, webhooks, None, None);
    let mut reports = Vec::new();
    for found in canaries {
        if found.invalid {
            eprintln!(
                "{}: not checked against the cluster: the offline checks found an error",
                found.source
            );
            continue;
        }
        let mut canary: Canary = match serde_json::from_value(found.document) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: not checked against the cluster: {e}", found.source);
                continue;
            }
        };
        if canary
            .metadata
            .namespace
            .as_deref()
            .is_none_or(str::is_empty)
        {
            canary.metadata.namespace = Some(cluster.namespace.clone());
        }
        reports.push(probe::check_canary(&ctx, &canary, found.source).await);
    }
    Ok(reports)
}

/// One read up front, so an unreachable cluster or missing CRDs are said once, not as the error
/// of every check. A user allowed to read objects by name only is not refused here.
async fn reachable(cluster: &Cluster) -> Result<(), CliError> {
    let api: Api<MetricTemplate> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(e) => Err(api_error(
            &e,
            "list",
            "metrictemplates.flagger.app",
            &cluster.namespace,
        )),
    }
}

/// The controller's flags at their defaults, with the ones `validate` takes as the controller
/// would be given them.
fn controller_flags(args: &Args) -> Result<Flags, CliError> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        flags: Flags,
    }
    let mut flags = <Defaults as clap::Parser>::try_parse_from(["flagger-rs"])
        .map_err(|e| CliError::Usage(format!("the controller's defaults: {e}")))?
        .flags;
    flags.mesh_provider = args.mesh_provider.clone();
    flags.metrics_server = args.metrics_server.clone();
    flags.no_cross_namespace_refs = args.no_cross_namespace_refs;
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> crate::validate::Args {
        let argv = args.iter().map(OsString::from).collect();
        match crate::parse(argv).map(|cli| cli.command) {
            Ok(crate::Command::Validate(parsed)) => parsed,
            _ => panic!("{args:?} is not validate"),
        }
    }

    #[test]
    fn the_cluster_is_chosen_with_kubectls_flags() {
        let args = parse(&[
            "flagger-rs",
            "validate",
            "--cluster",
            "--context",
            "staging",
            "-n",
            "test",
            "--kubeconfig",
            "/tmp/kc",
            "--metrics-server",
            "http://127.0.0.1:9090",
            "canary.yaml",
        ]);
        assert!(args.cluster);
        assert_eq!(args.cluster_args.context.as_deref(), Some("staging"));
        assert_eq!(args.cluster_args.namespace.as_deref(), Some("test"));
        assert_eq!(
            args.cluster_args.kubeconfig.as_deref(),
            Some(std::path::Path::new("/tmp/kc"))
        );
        assert_eq!(args.metrics_server, "http://127.0.0.1:9090");
        let flags = super::controller_flags(&args).unwrap();
        assert_eq!(flags.metrics_server, "http://127.0.0.1:9090");
        assert_eq!(
            flags.mesh_provider, "istio",
            "validate's default, as the controller's"
        );
        let offline = parse(&["flagger-rs", "validate", "canary.yaml"]);
        assert!(!offline.cluster);
        assert_eq!(offline.metrics_server, "http://prometheus:9090");
    }
}
