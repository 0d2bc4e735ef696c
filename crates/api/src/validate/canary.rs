//! Canary: metadata, provider, references and derived names; `service` and `analysis` are
//! checked by their own modules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::fields;
use super::names;
use super::problems::Problems;
use super::providers;
use super::{Options, Problem, analysis, reason, service};
use crate::canary::{Canary, CanarySpec, KindRef, PROVIDERS};

/// How the run proceeds, as the controller selects it every tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    Canary,
    BlueGreen,
    AbTesting,
}

/// Facts derived once and used by every part of the check.
pub(crate) struct Context<'a> {
    pub opts: &'a Options,
    pub namespace: Option<&'a str>,
    /// The effective provider; `None` when `spec.provider` is not a known value.
    pub provider: Option<String>,
    pub strategy: Strategy,
    /// `targetRef` is a Deployment or DaemonSet: the controller generates Services for it.
    pub workload_target: bool,
}

pub fn canary(c: &Canary, opts: &Options) -> Vec<Problem> {
    let mut p = Problems::default();
    object_meta(&mut p, &c.metadata);
    super::request::check(&mut p, &c.metadata);
    let ctx = context(&mut p, &c.spec, c.metadata.namespace.as_deref(), opts);
    spec(&mut p, &c.spec, &ctx);
    service::check(&mut p, &c.spec, &ctx);
    analysis::check(&mut p, &c.spec, &ctx);
    p.into_vec()
}

/// `metadata.name` and `metadata.namespace`, as the API server checks them for every object.
pub(crate) fn object_meta(p: &mut Problems, meta: &ObjectMeta) {
    match meta.name.as_deref() {
        None | Some("") => p.schema("metadata.name", "required"),
        Some(name) => {
            if let Err(e) = names::dns1123_subdomain(name) {
                p.schema("metadata.name", e);
            }
        }
    }
    if let Some(ns) = meta.namespace.as_deref()
        && let Err(e) = names::dns1123_label(ns)
    {
        p.schema("metadata.namespace", e);
    }
}

fn context<'a>(
    p: &mut Problems,
    spec: &CanarySpec,
    namespace: Option<&'a str>,
    opts: &'a Options,
) -> Context<'a> {
    let provider = match spec.provider.as_deref() {
        Some(given) if !PROVIDERS.contains(&given) => {
            let hint = if given == "gatewayapi" {
                " (write gatewayapi:v1 or gatewayapi:v1beta1)".to_string()
            } else {
                format!(" (one of {})", PROVIDERS.join(", "))
            };
            p.schema("spec.provider", format!("unknown provider {given:?}{hint}"));
            None
        }
        given => Some(providers::effective(given, &opts.default_provider)),
    };
    if let Some(pr) = provider.as_deref()
        && !providers::runs(pr)
    {
        let source = if spec.provider.is_some() {
            ""
        } else {
            " (the -mesh-provider default)"
        };
        p.error(
            reason::NOT_IMPLEMENTED,
            "spec.provider",
            format!("provider {pr}{source} is not implemented by flagger-rs yet; the canary is left untouched"),
        );
    }
    let a = &spec.analysis;
    let iterations = a.iterations.as_ref().and_then(|n| n.integer()).unwrap_or(0);
    let has_match = !a.matches().is_empty();
    let strategy = if provider.as_deref() == Some("kubernetes") {
        Strategy::BlueGreen
    } else if iterations > 0 && has_match {
        Strategy::AbTesting
    } else if iterations > 0 {
        Strategy::BlueGreen
    } else {
        Strategy::Canary
    };
    Context {
        opts,
        namespace,
        provider,
        strategy,
        workload_target: matches!(spec.target_ref.kind.as_str(), "Deployment" | "DaemonSet"),
    }
}

fn spec(p: &mut Problems, spec: &CanarySpec, ctx: &Context) {
    if let Some(url) = spec.metrics_server.as_deref()
        && let Err(e) = fields::http_url(url)
    {
        p.invalid("spec.metricsServer", e);
    }
    if let Some(n) = spec.progress_deadline_seconds.as_ref()
        && let Some(secs) = fields::integer(p, "spec.progressDeadlineSeconds", n)
        && !(1..=i64::from(i32::MAX)).contains(&secs)
    {
        p.invalid(
            "spec.progressDeadlineSeconds",
            format!("must be a positive number of seconds, got {secs}"),
        );
    }
    target_ref(p, spec, ctx);
    autoscaler_ref(p, spec);
    kind_ref(p, "spec.ingressRef", spec.ingress_ref.as_ref(), "Ingress");
    kind_ref(p, "spec.routeRef", spec.route_ref.as_ref(), "ApisixRoute");
    if let Some(u) = spec.upstream_ref.as_ref() {
        required_fields(p, "spec.upstreamRef", &u.api_version, &u.kind, &u.name);
        if !u.kind.is_empty() && u.kind != "Upstream" {
            p.schema(
                "spec.upstreamRef.kind",
                format!("unsupported kind {:?} (must be Upstream)", u.kind),
            );
        }
        fields::namespace_ref(
            p,
            "spec.upstreamRef.namespace",
            u.namespace.as_deref(),
            ctx.namespace,
            ctx.opts.no_cross_namespace_refs,
        );
    }
    provider_requirements(p, spec, ctx);
    // The default, as in Flagger, so a note rather than a warning: true of every such Canary,
    // and the apex Service is deleted only when flagger-rs created it (a user's stays).
    if ctx.workload_target && spec.revert_on_deletion != Some(true) {
        p.note(
            reason::APEX_SERVICE_OWNED,
            "spec.revertOnDeletion",
            "not set: deleting this Canary leaves the target scaled to zero and deletes the primary and the Services flagger-rs created (an apex Service that was yours stays, selecting no pods until you change its selector)",
        );
    }
}

fn required_fields(p: &mut Problems, path: &str, api_version: &str, kind: &str, name: &str) {
    for (field, value) in [("apiVersion", api_version), ("kind", kind), ("name", name)] {
        if value.is_empty() {
            p.schema(format!("{path}.{field}"), "required");
        }
    }
}

fn target_ref(p: &mut Problems, spec: &CanarySpec, ctx: &Context) {
    let t = &spec.target_ref;
    required_fields(p, "spec.targetRef", &t.api_version, &t.kind, &t.name);
    if !t.kind.is_empty() && !matches!(t.kind.as_str(), "Deployment" | "DaemonSet" | "Service") {
        p.schema(
            "spec.targetRef.kind",
            format!(
                "unsupported kind {:?} (must be Deployment, DaemonSet or Service)",
                t.kind
            ),
        );
    }
    let knative_target = t.is_knative_service();
    if t.kind == "Service" && !knative_target {
        service_target(p, spec, ctx);
    }
    if !t.name.is_empty() {
        if let Err(e) = names::dns1123_subdomain(&t.name) {
            p.invalid("spec.targetRef.name", e);
        } else if let Err(e) = names::dns1123_subdomain(&spec.primary_workload_name()) {
            p.invalid(
                "spec.targetRef.name",
                format!("the primary workload name is invalid: {e}"),
            );
        }
    }
    if ctx.workload_target && !t.api_version.is_empty() && t.api_version != "apps/v1" {
        p.warn(
            reason::IGNORED,
            "spec.targetRef.apiVersion",
            format!(
                "{:?} is not apps/v1; the controller reads the {} from apps/v1",
                t.api_version, t.kind
            ),
        );
    }
    let knative_provider = ctx.provider.as_deref() == Some("knative");
    if let Some(other) = ctx
        .provider
        .as_deref()
        .filter(|_| knative_target && !knative_provider)
    {
        p.error(
            reason::KNATIVE_MISMATCH,
            "spec.provider",
            format!("a Knative Service target requires the knative provider, not {other}"),
        );
    }
    if knative_provider && !knative_target && !t.kind.is_empty() {
        p.error(
            reason::KNATIVE_MISMATCH,
            "spec.targetRef",
            "the knative provider requires a Knative Service target (apiVersion serving.knative.dev/v1, kind Service)",
        );
    }
    if knative_target && spec.autoscaler_ref.is_some() {
        p.error(
            reason::KNATIVE_MISMATCH,
            "spec.autoscalerRef",
            "not supported with a Knative Service target",
        );
    }
}

/// A service-only canary copies the target Service to `-primary` and `-canary`: it runs with the routers
/// that route to those Services by name and need nothing from the pods (the kubernetes provider, whose
/// apex is the target itself, and Gateway API).
fn service_target(p: &mut Problems, spec: &CanarySpec, ctx: &Context) {
    if let Some(pr) = ctx.provider.as_deref()
        && !providers::runs_service_target(pr)
    {
        p.error(
            reason::NOT_IMPLEMENTED,
            "spec.targetRef.kind",
            format!("a Service target runs with the kubernetes and gatewayapi providers in flagger-rs, not with {pr}; the canary is left untouched"),
        );
    }
    if spec.autoscaler_ref.is_some() {
        p.invalid(
            "spec.autoscalerRef",
            "not supported with a Service target: there is no workload to scale",
        );
    }
    let port = spec.service.as_ref().and_then(|s| s.port.integer());
    if ctx
        .provider
        .as_deref()
        .is_some_and(providers::is_gateway_api)
        && port.is_none_or(|n| n <= 0)
    {
        p.invalid(
            "spec.service.port",
            "must be > 0: the HTTPRoute sends to the -primary and -canary copies of the target on this port",
        );
    }
}

fn autoscaler_ref(p: &mut Problems, spec: &CanarySpec) {
    let Some(a) = spec.autoscaler_ref.as_ref() else {
        return;
    };
    required_fields(p, "spec.autoscalerRef", &a.api_version, &a.kind, &a.name);
    if !a.kind.is_empty() && !matches!(a.kind.as_str(), "HorizontalPodAutoscaler" | "ScaledObject")
    {
        p.schema(
            "spec.autoscalerRef.kind",
            format!(
                "unsupported kind {:?} (must be HorizontalPodAutoscaler or ScaledObject)",
                a.kind
            ),
        );
    }
    if !a.name.is_empty()
        && let Err(e) = names::dns1123_subdomain(&format!("{}-primary", a.name))
    {
        p.invalid(
            "spec.autoscalerRef.name",
            format!("the primary autoscaler name is invalid: {e}"),
        );
    }
    if a.primary_scaler_queries.is_some() && a.kind == "HorizontalPodAutoscaler" {
        p.warn(
            reason::IGNORED,
            "spec.autoscalerRef.primaryScalerQueries",
            "used only with a ScaledObject",
        );
    }
    let Some(r) = a.primary_scaler_replicas.as_ref() else {
        return;
    };
    let base = "spec.autoscalerRef.primaryScalerReplicas";
    for (field, v) in [
        ("minReplicas", r.min_replicas),
        ("maxReplicas", r.max_replicas),
    ] {
        if let Some(v) = v
            && v < 1
        {
            p.schema(
                format!("{base}.{field}"),
                format!("must be at least 1, got {v}"),
            );
        }
    }
    if let (Some(min), Some(max)) = (r.min_replicas, r.max_replicas)
        && min > max
    {
        p.invalid(
            format!("{base}.minReplicas"),
            format!("{min} is greater than maxReplicas {max}"),
        );
    }
}

fn kind_ref(p: &mut Problems, path: &str, r: Option<&KindRef>, kind: &str) {
    let Some(r) = r else { return };
    required_fields(p, path, &r.api_version, &r.kind, &r.name);
    if !r.kind.is_empty() && r.kind != kind {
        p.schema(
            format!("{path}.kind"),
            format!("unsupported kind {:?} (must be {kind})", r.kind),
        );
    }
}

/// References and settings a router cannot work without (reason `InvalidSpec`).
fn provider_requirements(p: &mut Problems, spec: &CanarySpec, ctx: &Context) {
    let Some(provider) = ctx.provider.as_deref() else {
        return;
    };
    match provider {
        "nginx" | "skipper" if spec.ingress_ref.is_none() => {
            p.invalid(
                "spec.ingressRef",
                format!("required with the {provider} provider"),
            );
        }
        "apisix" if spec.route_ref.is_none() => {
            p.invalid("spec.routeRef", "required with the apisix provider");
        }
        "appmesh"
            if spec
                .service
                .as_ref()
                .is_some_and(|s| s.mesh_name.as_deref().unwrap_or("").is_empty()) =>
        {
            p.invalid(
                "spec.service.meshName",
                "required with the appmesh provider",
            );
        }
        _ => {}
    }
    if spec.upstream_ref.is_some() && provider != "gloo" {
        p.warn(
            reason::IGNORED,
            "spec.upstreamRef",
            format!("used only by the gloo provider, not {provider}"),
        );
    }
}
