use std::time::{Duration, Instant};

use flagger_loadtester::Config;
use serde_json::json;

use crate::support::{TestResult, loadtester, payload, target};

#[tokio::test]
async fn bash_success_and_output() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let quiet = payload("podinfo", json!({"type": "bash", "cmd": "echo hello"}));
    assert_eq!(lt.post("/", &quiet).await?, (200, String::new()));
    let loud = payload(
        "podinfo",
        json!({"type": "bash", "cmd": "echo hello; echo world >&2", "returnCmdOutput": "true"}),
    );
    assert_eq!(lt.post("/", &loud).await?, (200, "hello\nworld\n".into()));
    Ok(())
}

#[tokio::test]
async fn bash_failure_is_500_with_output() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let failing = payload(
        "podinfo",
        json!({"type": "bash", "cmd": "echo oops >&2; exit 3"}),
    );
    let (status, body) = lt.post("/", &failing).await?;
    assert_eq!(status, 500);
    assert_eq!(body, "exit status 3 oops");
    Ok(())
}

#[tokio::test]
async fn bash_is_killed_at_the_task_timeout() -> TestResult {
    let lt = loadtester(Config {
        task_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await?;
    let started = Instant::now();
    let (status, body) = lt
        .post(
            "/",
            &payload(
                "podinfo",
                json!({"type": "bash", "cmd": "echo started; sleep 30"}),
            ),
        )
        .await?;
    assert_eq!(status, 500);
    assert!(body.starts_with("killed after timeout 300ms"), "{body}");
    assert!(body.contains("started"), "{body}");
    assert!(started.elapsed().as_secs() < 10);
    Ok(())
}

#[tokio::test]
async fn payload_errors_are_400() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let cases = [
        (
            payload("podinfo", json!({"type": "foo", "cmd": "x"})),
            "unknown task type foo",
        ),
        (
            payload("podinfo", json!(null)),
            "metadata not found in payload",
        ),
        (
            payload("podinfo", json!({})),
            "metadata not found in payload",
        ),
        (
            payload("podinfo", json!({"type": "cmd"})),
            "cmd not found in metadata",
        ),
        (
            payload("podinfo", json!({"type": "bash"})),
            "cmd not found in metadata",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(lt.post("/", &body).await?, (400, want.to_owned()), "{body}");
    }
    // Flagger's tasks answer on any path that is not a gate.
    let (status, _) = lt
        .post(
            "/some/path",
            &payload("podinfo", json!({"type": "foo", "cmd": "x"})),
        )
        .await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn shell_cmd_runs_in_the_background() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let dir = std::env::temp_dir().join(format!("flagger-loadtester-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("out.txt");
    let cmd = format!("echo ran > {}", file.display());
    let (status, _) = lt
        .post("/", &payload("podinfo", json!({"cmd": cmd})))
        .await?;
    assert_eq!(status, 202);
    lt.finished(1).await?;
    assert_eq!(std::fs::read_to_string(&file)?, "ran\n");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_load_test_is_not_started_twice() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let target = target(true).await?;
    let body = payload(
        "podinfo",
        json!({"cmd": format!("hey -n 1 -c 1 {}", target.url)}),
    );

    let (first, second) = tokio::join!(lt.post("/", &body), lt.post("/", &body));
    assert_eq!((first?.0, second?.0), (202, 202));
    assert_eq!(lt.state.tasks.started(), 1);

    // The run is now blocked in the target, so it is certainly still running.
    target.wait_count(1).await?;
    assert_eq!(lt.post("/", &body).await?, (202, "already running".into()));
    assert_eq!(lt.state.tasks.started(), 1);

    // Another canary with the same command is a different task.
    let other = payload("other", body["metadata"].clone());
    assert_eq!(lt.post("/", &other).await?, (202, String::new()));
    assert_eq!(lt.state.tasks.started(), 2);

    target.release();
    lt.finished(2).await?;
    assert_eq!(target.count(), 2);

    // Once finished, the same load test may run again.
    assert_eq!(lt.post("/", &body).await?, (202, String::new()));
    assert_eq!(lt.state.tasks.started(), 3);
    lt.finished(3).await?;
    assert_eq!(target.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_concurrency_is_bounded() -> TestResult {
    let lt = loadtester(Config {
        max_tasks: 1,
        ..Config::default()
    })
    .await?;
    let target = target(true).await?;
    let load = payload(
        "podinfo",
        json!({"cmd": format!("hey -n 1 -c 1 {}", target.url)}),
    );
    assert_eq!(lt.post("/", &load).await?.0, 202);
    target.wait_count(1).await?;

    let (status, body) = lt
        .post(
            "/",
            &payload("other", json!({"type": "bash", "cmd": "true"})),
        )
        .await?;
    assert_eq!(
        (status, body.as_str()),
        (503, "too many tasks running (limit 1); try again later")
    );

    target.release();
    lt.finished(1).await?;
    assert_eq!(
        lt.post(
            "/",
            &payload("other", json!({"type": "bash", "cmd": "true"}))
        )
        .await?
        .0,
        200
    );

    let metrics = lt
        .client
        .get(format!("{}/metrics", lt.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(r#"flagger_loadtester_tasks_total{kind="bash",result="rejected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"flagger_loadtester_load_responses_total{code="200"} 1"#),
        "{metrics}"
    );
    Ok(())
}
