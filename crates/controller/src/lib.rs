//! The kube-rs shell around the rollout core: it observes the cluster, calls
//! `flagger_core::advance`, and carries out the actions it returns.

pub mod flags;
pub mod metrics;
pub mod workload;
