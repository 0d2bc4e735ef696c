//! Manual requests to a running canary (`flagger-rs promote|abort|pause|resume|retry`), carried as
//! annotations on the Canary's metadata: GitOps tools re-apply the spec they manage and leave
//! metadata keys they never set alone, so a request survives the next sync.

use std::fmt;
use std::str::FromStr;

/// What is asked: one of [`RequestAction`].
pub const REQUEST: &str = "flagger-rs.dev/request";
/// A value unique to each request; the controller acts on each id once and records it in
/// `status.lastRequest`.
pub const REQUEST_ID: &str = "flagger-rs.dev/request-id";
/// Who asked, as the API server authenticated them when the request was made.
pub const REQUESTED_BY: &str = "flagger-rs.dev/requested-by";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestAction {
    /// Skip the rest of the analysis and promote now.
    Promote,
    /// Roll back now.
    Abort,
    /// Hold the weights where they are; checks keep running.
    Pause,
    /// Take steps again after a pause.
    Resume,
    /// Run the analysis of a failed revision again.
    Retry,
}

impl RequestAction {
    pub const ALL: [RequestAction; 5] = [
        RequestAction::Promote,
        RequestAction::Abort,
        RequestAction::Pause,
        RequestAction::Resume,
        RequestAction::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestAction::Promote => "promote",
            RequestAction::Abort => "abort",
            RequestAction::Pause => "pause",
            RequestAction::Resume => "resume",
            RequestAction::Retry => "retry",
        }
    }
}

impl fmt::Display for RequestAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An annotation value that names no action; says which ones there are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAction(pub String);

impl fmt::Display for UnknownAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = RequestAction::ALL.iter().map(|a| a.as_str()).collect();
        write!(
            f,
            "unknown request {:?}: expected one of {}",
            self.0,
            known.join(", ")
        )
    }
}

impl FromStr for RequestAction {
    type Err = UnknownAction;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAction(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_and_unknown_ones_list_the_known() {
        for action in RequestAction::ALL {
            assert_eq!(action.as_str().parse::<RequestAction>(), Ok(action));
        }
        let error = "Promote".parse::<RequestAction>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown request \"Promote\": expected one of promote, abort, pause, resume, retry"
        );
    }
}
