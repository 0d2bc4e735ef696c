//! The canary's workloads as the cluster has them: the target Deployment or DaemonSet, its
//! `-primary` copy, tracked configs and Services. [`Workloads::load`] reads them once per tick;
//! [`observe`] turns them into the core's observation; the other modules write one owned object
//! kind each, applying what the pure `workload` module computes.

mod apply;
mod autoscaler;
mod configs;
mod error;
mod observe;
mod primary;
mod scaled_object;
mod scaling;
mod services;

use std::sync::Arc;

use flagger_api::Canary;
use flagger_providers::router;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{PodSpec, Service};
use kube::{Client, ResourceExt};

use crate::cache::Cache;
use crate::context::Context;
use crate::workload::Settings;
use crate::workload::configs::TrackedConfigs;
use crate::workload::selector::{self, SelectorLabel};
use crate::workload::service_target::Copy as ServiceCopy;

pub use crate::finalizer::FINALIZER;
pub use error::TargetError;
pub use observe::records_revision;
pub(crate) use observe::{observation, request_pending};

#[derive(Clone)]
enum Workload {
    Deployment(Box<Deployment>),
    DaemonSet(Box<DaemonSet>),
    /// A service-only canary: the target and primary are Services (see `workload::service_target`).
    Service(Box<Service>),
}

impl Workload {
    fn pod_spec(&self) -> Option<&PodSpec> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref()?.template.spec.as_ref(),
            Workload::DaemonSet(d) => d.spec.as_ref()?.template.spec.as_ref(),
            Workload::Service(_) => None,
        }
    }
}

/// One tick's view of a canary's workloads, and the writes that act on them.
pub struct Workloads {
    client: Client,
    cache: Arc<Cache>,
    namespace: String,
    settings: Settings,
    target: Workload,
    primary: Option<Workload>,
    selector: SelectorLabel,
    tracked: TrackedConfigs,
    router: router::Settings,
}

impl Workloads {
    pub async fn load(ctx: &Context, canary: &Canary) -> Result<Workloads, TargetError> {
        let namespace = canary.namespace().unwrap_or_default();
        let client = ctx.client.clone();
        let cache = ctx.cache.clone();
        let target_ref = &canary.spec.target_ref;
        let labels = &ctx.workloads.selector_labels;
        let missing = || TargetError::TargetNotFound {
            kind: target_ref.kind.clone(),
            name: target_ref.name.clone(),
            namespace: namespace.clone(),
        };
        let primary_name = canary.spec.primary_workload_name();
        let (target, primary, selector) = match target_ref.kind.as_str() {
            "Deployment" => {
                let target = cache
                    .get::<Deployment>(&client, &namespace, &target_ref.name)
                    .await?
                    .ok_or_else(missing)?;
                let primary = cache
                    .get::<Deployment>(&client, &namespace, &primary_name)
                    .await?;
                let selector = selector::of_deployment(&target, labels)?;
                (
                    Workload::Deployment(Box::new(target)),
                    primary.map(|p| Workload::Deployment(Box::new(p))),
                    selector,
                )
            }
            "DaemonSet" => {
                let target = cache
                    .get::<DaemonSet>(&client, &namespace, &target_ref.name)
                    .await?
                    .ok_or_else(missing)?;
                let primary = cache
                    .get::<DaemonSet>(&client, &namespace, &primary_name)
                    .await?;
                let selector = selector::of_daemonset(&target, labels)?;
                (
                    Workload::DaemonSet(Box::new(target)),
                    primary.map(|p| Workload::DaemonSet(Box::new(p))),
                    selector,
                )
            }
            "Service" => {
                let target = cache
                    .get::<Service>(&client, &namespace, &target_ref.name)
                    .await?
                    .ok_or_else(missing)?;
                let primary = cache
                    .get::<Service>(&client, &namespace, &ServiceCopy::Primary.name(canary))
                    .await?;
                // No pods of its own: the selector label is never read for a Service target.
                let selector = SelectorLabel {
                    key: String::new(),
                    value: String::new(),
                };
                (
                    Workload::Service(Box::new(target)),
                    primary.map(|p| Workload::Service(Box::new(p))),
                    selector,
                )
            }
            other => return Err(TargetError::UnsupportedKind(other.to_string())),
        };
        let tracked = if ctx.flags.enable_config_tracking {
            configs::tracked(&client, &cache, &namespace, canary, target.pod_spec()).await?
        } else {
            configs::tracked(&client, &cache, &namespace, canary, None).await?
        };
        Ok(Workloads {
            client,
            cache,
            namespace,
            settings: ctx.workloads.clone(),
            router: router::Settings {
                ingress_class: ctx.flags.ingress_class.clone(),
                ingress_annotations_prefix: ctx.flags.ingress_annotations_prefix.clone(),
            },
            target,
            primary,
            selector,
            tracked,
        })
    }
}
