//! The Redis store (being written; see issue 2).

use crate::StoreError;

/// Placeholder until the Redis implementation lands.
#[derive(Debug)]
pub struct RedisStore;

impl RedisStore {
    pub async fn connect(_url: &str) -> Result<Self, StoreError> {
        Err(StoreError::Config(
            "the Redis store is not implemented yet".into(),
        ))
    }
}
