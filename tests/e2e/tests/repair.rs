//! Watch-driven repair (issue 6): the controller reads a canary's objects from its watch caches and
//! writes only on change, so what repairs a deleted or edited Service or primary HPA must be the
//! watch event that maps it back to its Canary through the owner reference. The canaries here tick every 10
//! minutes: a repair within the wait below cannot come from the scheduled tick.

use std::time::Duration;

use anyhow::Context as _;
use e2e::controller::{
    self as ctl, blue_green_canary, canaries, create_canary, start_controller, wait_phase,
};
use e2e::objects::App;
use e2e::{apply, skip_unless_e2e, wait_for, with_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;

const APP: &str = "podinfo";
const INIT: Duration = Duration::from_secs(60);
/// Far below the canary's 10 min interval: only a watch-triggered reconcile fits in it.
const REPAIR: Duration = Duration::from_secs(30);

fn selector_of(s: &Service) -> Option<String> {
    s.spec.as_ref()?.selector.as_ref()?.get("app").cloned()
}

/// A controller and an Initialized canary ticking every 10 minutes; `prepare` adds to the target's
/// namespace and the canary before it is created.
async fn idle_canary(
    ns: &e2e::TestNamespace,
    prepare: impl AsyncFnOnce(&mut serde_json::Value) -> e2e::Result<()>,
) -> e2e::Result<e2e::controller::Proc> {
    ctl::install_crds(&ns.client).await?;
    let controller = start_controller(&ns.name, &[])?;
    apply(
        &ns.api::<Deployment>(),
        &App::new(APP, "6.0.0", 1).deployment()?,
    )
    .await?;
    let mut canary = blue_green_canary(APP, "10m", 3, json!([]));
    prepare(&mut canary).await?;
    create_canary(ns, canary).await?;
    wait_phase(&canaries(ns), APP, "Initialized", INIT, &controller).await?;
    Ok(controller)
}

#[tokio::test]
async fn deleted_and_edited_services_of_an_idle_canary_are_repaired() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("repair", |ns| async move {
        let controller = idle_canary(&ns, async |_| Ok(())).await?;
        let services: Api<Service> = ns.api();
        let log = |e: anyhow::Error| {
            e.context(format!("controller log tail:\n{}", controller.log_tail()))
        };

        // The primary Service deleted: recreated (a new uid), selecting the primary pods.
        let primary = format!("{APP}-primary");
        let old = services.get(&primary).await.context("primary Service")?;
        let old_uid = old.uid().unwrap_or_default();
        services
            .delete(&primary, &DeleteParams::default())
            .await
            .context("deleting the primary Service")?;
        let want = primary.clone();
        wait_for(
            &services,
            &primary,
            "recreated",
            REPAIR,
            move |s: Option<&Service>| {
                s.is_some_and(|s| {
                    s.uid().is_some_and(|u| u != old_uid)
                        && s.metadata.deletion_timestamp.is_none()
                        && selector_of(s).as_deref() == Some(want.as_str())
                })
            },
        )
        .await
        .map_err(log)?;

        // The canary Service's selector edited by someone else: set back to the target's pods.
        let canary_svc = format!("{APP}-canary");
        services
            .patch(
                &canary_svc,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"selector": {"app": "somebody-else"}}})),
            )
            .await
            .context("editing the canary Service's selector")?;
        wait_for(
            &services,
            &canary_svc,
            "selecting the target's pods again",
            REPAIR,
            |s: Option<&Service>| s.and_then(selector_of).as_deref() == Some(APP),
        )
        .await
        .map_err(log)?;

        let canary = canaries(&ns).get(APP).await?;
        anyhow::ensure!(
            ctl::phase(&canary) == "Initialized",
            "repairs are not a run: phase {}",
            ctl::phase(&canary)
        );
        Ok(())
    })
    .await
}

/// Flagger recreates a missing `<hpa>-primary` on every sync; here its watch event does it.
#[tokio::test]
async fn deleted_primary_hpa_of_an_idle_canary_is_recreated() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("repair-hpa", |ns| async move {
        let hpas: Api<HorizontalPodAutoscaler> = ns.api();
        let controller = idle_canary(&ns, async |canary| {
            apply(&hpas, &e2e::objects::hpa(APP, 2, 4)?).await?;
            canary["spec"]["autoscalerRef"] = e2e::objects::autoscaler_ref(APP);
            Ok(())
        })
        .await?;

        let primary = format!("{APP}-primary");
        let old_uid = hpas
            .get(&primary)
            .await
            .context("primary HPA")?
            .uid()
            .unwrap_or_default();
        hpas.delete(&primary, &DeleteParams::default())
            .await
            .context("deleting the primary HPA")?;
        let want = primary.clone();
        wait_for(
            &hpas,
            &primary,
            "recreated, scaling the primary",
            REPAIR,
            move |h: Option<&HorizontalPodAutoscaler>| {
                h.is_some_and(|h| {
                    h.uid().is_some_and(|u| u != old_uid)
                        && h.metadata.deletion_timestamp.is_none()
                        && h.spec.as_ref().is_some_and(|s| {
                            s.scale_target_ref.name == want
                                && s.min_replicas == Some(2)
                                && s.max_replicas == 4
                        })
                })
            },
        )
        .await
        .map_err(|e| e.context(format!("controller log tail:\n{}", controller.log_tail())))?;
        Ok(())
    })
    .await
}

/// A primary Deployment deleted after initialisation is recreated from the target (Flagger does it on
/// every sync; without it the primary Service selects no pod), with a Warning saying so.
#[tokio::test]
async fn deleted_primary_deployment_of_an_idle_canary_is_recreated() -> e2e::Result<()> {
    skip_unless_e2e!();
    with_namespace("repair-primary", |ns| async move {
        let controller = idle_canary(&ns, async |_| Ok(())).await?;
        let deployments: Api<Deployment> = ns.api();
        let primary = format!("{APP}-primary");
        let old_uid = deployments
            .get(&primary)
            .await
            .context("primary Deployment")?
            .uid()
            .unwrap_or_default();
        deployments
            .delete(&primary, &DeleteParams::default())
            .await
            .context("deleting the primary Deployment")?;
        wait_for(
            &deployments,
            &primary,
            "recreated from the target",
            REPAIR,
            move |d: Option<&Deployment>| {
                d.is_some_and(|d| {
                    d.uid().is_some_and(|u| u != old_uid)
                        && d.metadata.deletion_timestamp.is_none()
                        && ctl::image_of(d).ends_with(":6.0.0")
                })
            },
        )
        .await
        .map_err(|e| e.context(format!("controller log tail:\n{}", controller.log_tail())))?;
        let missing = format!(
            "{primary}.{} was missing; recreated from Deployment/{APP}",
            ns.name
        );
        ctl::wait_event(&ns, APP, "primary recreated", REPAIR, &controller, |e| {
            e.type_.as_deref() == Some("Warning") && e.message.as_deref() == Some(missing.as_str())
        })
        .await?;
        let canary = canaries(&ns).get(APP).await?;
        anyhow::ensure!(
            ctl::phase(&canary) == "Initialized",
            "a recreated primary is not a run: phase {}",
            ctl::phase(&canary)
        );
        Ok(())
    })
    .await
}
