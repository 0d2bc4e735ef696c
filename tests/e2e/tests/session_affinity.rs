//! Session affinity (`analysis.sessionAffinity`) on the `gatewayapi:v1` router with real traffic through
//! Traefik's Gateway provider.
//!
//! podinfo 6.0.0 → Canary (stepWeight 10, maxWeight 30, a closed `confirm-promotion` gate, canary and primary
//! cookies) → image 6.0.1. Once the core has created the run's cookie (status `sessionAffinityCookie`), a client
//! holding it must reach 6.0.1 on every request while the weights step to 30; a client without cookies gets the
//! canary cookie (`Set-Cookie … Max-Age=21600; Path=/`) whenever the weighted rule sends it to the canary, and the
//! primary cookie otherwise; a client holding the primary cookie stays on 6.0.0. After promotion the run's cookie
//! is the status' `previousSessionAffinityCookie` and a request carrying it is answered with `Max-Age=-1`.
//!
//! Run: `hack/e2e session_affinity`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use e2e::controller::{
    Recorder, canaries, create_canary, install_crds, start_controller, status, wait_canary,
    wait_phase,
};
use e2e::hooks::HookCatcher;
use e2e::objects::{APP_PORT, App, deployment_available};
use e2e::traffic::{PodinfoReply, check_target, http_client};
use e2e::{Result, TRAEFIK_WEB, apply, poll_until, skip_unless_e2e, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

const OLD: &str = "6.0.0";
const NEW: &str = "6.0.1";
const CANARY_COOKIE: &str = "canary-flagger-cookie";
const PRIMARY_COOKIE: &str = "primary-flagger-cookie";
/// Bounds of the cookie holder's loop, which runs until the run waits for promotion (three intervals or so).
const STICKY_REQUESTS: usize = 50_000;
const STICKY_TIME: Duration = Duration::from_secs(120);
/// Requests of clients without cookies at the held weight.
const FRESH_REQUESTS: usize = 200;

/// What one request through Traefik got back.
#[derive(Debug)]
struct Reply {
    version: String,
    set_cookies: Vec<String>,
}

/// One GET through Traefik's `web` entry point for `host`, sending `cookie` as the `Cookie` header.
async fn request(client: &reqwest::Client, host: &str, cookie: Option<&str>) -> Result<Reply> {
    let url = reqwest::Url::parse(TRAEFIK_WEB)?;
    check_target(&url)?;
    let mut req = client.get(url).header(reqwest::header::HOST, host);
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    let resp = req.send().await?.error_for_status()?;
    let set_cookies = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let body = resp.bytes().await?;
    let reply: PodinfoReply = serde_json::from_slice(&body).context("podinfo reply")?;
    Ok(Reply {
        version: reply.version,
        set_cookies,
    })
}

/// Bounded poll until a request with `cookie` is answered by `version` and carries `set_cookie` (when given):
/// Traefik loads a rewritten route asynchronously.
async fn until_reply(
    host: &str,
    cookie: Option<&str>,
    version: &str,
    set_cookie: Option<&str>,
) -> Result<()> {
    let client = http_client()?;
    poll_until(
        &format!("{version} with Set-Cookie {set_cookie:?} for Cookie {cookie:?}"),
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let r = request(&client, host, cookie).await?;
                let cookie_ok =
                    set_cookie.is_none_or(|want| r.set_cookies.iter().any(|c| c == want));
                Ok((r.version == version && cookie_ok).then_some(()))
            }
        },
    )
    .await
}

fn canary(host: &str, gate: &str) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": APP_PORT, "targetPort": APP_PORT, "hosts": [host], "gatewayRefs": [{"name": "gateway"}]},
            "analysis": {
                "interval": "3s", "threshold": 5, "stepWeight": 10, "maxWeight": 30,
                "sessionAffinity": {"cookieName": CANARY_COOKIE, "primaryCookieName": PRIMARY_COOKIE, "maxAge": 21600, "path": "/"},
                "webhooks": [{"name": "gate", "type": "confirm-promotion", "url": gate}],
            },
        },
    })
}

fn status_str(obj: &kube::api::DynamicObject, field: &str) -> Option<String> {
    status(obj)[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[tokio::test]
async fn gatewayapi_session_affinity_through_traefik_gateway_provider() -> Result<()> {
    skip_unless_e2e!();
    install_crds(&e2e::client().await?).await?;
    e2e::with_namespace("sa", |ns| async move {
        let host = format!("{}.sa.test", ns.name);
        let deployments: Api<Deployment> = ns.api();
        apply(&deployments, &App::new("podinfo", OLD, 1).deployment()?).await?;
        wait_for(&deployments, "podinfo", "available", Duration::from_secs(60), deployment_available()).await?;
        e2e::gateway::install(&ns).await?;
        let hooks = HookCatcher::start().await?;
        let ctrl = start_controller(&ns.name, &[])?;
        let api = canaries(&ns);
        let rec = Recorder::start(&api, "podinfo");
        create_canary(&ns, canary(&host, &hooks.at("/gate"))).await?;
        wait_phase(&api, "podinfo", "Initialized", Duration::from_secs(90), &ctrl).await?;
        e2e::gateway::wait_accepted(&ns, "podinfo", Duration::from_secs(30)).await?;
        until_reply(&host, None, OLD, None).await?;

        apply(&deployments, &App::new("podinfo", NEW, 1).deployment()?).await?;
        let first = wait_canary(&api, "podinfo", "holding a session cookie", Duration::from_secs(90), &ctrl, |o| {
            status_str(o, "sessionAffinityCookie").is_some()
        })
        .await?;
        let cookie = status_str(&first, "sessionAffinityCookie").context("canary cookie")?;
        let primary = status_str(&first, "primarySessionAffinityCookie").context("primary cookie")?;
        eprintln!("cookies: {cookie} / {primary} at {}", rec.render());
        ensure!(
            cookie.strip_prefix(&format!("{CANARY_COOKIE}=")).is_some_and(|v| v.len() == 10 && v.bytes().all(|b| b.is_ascii_alphabetic())),
            "canary cookie {cookie:?} is not {CANARY_COOKIE}=<10 letters>"
        );

        // Once Traefik serves the sticky rule, the cookie holder reaches the canary on every request while the
        // weights step, until the run waits at the closed promotion gate.
        until_reply(&host, Some(&cookie), NEW, None).await?;
        let client = http_client()?;
        let mut sticky: BTreeMap<String, usize> = BTreeMap::new();
        let mut sent = 0;
        let started = tokio::time::Instant::now();
        while sent < STICKY_REQUESTS
            && started.elapsed() < STICKY_TIME
            && rec.steps().last().is_none_or(|s| s.phase != "WaitingPromotion")
        {
            let r = request(&client, &host, Some(&cookie)).await?;
            *sticky.entry(r.version).or_default() += 1;
            sent += 1;
        }
        let weights: Vec<i64> = rec.steps().iter().map(|s| s.weight).collect();
        eprintln!("MEASURED session affinity: cookie holder {sticky:?} over {sent} requests while the weights went {weights:?}");
        ensure!(sticky.keys().all(|v| v == NEW), "cookie holder left the canary: {sticky:?}");
        ensure!(weights.contains(&20) && weights.contains(&30), "weights did not step during the loop: {}", rec.render());
        let held = wait_phase(&api, "podinfo", "WaitingPromotion", Duration::from_secs(60), &ctrl).await?;
        ensure!(status_str(&held, "sessionAffinityCookie").as_deref() == Some(cookie.as_str()), "the run's cookie changed while stepping: {:?}", status(&held));

        // Clients without cookies: the canary hands out its cookie, the primary its own (Max-Age = interval).
        let canary_set = format!("{cookie}; Max-Age=21600; Path=/");
        let primary_set = format!("{primary}; Max-Age=3; Path=/");
        until_reply(&host, None, NEW, Some(&canary_set)).await?;
        let mut fresh: BTreeMap<(String, Vec<String>), usize> = BTreeMap::new();
        for _ in 0..FRESH_REQUESTS {
            let r = request(&client, &host, None).await?;
            *fresh.entry((r.version, r.set_cookies)).or_default() += 1;
        }
        eprintln!("MEASURED session affinity at weight 30: clients without cookies {fresh:?}");
        for ((version, set), n) in &fresh {
            let want = if version == NEW { &canary_set } else { &primary_set };
            ensure!(set == std::slice::from_ref(want), "{n} replies from {version} set {set:?}, want [{want:?}]");
        }
        ensure!(fresh.keys().any(|(v, _)| v == NEW) && fresh.keys().any(|(v, _)| v == OLD), "no split at weight 30: {fresh:?}");
        // The primary cookie pins its holder to the primary.
        for _ in 0..20 {
            let r = request(&client, &host, Some(&primary)).await?;
            ensure!(r.version == OLD, "primary cookie holder reached {}", r.version);
        }

        hooks.open_gate("/gate");
        let done = wait_phase(&api, "podinfo", "Succeeded", Duration::from_secs(120), &ctrl).await?;
        ensure!(status_str(&done, "sessionAffinityCookie").is_none(), "cookie still current: {:?}", status(&done));
        ensure!(status_str(&done, "previousSessionAffinityCookie").as_deref() == Some(cookie.as_str()), "previous cookie: {:?}", status(&done));
        let expire = format!("{cookie}; Max-Age=-1; Path=/");
        until_reply(&host, Some(&cookie), NEW, Some(&expire)).await?;
        let r = request(&client, &host, Some(&cookie)).await?;
        eprintln!("MEASURED session affinity after promotion: the old cookie's holder got {r:?}");
        ensure!(r.set_cookies == [expire.clone()], "after promotion: {r:?}");
        let plain = request(&client, &host, None).await?;
        ensure!(plain.version == NEW && plain.set_cookies.is_empty(), "plain client after promotion: {plain:?}");
        drop(ctrl);
        Ok(())
    })
    .await
}
