use std::time::Instant;

use flagger_loadtester::Config;
use serde_json::json;

use crate::support::{TestResult, loadtester, payload, target};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_n_sends_exactly_n_requests() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let target = target(false).await?;
    let cmd = format!("hey -n 50 -c 5 {}", target.url);
    let (status, _) = lt
        .post(
            "/",
            &payload(
                "podinfo",
                json!({"type": "cmd", "cmd": cmd, "logCmdOutput": "true"}),
            ),
        )
        .await?;
    assert_eq!(status, 202);
    lt.finished(1).await?;
    assert_eq!(target.count(), 50);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_duration_and_rate_bound_the_run() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let target = target(false).await?;
    let cmd = format!("hey -z 1s -q 10 -c 2 {}", target.url);
    let started = Instant::now();
    let (status, _) = lt
        .post("/", &payload("podinfo", json!({"cmd": cmd})))
        .await?;
    assert_eq!(status, 202);
    lt.finished(1).await?;
    let elapsed = started.elapsed();
    let count = target.count();
    // 2 workers at 10/s for 1s: at most one tick more per worker than the rate allows.
    assert!((2..=22).contains(&count), "{count} requests");
    assert!(elapsed.as_millis() >= 900, "ended after {elapsed:?}");
    assert!(elapsed.as_secs() < 10, "ended after {elapsed:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_timeout_bounds_a_count_run() -> TestResult {
    let lt = loadtester(Config {
        task_timeout: std::time::Duration::from_millis(500),
        ..Config::default()
    })
    .await?;
    // Held forever: only the task timeout can end this run.
    let target = target(true).await?;
    let cmd = format!("hey -n 10 -c 2 {}", target.url);
    let started = Instant::now();
    let (status, _) = lt
        .post("/", &payload("podinfo", json!({"cmd": cmd})))
        .await?;
    assert_eq!(status, 202);
    lt.finished(1).await?;
    assert!(started.elapsed().as_secs() < 10);
    assert!(
        target.count() <= 2,
        "each worker is stuck on its first request"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_hey_command_is_rejected_with_its_error() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let (status, body) = lt
        .post(
            "/",
            &payload(
                "podinfo",
                json!({"cmd": "hey -n 2 -c 5 http://127.0.0.1:1/"}),
            ),
        )
        .await?;
    assert_eq!(
        (status, body.as_str()),
        (400, "hey: -n cannot be lower than -c")
    );
    assert_eq!(lt.state.tasks.started(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_request_shape_follows_the_flags() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let target = target(false).await?;
    let cmd = format!(
        r#"hey -n 3 -c 1 -m post -T application/json -d '{{"ok": true}}' -H "X-Canary: insider" -host podinfo.test -a user:pw {}"#,
        target.url
    );
    let (status, _) = lt
        .post("/", &payload("podinfo", json!({"cmd": cmd})))
        .await?;
    assert_eq!(status, 202);
    lt.finished(1).await?;
    assert_eq!(target.count(), 3);
    let seen = target.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, r#"{"ok": true}"#);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.header("x-canary"), Some("insider"));
    assert_eq!(seen.header("host"), Some("podinfo.test"));
    assert_eq!(seen.header("user-agent"), Some("hey/0.0.1"));
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwdw=="));
    Ok(())
}
