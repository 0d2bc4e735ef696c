//! Manual requests (`promote`, `abort`, `pause`, `resume`, `retry`): which one is valid in which
//! phase, and how a request is taken exactly once.
//!
//! A request is an annotation with an id; the status records the id of the last request
//! answered, in the same write as the decision it led to, so a request is acted on once however
//! often the tick runs and whatever a GitOps tool re-applies meanwhile.

use flagger_api::request::RequestAction;
use flagger_api::status::{CanaryPhase, HandledRequest};

use crate::action::{EventName, Severity};
use crate::observation::ManualRequest;
use crate::status::set_promoted_message;
use crate::tick::Tick;

/// The answer to a request in a phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Takes effect now.
    Apply(RequestAction),
    /// Changes nothing; the message says why, for the person who asked.
    Refuse(String),
}

/// Which request is valid in which phase; `paused` is whether a `pause` holds the run.
pub fn decide(action: RequestAction, phase: CanaryPhase, paused: bool) -> Verdict {
    use CanaryPhase as P;
    use RequestAction as A;
    let refuse = |why: &str| Verdict::Refuse(why.to_string());
    match (phase, action) {
        (P::Terminating | P::Terminated, _) => refuse("the canary is being deleted"),
        (P::New | P::Initializing, _) => refuse("the canary is not initialised yet"),
        (_, A::Resume) if !paused => refuse("the canary is not paused"),
        (_, A::Resume) => Verdict::Apply(A::Resume),
        (_, A::Pause) if paused => refuse("the canary is already paused"),
        (P::Promoting | P::Finalising, A::Pause) => {
            refuse("the promotion is under way: there is no step left to hold")
        }
        (_, A::Pause) => Verdict::Apply(A::Pause),
        (P::Waiting | P::Progressing | P::WaitingPromotion, A::Promote | A::Abort) => {
            Verdict::Apply(action)
        }
        (P::Promoting | P::Finalising, A::Promote) => refuse("the canary is already promoting"),
        (P::Initialized | P::Succeeded, A::Promote) => {
            refuse("the canary is already promoted: no run to promote")
        }
        (P::Failed, A::Promote) => refuse("the run failed: `retry` analyses this revision again"),
        (P::Promoting | P::Finalising, A::Abort) => {
            refuse("the promotion is under way: the primary already runs the new revision")
        }
        (P::Initialized | P::Succeeded, A::Abort) => refuse("no run to abort"),
        (P::Failed, A::Abort) => refuse("the run already rolled back"),
        (P::Failed, A::Retry) => Verdict::Apply(A::Retry),
        (_, A::Retry) => refuse("only a failed canary can be retried"),
    }
}

/// The pending request of this tick, if any: answered (recorded in the status, with its event and,
/// when it takes effect, its alert), and returned when it takes effect. Pause and resume take
/// effect here; the others are for the caller to carry out in this same tick. Comes back with
/// who asked.
pub(crate) fn take(t: &mut Tick) -> Option<(RequestAction, String)> {
    let request = t.obs.request.as_ref()?;
    let answered = t.start.last_request.as_ref();
    if answered.is_some_and(|a| a.id == request.id) {
        return None;
    }
    let phase = t.phase();
    let paused = t.status.paused_by.is_some();
    let verdict = match request.action.parse::<RequestAction>() {
        Ok(action) => decide(action, phase, paused),
        Err(unknown) => Verdict::Refuse(unknown.to_string()),
    };
    let by = requester(request);
    let key = t.spec.key();
    let message = match &verdict {
        Verdict::Apply(action) => applied(*action, &by),
        // Worded apart from the accepted answers ("Pause requested by ..."), so that the
        // one cannot be mistaken for the other.
        Verdict::Refuse(why) => format!(
            "Refused {:?} from {by} (phase {phase}): {why}",
            request.action
        ),
    };
    t.status.last_request = Some(HandledRequest {
        id: request.id.clone(),
        action: request.action.clone(),
        requested_by: request.requested_by.clone(),
        accepted: matches!(verdict, Verdict::Apply(_)),
        message: message.clone(),
        handled_at: Some(t.now),
    });
    let Verdict::Apply(action) = verdict else {
        t.warning(EventName::ManualRequest, format!("{key}: {message}"));
        return None;
    };
    t.normal(EventName::ManualRequest, format!("{key}: {message}"));
    // A rollback reaches on-call at error severity, however it was asked for.
    let severity = if action == RequestAction::Abort {
        Severity::Error
    } else {
        Severity::Info
    };
    let fields = vec![
        ("Requested by".to_string(), by.clone()),
        ("Request".to_string(), action.to_string()),
    ];
    t.alert(severity, message, fields, None);
    match action {
        RequestAction::Pause => {
            t.status.paused_by = Some(by.clone());
        }
        // An explicit promote or abort ends the run, and with it the hold.
        RequestAction::Resume | RequestAction::Promote | RequestAction::Abort => {
            if t.status.paused_by.take().is_some() {
                set_promoted_message(&mut t.status, None, &t.spec.target_kind, t.now);
            }
        }
        RequestAction::Retry => {}
    }
    Some((action, by))
}

/// Who asked, for messages: the identity the request carries, or a plain "unknown user".
pub(crate) fn requester(request: &ManualRequest) -> String {
    request
        .requested_by
        .clone()
        .filter(|by| !by.is_empty())
        .unwrap_or_else(|| "an unknown user".to_string())
}

fn applied(action: RequestAction, by: &str) -> String {
    match action {
        RequestAction::Promote => {
            format!("Promotion requested by {by}: the rest of the analysis is skipped")
        }
        RequestAction::Abort => format!("Rollback requested by {by}: the run is aborted"),
        RequestAction::Pause => {
            format!("Pause requested by {by}: weights hold, checks keep running")
        }
        RequestAction::Resume => format!("Resume requested by {by}: the run takes steps again"),
        RequestAction::Retry => {
            format!("Retry requested by {by}: the failed revision is analysed again")
        }
    }
}

/// While paused, a tick that got this far ran its checks and takes no step; the `Promoted`
/// condition says who holds it.
pub(crate) fn hold(t: &mut Tick) -> bool {
    let Some(by) = t.status.paused_by.clone() else {
        return false;
    };
    let message = format!("Canary analysis paused by {by}: weights hold, checks keep running.");
    set_promoted_message(&mut t.status, Some(message), &t.spec.target_kind, t.now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use CanaryPhase as P;
    use RequestAction as A;

    fn applies(action: RequestAction, phase: CanaryPhase, paused: bool) -> bool {
        decide(action, phase, paused) == Verdict::Apply(action)
    }

    /// Every request in every phase, unpaused: the table the docs describe.
    #[test]
    fn which_request_is_valid_in_which_phase() {
        let phases = [
            P::New,
            P::Initializing,
            P::Initialized,
            P::Waiting,
            P::Progressing,
            P::WaitingPromotion,
            P::Promoting,
            P::Finalising,
            P::Succeeded,
            P::Failed,
            P::Terminating,
            P::Terminated,
        ];
        // promote, abort, pause, retry (resume needs a pause: below).
        let table: [(CanaryPhase, [bool; 4]); 12] = [
            (P::New, [false, false, false, false]),
            (P::Initializing, [false, false, false, false]),
            (P::Initialized, [false, false, true, false]),
            (P::Waiting, [true, true, true, false]),
            (P::Progressing, [true, true, true, false]),
            (P::WaitingPromotion, [true, true, true, false]),
            (P::Promoting, [false, false, false, false]),
            (P::Finalising, [false, false, false, false]),
            (P::Succeeded, [false, false, true, false]),
            (P::Failed, [false, false, true, true]),
            (P::Terminating, [false, false, false, false]),
            (P::Terminated, [false, false, false, false]),
        ];
        assert_eq!(table.map(|(p, _)| p), phases);
        for (phase, expected) in table {
            let got = [A::Promote, A::Abort, A::Pause, A::Retry].map(|a| applies(a, phase, false));
            assert_eq!(got, expected, "{phase:?}");
            assert!(
                !applies(A::Resume, phase, false),
                "{phase:?}: nothing to resume"
            );
        }
    }

    #[test]
    fn pause_and_resume_depend_on_the_hold() {
        assert_eq!(
            decide(A::Pause, P::Progressing, true),
            Verdict::Refuse("the canary is already paused".into())
        );
        assert!(applies(A::Resume, P::Progressing, true));
        assert!(applies(A::Resume, P::Succeeded, true));
        assert!(!applies(A::Resume, P::Terminating, true));
        // A paused run can still be promoted or aborted: the person asking wants it over.
        assert!(applies(A::Promote, P::Progressing, true));
        assert!(applies(A::Abort, P::WaitingPromotion, true));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            decide(A::Promote, P::Succeeded, false),
            Verdict::Refuse("the canary is already promoted: no run to promote".into())
        );
        assert_eq!(
            decide(A::Retry, P::Progressing, false),
            Verdict::Refuse("only a failed canary can be retried".into())
        );
        assert_eq!(
            decide(A::Promote, P::Failed, false),
            Verdict::Refuse("the run failed: `retry` analyses this revision again".into())
        );
    }
}
