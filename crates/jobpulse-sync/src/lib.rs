//! The projection of jobpulse's source of truth (`jobpulse-db`) into its read model
//! (`jobpulse-store`): the only crate that knows both.
//!
//! Every state change commits an outbox row holding the exact [`jobpulse_domain::Write`] in the
//! same transaction as the change. The [`Relay`] applies outbox rows to the read model
//! (`StatusStore`) and deletes them; [`repair()`] can rebuild the read model from the rows at any
//! time, because each row carries the fence of its last change. See `docs/architecture.md` for
//! the whole picture and the failure cases.
//!
//! # Layout
//!
//! - [`relay`]: [`Relay`] — the outbox relay (background loop, drain, publish-now).
//! - [`mod@repair`]: full repair, the background [`Reconciler`], and bounded [`ReadRepair`].

pub mod relay;
pub mod repair;

pub use relay::{PublishError, Relay, RelayConfig, RelayReport};
pub use repair::{
    ReadRepair, ReadRepairConfig, ReadRepairTask, Reconciler, RepairReport, read_repair, repair,
};
