//! `flagger-rs promote|abort|pause|resume|retry NAME`: a manual request to the controller,
//! written as annotations on the Canary's metadata (a GitOps tool re-applying the Canary leaves
//! keys it never set alone), then the controller's answer, read from `status.lastRequest`.
//!
//! The requester is who the API server says the caller is (a SelfSubjectReview, what
//! `kubectl auth whoami` asks), not a name the user types.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use flagger_api::request::{REQUEST, REQUEST_ID, REQUESTED_BY, RequestAction};
use flagger_api::status::HandledRequest;
use flagger_api::{Canary, CanaryStatus};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::cluster::{CliError, ClusterArgs, api_error};

const CANARIES: &str = "canaries.flagger.app";
/// The field manager of the request annotations, so `managedFields` shows who wrote them.
const FIELD_MANAGER: &str = "flagger-rs-cli";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Skip the rest of the analysis and promote now (asks first unless --yes).
    Promote(Args),
    /// Roll back now: all traffic to the primary, the canary scaled to zero.
    Abort(Args),
    /// Hold the weights where they are; checks keep running.
    Pause(Args),
    /// Take steps again after a pause.
    Resume(Args),
    /// Analyse a failed revision again, without a new image.
    Retry(Args),
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Canary's name.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Promote without asking first.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for the controller's answer (`0s`: send and do not wait).
    #[arg(long, default_value = "2m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    flagger_api::duration::parse(s).map_err(|e| e.to_string())
}

impl Command {
    fn parts(&self) -> (RequestAction, &Args) {
        match self {
            Command::Promote(a) => (RequestAction::Promote, a),
            Command::Abort(a) => (RequestAction::Abort, a),
            Command::Pause(a) => (RequestAction::Pause, a),
            Command::Resume(a) => (RequestAction::Resume, a),
            Command::Retry(a) => (RequestAction::Retry, a),
        }
    }
}

/// How a request ended for the person who sent it.
#[derive(Debug, PartialEq)]
enum Ending {
    Answered { accepted: bool, message: String },
    Sent,
    Cancelled,
}

pub fn run(command: &Command) -> ExitCode {
    let (action, args) = command.parts();
    let sent = match crate::command::block_on(send(action, args)) {
        Ok(sent) => sent,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match sent {
        Ok(Ending::Answered { accepted, message }) => {
            if accepted {
                println!("{message}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        }
        Ok(Ending::Sent) => ExitCode::SUCCESS,
        Ok(Ending::Cancelled) => {
            eprintln!("nothing sent");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn send(action: RequestAction, args: &Args) -> Result<Ending, CliError> {
    let cluster = args.cluster.connect().await?;
    let namespace = cluster.namespace.as_str();
    let api: Api<Canary> = Api::namespaced(cluster.client.clone(), namespace);
    let canary = api
        .get(&args.name)
        .await
        .map_err(|e| api_error(&e, "get", CANARIES, namespace))?;
    if let Some(waiting) = unanswered(&canary) {
        return Err(CliError::Usage(waiting));
    }
    if action == RequestAction::Promote && !args.yes && !confirmed(&canary)? {
        return Ok(Ending::Cancelled);
    }
    let user = whoami(cluster.client.clone()).await;
    let id = new_id();
    let patch = request_patch(
        action,
        &id,
        user.as_deref(),
        canary.metadata.resource_version.as_deref(),
    );
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let written = api
        .patch(&args.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 409 => CliError::Api(format!(
                "{namespace}/{} changed while the request was written: run the command again",
                args.name
            )),
            _ => api_error(&e, "patch", CANARIES, namespace),
        })?;
    println!(
        "{}",
        sent_line(action, namespace, &args.name, user.as_deref(), &id)
    );
    if args.timeout.is_zero() {
        return Ok(Ending::Sent);
    }
    let since = written.metadata.resource_version.unwrap_or_default();
    let answer = tokio::time::timeout(args.timeout, answer(&api, &args.name, &id, since)).await;
    match answer {
        Ok(Ok(handled)) => Ok(ending(&handled)),
        Ok(Err(e)) => Err(api_error(&e, "watch", CANARIES, namespace)),
        Err(_) => Err(CliError::Api(format!(
            "the controller has not answered request {id} within {}s: is it running, and is \
             the canary suspended? The request stays and is acted on when it is",
            args.timeout.as_secs()
        ))),
    }
}

/// The controller's answer to request `id`, watched for (the answer is a status write).
async fn answer(
    api: &Api<Canary>,
    name: &str,
    id: &str,
    mut since: String,
) -> Result<HandledRequest, kube::Error> {
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    loop {
        let mut events = api.watch(&params, &since).await?.boxed();
        while let Some(event) = events.try_next().await? {
            let canary = match event {
                WatchEvent::Added(c) | WatchEvent::Modified(c) => c,
                WatchEvent::Bookmark(b) => {
                    since = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Deleted(_) => {
                    return Err(kube::Error::Api(Box::new(kube::core::Status::failure(
                        &format!("canary {name} was deleted before the controller answered"),
                        "NotFound",
                    ))));
                }
                WatchEvent::Error(e) => {
                    return Err(kube::Error::Api(Box::new(kube::core::Status::failure(
                        &e.message, &e.reason,
                    ))));
                }
            };
            if let Some(rv) = &canary.metadata.resource_version {
                since.clone_from(rv);
            }
            if let Some(handled) = answered(canary.status.as_ref(), id) {
                return Ok(handled.clone());
            }
        }
        // The API server ends a watch after a while; pick it up where it was.
    }
}

fn answered<'a>(status: Option<&'a CanaryStatus>, id: &str) -> Option<&'a HandledRequest> {
    status
        .and_then(|s| s.last_request.as_ref())
        .filter(|r| r.id == id)
}

fn ending(handled: &HandledRequest) -> Ending {
    Ending::Answered {
        accepted: handled.accepted,
        message: handled.message.clone(),
    }
}

/// A request the controller has not answered yet: a second one would replace it unseen.
fn unanswered(canary: &Canary) -> Option<String> {
    let annotations = canary.metadata.annotations.as_ref()?;
    let action = annotations.get(REQUEST)?;
    let id = annotations.get(REQUEST_ID)?;
    if answered(canary.status.as_ref(), id).is_some() {
        return None;
    }
    let by = annotations
        .get(REQUESTED_BY)
        .map(|u| format!(" by {u}"))
        .unwrap_or_default();
    Some(format!(
        "request {id} ({action}{by}) is still waiting for the controller's answer; run this \
         again once it is answered (`kubectl get canary {} -o jsonpath='{{.status.lastRequest}}'`)",
        canary.metadata.name.as_deref().unwrap_or_default()
    ))
}

/// The merge patch of one request; the resourceVersion makes it fail rather than replace a
/// request someone else wrote since the canary was read.
fn request_patch(
    action: RequestAction,
    id: &str,
    user: Option<&str>,
    resource_version: Option<&str>,
) -> Value {
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {
                REQUEST: action.as_str(),
                REQUEST_ID: id,
                // Null removes an earlier requester's name rather than keeping it under this id.
                REQUESTED_BY: user,
            }
        }
    })
}

fn sent_line(
    action: RequestAction,
    namespace: &str,
    name: &str,
    user: Option<&str>,
    id: &str,
) -> String {
    let user = user.unwrap_or("an unknown user (the cluster did not say who you are)");
    format!("{action} of {namespace}/{name} requested as {user} (request {id})")
}

/// Unique per request: the time in nanoseconds and this process's id.
fn new_id() -> String {
    format!(
        "{}-{}",
        jiff::Timestamp::now().as_nanosecond(),
        std::process::id()
    )
}

/// Who the API server says the caller is; `None` when it cannot say (a cluster older than
/// 1.28, or no permission to ask), and the controller then names an unknown user.
async fn whoami(client: Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client);
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
}

fn question(canary: &Canary) -> String {
    let status = canary.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let weight = status.canary_weight.unwrap_or(0);
    format!(
        "Promote {}/{} now, skipping the rest of its analysis (phase {phase}, canary weight {weight}%)? [y/N] ",
        canary.metadata.namespace.as_deref().unwrap_or_default(),
        canary.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn confirmed(canary: &Canary) -> Result<bool, CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Usage(
            "promote asks for confirmation on a terminal; pass --yes to promote without asking"
                .into(),
        ));
    }
    eprint!("{}", question(canary));
    // A prompt that is not shown is not a question; failing to flush only loses the prompt.
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("reading the answer: {e}")))?;
    Ok(yes(&line))
}

fn yes(line: &str) -> bool {
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use flagger_api::CanaryPhase;

    use super::*;

    fn canary(annotations: &[(&str, &str)], last: Option<&str>) -> Canary {
        let mut canary: Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m"}
            }
        }))
        .unwrap();
        canary.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        canary.status = Some(CanaryStatus {
            phase: Some(CanaryPhase::Progressing),
            canary_weight: Some(20),
            last_request: last.map(|id| HandledRequest {
                id: id.into(),
                action: "promote".into(),
                accepted: true,
                message: "done".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        canary
    }

    #[test]
    fn the_patch_carries_the_request_its_id_requester_and_precondition() {
        assert_eq!(
            request_patch(RequestAction::Pause, "1-2", Some("alice"), Some("42")),
            json!({"metadata": {"resourceVersion": "42", "annotations": {
                "flagger-rs.dev/request": "pause",
                "flagger-rs.dev/request-id": "1-2",
                "flagger-rs.dev/requested-by": "alice",
            }}})
        );
        let anonymous = request_patch(RequestAction::Abort, "3", None, Some("7"));
        assert_eq!(
            anonymous["metadata"]["annotations"]["flagger-rs.dev/requested-by"],
            Value::Null,
            "an earlier requester's name is removed"
        );
    }

    #[test]
    fn a_request_still_waiting_for_its_answer_is_not_replaced() {
        let pending = canary(
            &[(REQUEST, "abort"), (REQUEST_ID, "9"), (REQUESTED_BY, "bob")],
            Some("8"),
        );
        assert_eq!(
            unanswered(&pending).unwrap(),
            "request 9 (abort by bob) is still waiting for the controller's answer; run this again \
             once it is answered (`kubectl get canary podinfo -o jsonpath='{.status.lastRequest}'`)"
        );
        let done = canary(&[(REQUEST, "abort"), (REQUEST_ID, "9")], Some("9"));
        assert_eq!(unanswered(&done), None);
        assert_eq!(unanswered(&canary(&[], None)), None);
    }

    #[test]
    fn output_lines() {
        assert_eq!(
            question(&canary(&[], None)),
            "Promote test/podinfo now, skipping the rest of its analysis (phase Progressing, canary weight 20%)? [y/N] "
        );
        assert_eq!(
            sent_line(
                RequestAction::Promote,
                "test",
                "podinfo",
                Some("alice"),
                "1-2"
            ),
            "promote of test/podinfo requested as alice (request 1-2)"
        );
        assert_eq!(
            sent_line(RequestAction::Retry, "test", "podinfo", None, "1-2"),
            "retry of test/podinfo requested as an unknown user (the cluster did not say who you are) (request 1-2)"
        );
        assert!(yes("y\n") && yes(" YES ") && !yes("") && !yes("no"));
    }

    #[test]
    fn only_the_answer_to_this_request_counts() {
        let status = canary(&[], Some("5")).status;
        assert!(answered(status.as_ref(), "4").is_none());
        let handled = answered(status.as_ref(), "5").unwrap();
        assert_eq!(
            ending(handled),
            Ending::Answered {
                accepted: true,
                message: "done".into()
            }
        );
    }

    #[test]
    fn the_subcommands_parse_with_kubectls_flags() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Command,
        }
        let cli = Cli::try_parse_from([
            "flagger-rs",
            "promote",
            "podinfo",
            "-n",
            "test",
            "--yes",
            "--timeout",
            "30s",
        ])
        .unwrap();
        let (action, args) = cli.command.parts();
        assert_eq!(action, RequestAction::Promote);
        assert_eq!(args.name, "podinfo");
        assert_eq!(args.cluster.namespace.as_deref(), Some("test"));
        assert!(args.yes);
        assert_eq!(args.timeout, Duration::from_secs(30));
        assert!(
            Cli::try_parse_from(["flagger-rs", "pause"]).is_err(),
            "a name is required"
        );
    }
}
