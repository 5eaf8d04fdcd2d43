//! The progress schema: what a task's visible state may contain, with its bounds.
//!
//! [`State`] is what the read model stores for one task and what the progress endpoints render.
//! [`State::validate`] holds the invariants docs/contract.md states (UPLOADED is 0 %, READY is 100 %,
//! step detail only while a worker is active, results only on terminal job states, ...), so a
//! state that reached a store is always renderable.
//!
//! The submodules: `values` (the bounded values: [`Percent`], [`Text`], [`StepProgress`]) and
//! `state` (a task's [`State`] with its invariants, and a job's [`JobResult`]).

mod state;
#[cfg(test)]
mod tests;
mod values;

pub use self::state::{JobResult, PreviousAttempt, State};
pub use self::values::{Percent, StepProgress, Text};

/// Why a progress value or state was refused. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgressError {
    #[error("percent must be an integer from 0 to 100")]
    Percent,
    #[error("step index must be between 1 and step total (at most 32)")]
    StepIndex,
    #[error("{field} must be 1 to {max} characters without control characters")]
    Text { field: &'static str, max: usize },
    #[error("step name must be 1 to 32 characters of a-z, 0-9 or '_'")]
    StepName,
    #[error("status {status} does not belong to a {kind} task")]
    KindMismatch {
        status: &'static str,
        kind: &'static str,
    },
    #[error("{0}")]
    Invariant(&'static str),
    #[error("result must be a JSON object")]
    ResultNotObject,
}
