//! The controller's command line: Flagger's flags, names and defaults, plus flagger-rs's own.

use std::time::Duration;

use clap::Args;

fn go_duration(text: &str) -> Result<Duration, String> {
    flagger_api::duration::parse(text).map_err(|e| e.to_string())
}

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
    /// Client-side request rate towards the API server.
    #[arg(long = "kubeconfig-qps", default_value_t = 100)]
    pub kubeconfig_qps: u32,
    #[arg(long = "kubeconfig-burst", default_value_t = 250)]
    pub kubeconfig_burst: u32,
    /// Kubeconfig of the cluster that holds the service mesh objects.
    #[arg(long = "kubeconfig-service-mesh", default_value = "")]
    pub kubeconfig_service_mesh: String,
    /// Prometheus URL for builtin and inline metric queries.
    #[arg(long = "metrics-server", default_value = "http://prometheus:9090")]
    pub metrics_server: String,
    /// Flagger's resync period; flagger-rs is event driven and uses it only as a safety resync.
    #[arg(long = "control-loop-interval", default_value = "10s", value_parser = go_duration)]
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
    /// Flagger disables global Slack alerts when this is empty; flagger-rs posts to `general` (D-30).
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
    /// Canaries reconciled concurrently.
    #[arg(long, default_value_t = 2)]
    pub threadiness: u16,
    #[arg(long = "zap-replace-globals", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
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
    #[arg(long = "ingress-class", default_value = "")]
    pub ingress_class: String,
    #[arg(long = "enable-leader-election", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub enable_leader_election: bool,
    #[arg(long = "leader-election-namespace", default_value = "kube-system")]
    pub leader_election_namespace: String,
    /// How long a Lease holder's claim lasts without renewal; a follower takes over after it. Flagger's value by
    /// default; lower (with the two below) where a quick hand-over matters more than API traffic.
    #[arg(long = "leader-election-lease-duration", default_value = "60s", value_parser = go_duration)]
    pub leader_election_lease_duration: Duration,
    /// The leader stops acting when it could not renew its Lease for this long (less than the lease duration).
    #[arg(long = "leader-election-renew-deadline", default_value = "15s", value_parser = go_duration)]
    pub leader_election_renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew the Lease.
    #[arg(long = "leader-election-retry-period", default_value = "5s", value_parser = go_duration)]
    pub leader_election_retry_period: Duration,
    #[arg(long = "enable-config-tracking", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true")]
    pub enable_config_tracking: bool,
    /// Refuse MetricTemplate, AlertProvider and Upstream references into other namespaces.
    #[arg(long = "no-cross-namespace-refs", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub no_cross_namespace_refs: bool,
    /// Label prefixes copied from the target to the primary (comma list, `*` = all).
    #[arg(long = "include-label-prefix", default_value = "")]
    pub include_label_prefix: String,
    /// Decide and report as usual, change nothing (seed: controller dry-run mode).
    #[arg(long = "dry-run", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub dry_run: bool,
    /// Floor of `analysis.interval`; lower it only on test clusters.
    #[arg(long = "min-analysis-interval", default_value = "10s", value_parser = go_duration)]
    pub min_analysis_interval: Duration,
}

impl Flags {
    pub fn selector_labels(&self) -> Vec<String> {
        split_list(&self.selector_labels)
    }

    pub fn include_label_prefixes(&self) -> Vec<String> {
        split_list(&self.include_label_prefix)
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Cli::try_parse_from(std::iter::once("controller").chain(args.iter().copied()))
            .map(|c| c.flags)
    }

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
    fn unknown_flags_fail() {
        let error = parse(&["--mesh-provder=istio"]).unwrap_err();
        assert!(error.to_string().contains("mesh-provder"), "{error}");
    }
}
