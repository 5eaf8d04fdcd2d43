//! Where a created student's initial password comes from
//! ([`PasswordMode`](jobpulse_domain::enroll::PasswordMode)): generated and hashed ahead on
//! blocking threads, the student phone's last 4 digits, or one fixed password.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ai::HandlerError;
use crate::excel::credentials::{self, CredentialError};
use crate::excel::import::StudentRow;

/// Generated credentials hashed ahead of the rows.
const CREDENTIAL_BUFFER: usize = 64;

/// A password and its hash.
pub(super) type Generated = (String, String);

/// Where the initial password of a created student comes from
/// ([`PasswordMode`](jobpulse_domain::enroll::PasswordMode)).
#[derive(Debug)]
pub(super) enum Passwords {
    Random(CredentialSource),
    /// Hashed per row (light setting, see [`credentials::hash_phone_password`]).
    PhoneLast4,
    /// The same password and hash for every row.
    Fixed(String, String),
}

impl Passwords {
    /// The password for `row`, `None` when it has nothing to make one from (`phone_last4`
    /// without a student phone).
    pub(super) async fn take(
        &mut self,
        row: &StudentRow,
    ) -> Result<Option<Generated>, HandlerError> {
        match self {
            Self::Random(source) => source.take().await.map(Some),
            Self::PhoneLast4 => {
                let Some(phone) = row.phone.as_ref() else {
                    return Ok(None);
                };
                let phone = phone.clone();
                tokio::task::spawn_blocking(move || {
                    let hash = credentials::hash_phone_password(&phone)?;
                    Ok::<_, CredentialError>((credentials::phone_last4(&phone), hash))
                })
                .await
                .map_err(|e| HandlerError::Transient(format!("hashing: {e}")))?
                .map(Some)
                .map_err(|e| HandlerError::Transient(e.to_string()))
            }
            Self::Fixed(password, hash) => Ok(Some((password.clone(), hash.clone()))),
        }
    }

    /// A password taken for a row that created no student: a generated one serves the next row.
    pub(super) fn give_back(&mut self, g: Generated) {
        if let Self::Random(source) = self {
            source.give_back(g);
        }
    }
}

/// Generated passwords, hashed ahead on blocking threads: up to `count` of them, then one at a
/// time on demand. Producers stop when the source is dropped or the attempt is cancelled.
#[derive(Debug)]
pub(super) struct CredentialSource {
    rx: mpsc::Receiver<Result<Generated, CredentialError>>,
    /// Taken for a row that did not create a student: the next row uses it.
    spare: Vec<Generated>,
}

fn generate() -> Result<Generated, CredentialError> {
    let p = credentials::generate_password()?;
    let h = credentials::hash_generated_password(&p)?;
    Ok((p.into_string(), h))
}

impl CredentialSource {
    pub(super) fn start(count: usize, threads: NonZeroUsize, cancel: &CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(CREDENTIAL_BUFFER);
        let left = Arc::new(AtomicUsize::new(count));
        for _ in 0..threads.get().min(count) {
            let (tx, left, cancel) = (tx.clone(), left.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || {
                let take = || {
                    left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                        .is_ok()
                };
                while !cancel.is_cancelled() && take() {
                    if tx.blocking_send(generate()).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            rx,
            spare: Vec::new(),
        }
    }

    async fn take(&mut self) -> Result<Generated, HandlerError> {
        if let Some(g) = self.spare.pop() {
            return Ok(g);
        }
        let next = match self.rx.recv().await {
            Some(g) => g,
            // More were needed than counted (a student deleted meanwhile): one more, off the
            // runtime like the rest.
            None => tokio::task::spawn_blocking(generate)
                .await
                .map_err(|e| HandlerError::Transient(format!("hashing: {e}")))?,
        };
        next.map_err(|e| HandlerError::Transient(e.to_string()))
    }

    fn give_back(&mut self, g: Generated) {
        self.spare.push(g);
    }
}
