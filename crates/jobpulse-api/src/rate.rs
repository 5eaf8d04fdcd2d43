//! Per-user rate limits on the routes that write: one user (a token's tenant and subject) may
//! not fill a tenant's job list or database, whatever their role.
//!
//! A keyed GCRA limiter from `governor`: each user may send `burst` requests at once and then
//! one every `60 s / per_minute`. A refused request gets **429** with a `Retry-After` that
//! says when the next one is allowed; nothing is written. Counts are per process (each API
//! replica keeps its own), which bounds one user's rate by `replicas × per_minute`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jobpulse_domain::TenantId;

use crate::auth::Principal;
use crate::error::ApiError;

/// A limit: `per_minute` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    /// The default for job submits that write (JSON, multipart, enroll): 60 a minute, 30 at
    /// once — far above a person at the work box, far below a script filling the database.
    pub const SUBMITS: RateLimit = RateLimit {
        per_minute: 60,
        burst: 30,
    };
}

type Key = (TenantId, Option<String>);

/// Users tracked before idle ones are forgotten (a few hundred bytes each).
const MAX_TRACKED: usize = 10_000;

/// A keyed limiter shared by the API's handlers (cheap to clone).
#[derive(Clone)]
pub struct UserRate {
    limit: RateLimit,
    what: &'static str,
    limiter: Arc<DefaultKeyedRateLimiter<Key>>,
}

impl std::fmt::Debug for UserRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRate")
            .field("limit", &self.limit)
            .field("what", &self.what)
            .field("users", &self.limiter.len())
            .finish()
    }
}

impl UserRate {
    /// A limiter for `what` (named in the 429's message). A zero rate or burst counts as 1.
    pub fn new(limit: RateLimit, what: &'static str) -> Self {
        let one = NonZeroU32::MIN;
        let quota = Quota::per_minute(NonZeroU32::new(limit.per_minute).unwrap_or(one))
            .allow_burst(NonZeroU32::new(limit.burst).unwrap_or(one));
        Self {
            limit,
            what,
            limiter: Arc::new(RateLimiter::keyed(quota)),
        }
    }

    /// The limit it applies.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Counts one request of `p` (tokens without a user id share their tenant's allowance);
    /// 429 with the wait when over the limit.
    pub fn check(&self, p: &Principal) -> Result<(), ApiError> {
        if self.limiter.len() > MAX_TRACKED {
            self.forget_idle();
        }
        let key = (p.tenant, p.user_id.clone());
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                tracing::warn!(
                    tenant = %p.tenant,
                    user = p.user_id.as_deref().unwrap_or("-"),
                    what = self.what,
                    retry_after_ms = wait.as_millis() as u64,
                    "rate limited"
                );
                Err(ApiError::RateLimited {
                    what: self.what,
                    retry_after: wait.max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// Forgets users whose allowance is full again (they are indistinguishable from new ones).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}
