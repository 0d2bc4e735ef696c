//! The rollout state machine.
