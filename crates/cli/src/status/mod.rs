//! `flagger-rs status [NAME]`: where each canary's run is — phase, weights, step, checks against
//! their thresholds, what it waits on and when it should promote.

pub mod model;
pub mod render_text;
mod watch;

use std::process::ExitCode;

use flagger_api::Canary;
use kube::Api;
use kube::api::ListParams;

use crate::cluster::{CliError, ClusterArgs, api_error};
use crate::output::{Output, print, structured};
use flagger_core::Settings;
use model::{CanaryView, view_with};
use render_text::{Style, detail, table};

pub const CANARIES: &str = "canaries.flagger.app";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The canary to show (default: every canary in the namespace).
    pub name: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A', conflicts_with = "name")]
    pub all_namespaces: bool,
    /// Keep showing changes as the cluster reports them.
    #[arg(long, short = 'w')]
    pub watch: bool,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    /// The controller's `-min-analysis-interval`, which the time to promotion depends on.
    #[arg(long, default_value = "10s", value_parser = flagger_api::goflag::duration)]
    pub min_analysis_interval: std::time::Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl Args {
    fn settings(&self) -> Settings {
        Settings {
            min_interval: self.min_analysis_interval,
            ..Settings::default()
        }
    }
}

/// The arguments of the commands about one canary (`events`, `why`).
#[derive(Debug, clap::Args)]
pub struct OneCanaryArgs {
    /// The canary.
    pub name: String,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: &Args) -> ExitCode {
    crate::command::run_async(status(args))
}

/// Which canaries a command looks at: one namespace or all of them.
pub fn canaries_api(client: kube::Client, namespace: &str, all: bool) -> Api<Canary> {
    if all {
        Api::all(client)
    } else {
        Api::namespaced(client, namespace)
    }
}

/// One canary by name, its absence said as kubectl would.
pub async fn get_canary(
    api: &Api<Canary>,
    name: &str,
    namespace: &str,
) -> Result<Canary, CliError> {
    api.get(name)
        .await
        .map_err(|e| api_error(&e, "get", CANARIES, namespace))
}

async fn status(args: &Args) -> Result<(), CliError> {
    let cluster = args.cluster.connect().await?;
    let namespace = if args.all_namespaces {
        ""
    } else {
        cluster.namespace.as_str()
    };
    let api = canaries_api(cluster.client, namespace, args.all_namespaces);
    let settings = args.settings();
    if args.watch {
        return watch::watch(
            &api,
            args.name.as_deref(),
            namespace,
            args.output,
            &settings,
        )
        .await;
    }
    let now = jiff::Timestamp::now();
    let text = match &args.name {
        Some(name) => render_one(
            &view_with(&get_canary(&api, name, namespace).await?, &settings, now),
            args.output,
        )?,
        None => {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| api_error(&e, "list", CANARIES, namespace))?;
            let views: Vec<CanaryView> = list
                .items
                .iter()
                .map(|c| view_with(c, &settings, now))
                .collect();
            render_many(&views, args.output)?
        }
    };
    print(&text);
    Ok(())
}

pub fn render_one(v: &CanaryView, output: Output) -> Result<String, CliError> {
    match output {
        Output::Text => Ok(detail(v, Style::PLAIN)),
        _ => structured(v, output),
    }
}

pub fn render_many(views: &[CanaryView], output: Output) -> Result<String, CliError> {
    match output {
        Output::Text => Ok(table(views, Style::PLAIN)),
        _ => structured(&views, output),
    }
}
