use flagger_loadtester::Config;
use serde_json::json;

use crate::support::{TestResult, loadtester, payload};

#[tokio::test]
async fn fixed_gates() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let body = payload("podinfo", json!(null));
    assert_eq!(lt.post("/gate/approve", &body).await?, (200, "OK".into()));
    assert_eq!(
        lt.post("/gate/halt", &body).await?,
        (403, "Forbidden".into())
    );
    let health = lt.client.get(format!("{}/healthz", lt.url)).send().await?;
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.text().await?, "OK");
    Ok(())
}

#[tokio::test]
async fn gate_open_close_check() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let podinfo = payload("podinfo", json!(null));
    let other = payload("other", json!(null));
    assert_eq!(
        lt.post("/gate/check", &podinfo).await?,
        (403, "Forbidden".into())
    );
    assert_eq!(lt.post("/gate/open", &podinfo).await?, (202, String::new()));
    assert_eq!(
        lt.post("/gate/check", &podinfo).await?,
        (200, "Approved".into())
    );
    assert_eq!(
        lt.post("/gate/check", &other).await?.0,
        403,
        "gates are per canary"
    );
    assert_eq!(
        lt.post("/rollback/check", &podinfo).await?.0,
        403,
        "rollback gate is separate"
    );
    // Opening twice keeps it open; closing twice keeps it closed.
    assert_eq!(lt.post("/gate/open", &podinfo).await?.0, 202);
    assert_eq!(
        lt.post("/gate/close", &podinfo).await?,
        (202, String::new())
    );
    assert_eq!(lt.post("/gate/close", &podinfo).await?.0, 202);
    assert_eq!(
        lt.post("/gate/check", &podinfo).await?,
        (403, "Forbidden".into())
    );
    Ok(())
}

#[tokio::test]
async fn rollback_gate() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    let podinfo = payload("podinfo", json!(null));
    assert_eq!(
        lt.post("/rollback/check", &podinfo).await?,
        (403, "Forbidden".into())
    );
    assert_eq!(
        lt.post("/rollback/open", &podinfo).await?,
        (202, String::new())
    );
    assert_eq!(
        lt.post("/rollback/check", &podinfo).await?,
        (200, "Approved".into())
    );
    assert_eq!(
        lt.post("/gate/check", &podinfo).await?.0,
        403,
        "promotion gate untouched"
    );
    assert_eq!(
        lt.post("/rollback/close", &podinfo).await?,
        (202, String::new())
    );
    assert_eq!(lt.post("/rollback/check", &podinfo).await?.0, 403);
    Ok(())
}

#[tokio::test]
async fn undecodable_payload_is_400() -> TestResult {
    let lt = loadtester(Config::default()).await?;
    for path in ["/gate/check", "/gate/open", "/rollback/open", "/"] {
        let response = lt
            .client
            .post(format!("{}{path}", lt.url))
            .body("{not json")
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 400, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn namespace_regexp_forbids_other_namespaces() -> TestResult {
    let lt = loadtester(Config {
        namespace_regexp: Some(regex_for("^test$")?),
        ..Config::default()
    })
    .await?;
    let allowed = payload("podinfo", json!(null));
    let mut denied = allowed.clone();
    denied["namespace"] = json!("prod");
    assert_eq!(lt.post("/gate/open", &allowed).await?.0, 202);
    assert_eq!(lt.post("/gate/open", &denied).await?.0, 403);
    assert_eq!(lt.post("/gate/check", &denied).await?.0, 403);
    let task = payload("podinfo", json!({"type": "bash", "cmd": "true"}));
    let mut denied_task = task.clone();
    denied_task["namespace"] = json!("prod");
    assert_eq!(lt.post("/", &task).await?.0, 200);
    assert_eq!(lt.post("/", &denied_task).await?.0, 403);
    Ok(())
}

fn regex_for(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(re)
}
