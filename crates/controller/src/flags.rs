//! The controller's command line: Flagger's flags, names and defaults, plus flagger-rs's own.

use std::time::Duration;

use clap::Args;
use flagger_api::goflag;

/// `flagger-rs controller` flags. Flagger's chart passes them Go-style (`-mesh-provider=istio`);
/// the binary rewrites those to `--mesh-provider=istio` before parsing.
#[derive(Args, Clone, Debug)]
pub struct Flags {
    /// Path to a kubeconfig. Only required if out-of-cluster.
    #[arg(long, env = "KUBECONFIG", default_value = "")]
    pub kubeconfig: String,
    /// Kubernetes API server address; overrides the kubeconfig.
    #[arg(long, default_value = "")]
    pub master: String,
    /// Client-side request rate towards the API server, per second (0: client-go's 5; negative:
    /// unlimited).
    #[arg(
        long = "kubeconfig-qps",
        default_value_t = 100,
        allow_negative_numbers = true
    )]
    pub kubeconfig_qps: i32,
    /// Requests the client may send at once before `-kubeconfig-qps` paces them (0: client-go's 10).
    #[arg(
        long = "kubeconfig-burst",
        default_value_t = 250,
        allow_negative_numbers = true
    )]
    pub kubeconfig_burst: i32,
    /// Kubeconfig of the cluster that holds the service mesh objects (accepted, not acted on:
    /// flagger-rs reads and writes every object through the `-kubeconfig` cluster's client).
    #[arg(long = "kubeconfig-service-mesh", default_value = "")]
    pub kubeconfig_service_mesh: String,
    /// Prometheus URL for builtin and inline metric queries.
    #[arg(long = "metrics-server", default_value = "http://prometheus:9090")]
    pub metrics_server: String,
    /// Flagger's resync period: every canary is reconciled at least this often (from the watch
    /// caches, so an idle canary costs no API request); watch events and analysis ticks come sooner.
    #[arg(long = "control-loop-interval", default_value = "10s", value_parser = goflag::duration)]
    pub control_loop_interval: Duration,
    /// debug, info, warning or error.
    #[arg(long = "log-level", default_value = "debug")]
    pub log_level: String,
    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "8080")]
    pub port: u16,
    #[arg(long = "slack-url", env = "SLACK_URL", default_value = "")]
    pub slack_url: String,
    #[arg(long = "slack-token", env = "SLACK_TOKEN", default_value = "")]
    pub slack_token: String,
    #[arg(long = "slack-proxy-url", env = "SLACK_PROXY_URL", default_value = "")]
    pub slack_proxy_url: String,
    #[arg(long = "slack-user", default_value = "flagger")]
    pub slack_user: String,
    /// Flagger disables global Slack alerts when this is empty; flagger-rs posts to `general`.
    #[arg(long = "slack-channel", default_value = "general")]
    pub slack_channel: String,
    #[arg(long = "msteams-url", env = "MSTEAMS_URL", default_value = "")]
    pub msteams_url: String,
    #[arg(
        long = "msteams-proxy-url",
        env = "MSTEAMS_PROXY_URL",
        default_value = ""
    )]
    pub msteams_proxy_url: String,
    /// Webhook that receives every event.
    #[arg(long = "event-webhook", env = "EVENT_WEBHOOK_URL", default_value = "")]
    pub event_webhook: String,
    /// Added as a first `Cluster` field to every alert.
    #[arg(long = "cluster-name", default_value = "")]
    pub cluster_name: String,
    /// Canaries that decide and write at once. Default: enough to keep the -kubeconfig-qps budget
    /// busy under load (QPS × 0.6 s, at least 2).
    #[arg(long)]
    pub threadiness: Option<u16>,
    /// Accepted, not acted on: flagger-rs has one process-wide logger (`-log-level`, `-zap-encoding`).
    #[arg(long = "zap-replace-globals", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = goflag::bool)]
    pub zap_replace_globals: bool,
    /// json or console.
    #[arg(long = "zap-encoding", default_value = "json")]
    pub zap_encoding: String,
    /// Watch Canaries in this namespace only.
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// Router used when a Canary has no `spec.provider`.
    #[arg(long = "mesh-provider", default_value = "istio")]
    pub mesh_provider: String,
    /// Pod labels that select a workload's pods, tried in order.
    #[arg(
        long = "selector-labels",
        default_value = "app,name,app.kubernetes.io/name"
    )]
    pub selector_labels: String,
    #[arg(
        long = "ingress-annotations-prefix",
        default_value = "nginx.ingress.kubernetes.io"
    )]
    pub ingress_annotations_prefix: String,
    /// The ingress class of the HTTPProxy objects the contour router writes.
    #[arg(long = "ingress-class", default_value = "")]
    pub ingress_class: String,
    #[arg(long = "enable-leader-election", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = goflag::bool)]
    pub enable_leader_election: bool,
    #[arg(long = "leader-election-namespace", default_value = "kube-system")]
    pub leader_election_namespace: String,
    /// How long a Lease holder's claim lasts without renewal; a follower takes over after it. Flagger's value by
    /// default; lower (with the two below) where a quick hand-over matters more than API traffic.
    #[arg(long = "leader-election-lease-duration", default_value = "60s", value_parser = goflag::duration)]
    pub leader_election_lease_duration: Duration,
    /// The leader stops acting when it could not renew its Lease for this long (less than the lease duration).
    #[arg(long = "leader-election-renew-deadline", default_value = "15s", value_parser = goflag::duration)]
    pub leader_election_renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew the Lease.
    #[arg(long = "leader-election-retry-period", default_value = "5s", value_parser = goflag::duration)]
    pub leader_election_retry_period: Duration,
    #[arg(long = "enable-config-tracking", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = goflag::bool)]
    pub enable_config_tracking: bool,
    /// Refuse MetricTemplate, AlertProvider and Upstream references into other namespaces.
    #[arg(long = "no-cross-namespace-refs", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = goflag::bool)]
    pub no_cross_namespace_refs: bool,
    /// Label prefixes copied from the target to the primary (comma list, `*` = all).
    #[arg(long = "include-label-prefix", default_value = "")]
    pub include_label_prefix: String,
    /// Decide and report as usual, change nothing (seed: controller dry-run mode).
    #[arg(long = "dry-run", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = goflag::bool)]
    pub dry_run: bool,
    /// Floor of `analysis.interval`; lower it only on test clusters.
    #[arg(long = "min-analysis-interval", default_value = "10s", value_parser = goflag::duration)]
    pub min_analysis_interval: Duration,
}

impl Flags {
    pub fn selector_labels(&self) -> Vec<String> {
        split_list(&self.selector_labels)
    }

    pub fn include_label_prefixes(&self) -> Vec<String> {
        split_list(&self.include_label_prefix)
    }

    /// One start-up warning per flag that was given but is not acted on, each naming the flag:
    /// accepting a flag silently would let a user believe it works.
    pub fn not_acted_on(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.kubeconfig_service_mesh.is_empty() {
            warnings.push(format!(
                "-kubeconfig-service-mesh={} is not acted on: flagger-rs reads and writes mesh objects \
                 through the -kubeconfig cluster's client, not a separate mesh cluster",
                self.kubeconfig_service_mesh
            ));
        }
        if !self.ingress_class.is_empty() && self.mesh_provider != "contour" {
            warnings.push(format!(
                "-ingress-class={} has no effect with mesh provider {}: only the contour router reads \
                 it (canaries with spec.provider: contour)",
                self.ingress_class, self.mesh_provider
            ));
        }
        if self.zap_replace_globals {
            warnings.push(
                "-zap-replace-globals has no effect: flagger-rs always logs through one \
                 process-wide logger set by -log-level and -zap-encoding"
                    .to_string(),
            );
        }
        warnings
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Flags as the command line `controller <args>` gives them, for tests anywhere in the crate.
#[cfg(test)]
pub(crate) fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }
    Cli::try_parse_from(std::iter::once("controller").chain(args.iter().copied())).map(|c| c.flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_flaggers() {
        let flags = parse(&[]).unwrap();
        assert_eq!(flags.mesh_provider, "istio");
        assert_eq!(flags.metrics_server, "http://prometheus:9090");
        assert_eq!(flags.port, 8080);
        assert_eq!(
            flags.selector_labels(),
            ["app", "name", "app.kubernetes.io/name"]
        );
        assert_eq!(flags.leader_election_namespace, "kube-system");
        assert_eq!(
            flags.leader_election_lease_duration,
            Duration::from_secs(60)
        );
        assert_eq!(
            flags.leader_election_renew_deadline,
            Duration::from_secs(15)
        );
        assert_eq!(flags.leader_election_retry_period, Duration::from_secs(5));
        assert!(flags.enable_config_tracking);
        assert!(!flags.enable_leader_election);
        assert!(!flags.dry_run);
        assert_eq!(flags.control_loop_interval, Duration::from_secs(10));
        assert_eq!(flags.min_analysis_interval, Duration::from_secs(10));
    }

    #[test]
    fn bools_take_go_forms() {
        let flags = parse(&[
            "--enable-leader-election",
            "--enable-config-tracking=false",
            "--dry-run=true",
        ])
        .unwrap();
        assert!(flags.enable_leader_election);
        assert!(!flags.enable_config_tracking);
        assert!(flags.dry_run);
    }

    #[test]
    fn durations_are_go_durations() {
        let flags = parse(&[
            "--min-analysis-interval=1s",
            "--control-loop-interval",
            "1m30s",
        ])
        .unwrap();
        assert_eq!(flags.min_analysis_interval, Duration::from_secs(1));
        assert_eq!(flags.control_loop_interval, Duration::from_secs(90));
        assert!(parse(&["--min-analysis-interval=soon"]).is_err());
    }

    #[test]
    fn client_rate_flags_take_go_ints() {
        let flags = parse(&["--kubeconfig-qps=-1", "--kubeconfig-burst", "-5"]).unwrap();
        assert_eq!((flags.kubeconfig_qps, flags.kubeconfig_burst), (-1, -5));
        let flags = parse(&[]).unwrap();
        assert_eq!((flags.kubeconfig_qps, flags.kubeconfig_burst), (100, 250));
    }

    #[test]
    fn flags_given_and_not_acted_on_are_named_in_a_warning() {
        assert_eq!(parse(&[]).unwrap().not_acted_on(), Vec::<String>::new());
        let warning = |args: &[&str]| {
            let warnings = parse(args).unwrap().not_acted_on();
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            warnings[0].clone()
        };
        let mesh = warning(&["--kubeconfig-service-mesh=/tmp/istio-host/kubeconfig"]);
        assert!(
            mesh.starts_with("-kubeconfig-service-mesh=/tmp/istio-host/kubeconfig is not acted on"),
            "{mesh}"
        );
        let class = warning(&["--ingress-class=contour", "--mesh-provider=kubernetes"]);
        assert!(
            class.starts_with("-ingress-class=contour has no effect with mesh provider kubernetes"),
            "{class}"
        );
        let zap = warning(&["--zap-replace-globals"]);
        assert!(
            zap.starts_with("-zap-replace-globals has no effect"),
            "{zap}"
        );
        assert_eq!(
            parse(&["--zap-replace-globals=false"])
                .unwrap()
                .not_acted_on(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_flags_fail() {
        let error = parse(&["--mesh-provder=istio"]).unwrap_err();
        assert!(error.to_string().contains("mesh-provder"), "{error}");
    }
}
