use flagger_loadtester::Config;
use serde_json::json;

use crate::support::{TestResult, loadtester, payload};

#[tokio::test]
async fn bearer_token_required_when_configured() -> TestResult {
    let lt = loadtester(Config {
        bearer_token: Some("s3cret".into()),
        ..Config::default()
    })
    .await?;
    let url = format!("{}/gate/approve", lt.url);
    let body = payload("podinfo", json!(null));

    let none = lt.client.post(&url).json(&body).send().await?;
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let wrong = lt
        .client
        .post(&url)
        .bearer_auth("s3cre")
        .json(&body)
        .send()
        .await?;
    assert_eq!(wrong.status().as_u16(), 401);
    let task = lt
        .client
        .post(format!("{}/", lt.url))
        .json(&payload("podinfo", json!({"type": "bash", "cmd": "true"})))
        .send()
        .await?;
    assert_eq!(task.status().as_u16(), 401, "tasks are protected too");
    let right = lt
        .client
        .post(&url)
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await?;
    assert_eq!(right.status().as_u16(), 200);

    for open in ["/healthz", "/metrics"] {
        let r = lt.client.get(format!("{}{open}", lt.url)).send().await?;
        assert_eq!(r.status().as_u16(), 200, "{open} needs no token");
    }
    Ok(())
}

#[tokio::test]
async fn no_token_configured_means_open() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let (status, _) = lt
        .post("/gate/approve", &payload("podinfo", json!(null)))
        .await?;
    assert_eq!(status, 200);
    Ok(())
}
