//! Carrying out the actions of one tick, in order. The first failing effect ends the tick; every
//! effect is an apply of a desired state, so the next tick simply tries again.
//!
//! What leaves the cluster (alerts, event webhooks, post-rollout hooks) and the run counters are held
//! back until the tick's status is written: a controller killed in between repeats
//! the transition, whose effects are idempotent, but does not announce it twice; a tick whose effects or
//! status write fail announces nothing. Kubernetes Events are recorded as the tick goes, so whoever sees
//! the new status also finds the events that explain it.

use std::time::Duration;

use flagger_api::analysis::HookType;
use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use flagger_core::{Action, EventType, Outcome as RunOutcome, RolloutSpec, Routes, Workload};
use flagger_providers::router::{self, Router};
use flagger_providers::wording::kube_error;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::events::Recorded;
use crate::fulfil;
use crate::metrics::{OutcomeLabels, RollbackLabels};
use crate::targets::Target;
use crate::workload::scaling::TargetWrite;

pub struct Outcome {
    /// `Err` with a message for the Warning event when an effect failed.
    pub result: Result<(), String>,
    pub requeue: Option<Duration>,
    /// The workload whose readiness may bring the next tick forward.
    pub requeue_when_ready: Option<Workload>,
    /// The finaliser was removed: the object is going away and has no status to write.
    pub deleted: bool,
    /// For [`Executor::notify`] once the status is persisted, in the order the core decided them.
    pub notices: Vec<Action>,
}

pub struct Executor<'a> {
    ctx: &'a Context,
    canary: &'a Canary,
    spec: &'a RolloutSpec,
    workloads: &'a Target,
}

impl<'a> Executor<'a> {
    pub fn new(
        ctx: &'a Context,
        canary: &'a Canary,
        spec: &'a RolloutSpec,
        workloads: &'a Target,
    ) -> Self {
        Executor {
            ctx,
            canary,
            spec,
            workloads,
        }
    }

    pub async fn run(&mut self, actions: Vec<Action>, status: &mut CanaryStatus) -> Outcome {
        let mut outcome = Outcome {
            result: Ok(()),
            requeue: None,
            requeue_when_ready: None,
            deleted: false,
            notices: Vec::new(),
        };
        // The tick's Events go out beside its other writes; all are answered before it returns,
        // and so before its status is written.
        let mut recorded = Vec::new();
        for action in actions {
            match action {
                Action::RequeueAfter(d) => outcome.requeue = Some(d),
                Action::RequeueWhenReady(w) => outcome.requeue_when_ready = Some(w),
                Action::Event(event) => {
                    recorded.push(self.start_recording(&event));
                    outcome.notices.push(Action::Event(event));
                }
                notice @ (Action::Alert(_) | Action::Report(_) | Action::CallWebhooks { .. }) => {
                    outcome.notices.push(notice)
                }
                Action::RemoveFinalizer => {
                    if let Err(e) = crate::finalizer::remove(&self.ctx.client, self.canary).await {
                        outcome.result = Err(crate::target::TargetError::from(e).to_string());
                        break;
                    }
                    outcome.deleted = self.canary.metadata.deletion_timestamp.is_some();
                }
                other => {
                    if let Err(message) = self.one(other, status).await {
                        outcome.result = Err(message);
                        break;
                    }
                }
            }
        }
        futures::future::join_all(recorded.into_iter().map(Recorded::written)).await;
        outcome
    }

    /// Sends the notices of a tick whose status is written.
    pub async fn notify(&self, notices: Vec<Action>, status: &CanaryStatus) {
        for notice in notices {
            self.notice(notice, status).await;
        }
    }

    fn start_recording(&self, event: &flagger_core::Event) -> Recorded {
        let annotations = crate::events::check_annotations(event.reason.as_ref());
        self.ctx
            .recorder
            .start(self.canary, event.type_, &event.message, annotations)
    }

    /// The outside-world part of an action; an `Event` here is its event-webhook copy.
    async fn notice(&self, notice: Action, status: &CanaryStatus) {
        let canary = self.canary;
        match notice {
            Action::CallWebhooks { kind, phase, hooks } => {
                self.fire_and_forget(kind, phase, &hooks, status).await;
            }
            Action::Event(event) => {
                crate::eventhooks::post(self.ctx, canary, status, &event).await;
            }
            Action::Alert(alert) => {
                let deadline =
                    u32::try_from(self.spec.progress_deadline.as_secs()).unwrap_or(u32::MAX);
                crate::alerts::deliver(self.ctx, canary, status, &alert, deadline).await;
            }
            Action::Report(run) => self.report(&run),
            other => tracing::error!(action = ?other, "not a notice; ignored"),
        }
    }

    async fn one(&mut self, action: Action, status: &mut CanaryStatus) -> Result<(), String> {
        let canary = self.canary;
        let w = self.workloads;
        let kube = |e: crate::target::TargetError| e.to_string();
        match action {
            Action::AddFinalizer => crate::finalizer::add(&self.ctx.client, canary)
                .await
                .map_err(|e| crate::target::TargetError::from(e).to_string()),
            Action::EnsurePrimary => {
                // App Mesh's sidecar injector needs the primary's VirtualNode before the primary
                // pods start, so its routing objects come first.
                if self.spec.provider.starts_with("appmesh") {
                    self.router()?
                        .reconcile(canary)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                w.ensure_primary(canary).await.map_err(kube)
            }
            Action::RouteApexToPrimary => {
                w.ensure_apex(canary).await.map_err(kube)?;
                self.router()?
                    .reconcile(canary)
                    .await
                    .map_err(|e| e.to_string())
            }
            Action::ScaleTargetUp | Action::RestoreTarget => {
                let write = w.scale_up(canary).await.map_err(kube)?;
                self.write_target(write, status).await
            }
            Action::ScaleTargetToZero => self.write_target(w.scale_to_zero(canary), status).await,
            Action::PauseTargetScaler => w.pause_target_scaler(canary).await.map_err(kube),
            Action::ResumeTargetScaler => w.resume_target_scaler(canary).await.map_err(kube),
            Action::ReconcilePrimaryScaler => {
                w.reconcile_primary_scaler(canary).await.map_err(kube)
            }
            Action::Promote => w.promote(canary).await.map_err(kube),
            Action::SetRoutes(routes) => self.set_routes(routes, status).await,
            Action::RevertRouting => {
                w.revert_apex(canary).await.map_err(kube)?;
                self.router()?
                    .finalize(canary)
                    .await
                    .map_err(|e| e.to_string())
            }
            Action::DryRun(inner) => {
                tracing::info!(canary = %canary.name_any(), namespace = ?canary.namespace(), effect = ?inner, "[dry-run] would apply");
                Ok(())
            }
            // What `run` takes itself, before any of it reaches here.
            Action::Event(_)
            | Action::CallWebhooks { .. }
            | Action::Alert(_)
            | Action::Report(_)
            | Action::RequeueAfter(_)
            | Action::RequeueWhenReady(_)
            | Action::RemoveFinalizer => Ok(()),
            Action::Need(_) => Ok(()),
        }
    }

    /// Persists a changed `podOverrides` before the patch that replaces the target's own values,
    /// so a failure between the two writes never loses them.
    async fn write_target(
        &self,
        write: TargetWrite,
        status: &mut CanaryStatus,
    ) -> Result<(), String> {
        if let Some(overrides) = write.pod_overrides.clone() {
            status.pod_overrides = Some(overrides.clone());
            let mut saved = self.canary.status.clone().unwrap_or_default();
            saved.pod_overrides = Some(overrides);
            let api: Api<Canary> = Api::namespaced(
                self.ctx.client.clone(),
                &self.canary.namespace().unwrap_or_default(),
            );
            // Recorded like the tick's own status write: the version it produces is replaced by
            // that write, and a tick on it would repeat this one.
            if let crate::status::Written::Wrote(written) =
                crate::status::write(&api, self.canary, &saved)
                    .await
                    .map_err(|e| kube_error(&e))?
            {
                self.ctx.wrote_status(self.canary, written);
            }
        }
        self.workloads
            .patch_target(&write)
            .await
            .map_err(|e| e.to_string())
    }

    fn router(&self) -> Result<Box<dyn Router>, String> {
        router::for_provider(
            &self.spec.provider,
            self.ctx.client.clone(),
            &router::Settings {
                ingress_class: self.ctx.flags.ingress_class.clone(),
                ingress_annotations_prefix: self.ctx.flags.ingress_annotations_prefix.clone(),
            },
        )
        .map_err(|e| e.to_string())
    }

    async fn set_routes(&self, routes: Routes, status: &CanaryStatus) -> Result<(), String> {
        // Routers render the session-affinity cookies the core decided this tick, which are in
        // the status about to be written, not in the one the tick started from.
        let mut canary = self.canary.clone();
        canary.status = Some(status.clone());
        self.router()?
            .set_routes(&canary, routes)
            .await
            .map_err(|e| e.to_string())?;
        let namespace = self.canary.namespace().unwrap_or_default();
        self.ctx.metrics.set_weights(
            &self.canary.name_any(),
            &namespace,
            &self.spec.target_name,
            i64::from(routes.primary),
            i64::from(routes.canary),
        );
        Ok(())
    }

    /// `post-rollout` hooks: their failures become events and never change the run.
    async fn fire_and_forget(
        &self,
        kind: HookType,
        phase: CanaryPhase,
        names: &[String],
        status: &CanaryStatus,
    ) {
        let hooks = self.canary.spec.analysis.webhooks.iter().flatten();
        for name in names {
            let Some(hook) = hooks
                .clone()
                .find(|h| &h.name == name && h.hook_type() == Some(kind))
            else {
                continue;
            };
            let payload = fulfil::payload(self.canary, status, phase, hook.metadata.as_ref());
            let (type_, message) =
                match crate::webhooks::call(self.ctx, self.canary, hook, &payload).await {
                    Ok(()) => (
                        EventType::Normal,
                        format!("Post-rollout check {name} passed"),
                    ),
                    Err(e) => (
                        EventType::Warning,
                        format!("Post-rollout hook {name} failed {e}"),
                    ),
                };
            self.ctx.recorder.record(self.canary, type_, &message).await;
        }
    }

    fn report(&self, run: &RunOutcome) {
        let name = self.spec.target_name.clone();
        let namespace = self.canary.namespace().unwrap_or_default();
        let strategy = self.spec.strategy.label().to_string();
        let labels = |status: &str| OutcomeLabels {
            name: name.clone(),
            namespace: namespace.clone(),
            deployment_strategy: strategy.clone(),
            analysis_status: status.into(),
        };
        let metrics = &self.ctx.metrics;
        match run {
            RunOutcome::Succeeded { skipped } => {
                let status = if *skipped { "skipped" } else { "completed" };
                metrics.count_success(&self.canary.name_any(), labels(status));
            }
            RunOutcome::RolledBack { reason } | RunOutcome::PromotionFailed { reason } => {
                metrics.count_rollback(
                    labels("completed"),
                    RollbackLabels {
                        name: name.clone(),
                        namespace: namespace.clone(),
                        canary: self.canary.name_any(),
                        deployment_strategy: strategy.clone(),
                        reason: reason.label().into(),
                    },
                );
            }
        }
    }
}
