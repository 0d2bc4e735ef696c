//! Why a canary's workloads could not be read or written, and the reason a person sees for it.

use flagger_api::validate::reason;
use flagger_providers::wording::Plain;

use crate::workload::WorkloadError;

/// A failure of the target shell. User mistakes (a missing target, a rule of Flagger's workload
/// handling broken by the user's objects) are told apart from the API server failing, so the
/// first become a Warning naming the object and the second a retried tick.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{kind} {name}.{namespace} not found")]
    TargetNotFound {
        kind: String,
        name: String,
        namespace: String,
    },
    #[error(
        "targetRef.kind {0} has no workload support in flagger-rs (Deployment, DaemonSet and Service do; validation refuses the rest)"
    )]
    UnsupportedKind(String),
    #[error("{kind} {name}.{namespace} not found")]
    AutoscalerNotFound {
        kind: String,
        name: String,
        namespace: String,
    },
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// Worded as the API server said it, on one line (see `wording`).
    #[error("{}", Plain(.0))]
    Kube(#[from] kube::Error),
}

impl TargetError {
    /// The event/condition reason of a user mistake; `None` for API failures, which are retried.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            TargetError::TargetNotFound { .. } => Some("TargetNotFound"),
            TargetError::UnsupportedKind(_)
            | TargetError::AutoscalerNotFound { .. }
            | TargetError::Workload(_) => Some(reason::INVALID_SPEC),
            TargetError::Kube(_) => None,
        }
    }
}

impl From<serde_json::Error> for TargetError {
    fn from(e: serde_json::Error) -> Self {
        TargetError::Kube(kube::Error::SerdeError(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_mistakes_carry_a_reason_and_api_failures_do_not() {
        let missing = TargetError::TargetNotFound {
            kind: "Deployment".into(),
            name: "podinfo".into(),
            namespace: "test".into(),
        };
        assert_eq!(missing.reason(), Some("TargetNotFound"));
        assert_eq!(missing.to_string(), "Deployment podinfo.test not found");
        let so = TargetError::AutoscalerNotFound {
            kind: "ScaledObject".into(),
            name: "podinfo-so".into(),
            namespace: "test".into(),
        };
        assert_eq!(so.reason(), Some(reason::INVALID_SPEC));
        assert_eq!(so.to_string(), "ScaledObject podinfo-so.test not found");
        let broken = TargetError::from(WorkloadError::CanaryWithoutUid("podinfo".into()));
        assert_eq!(broken.reason(), Some(reason::INVALID_SPEC));
        assert!(
            !broken.to_string().contains("422"),
            "a user mistake is not dressed as an API error"
        );
        let api = TargetError::from(kube::Error::Api(
            kube::core::Status::failure("etcd timeout", "Timeout")
                .with_code(504)
                .boxed(),
        ));
        assert_eq!(api.reason(), None);
        assert_eq!(api.to_string(), "etcd timeout (Timeout)");
    }
}
