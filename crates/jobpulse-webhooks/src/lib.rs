//! Completion webhooks: what a tenant's staff register to hear of finished videos and jobs.
//!
//! The database side (endpoints, and deliveries enqueued in the transaction of the state
//! change they announce) is `jobpulse_db::webhooks`. This crate holds what talks to the
//! outside world:
//!
//! - [`guard`]: which URLs may be called — http/https only, and no loopback, private,
//!   link-local, CGNAT, multicast or unspecified address (SSRF), checked when an endpoint is
//!   registered and again, on a fresh DNS answer, at every delivery; an operator allow-list
//!   ([`AllowList`]) lifts the address rule for chosen networks or host names.
//! - [`mod@sign`]: the Standard Webhooks signature (`webhook-signature: v1,<base64 HMAC-SHA256>`).
//! - [`sender`]: the background service that claims due deliveries, POSTs them (pinned to the
//!   checked address, timeouts, a capped response read, no redirects) and settles them:
//!   delivered, retried on the backoff schedule, or dead once the retry window is over.
//!
//! See `docs/contract.md` ("Webhooks") for what receivers see.

pub mod guard;
pub mod sender;
pub mod sign;

pub use guard::{AllowList, GuardError, Target, check_url};
pub use sender::{Sender, SenderConfig};
pub use sign::{SignError, sign};
