//! Redis errors as [`StoreError`]s: out of reach (`Unavailable`, which callers wait out or report
//! as such) or anything else (`Protocol`), for client errors and for server errors left inside a
//! pipeline's replies.

use ::redis::{ErrorKind, RedisError, ServerErrorKind, Value};

use crate::StoreError;

/// Maps a client error: the store being out of reach is `Unavailable`, anything else `Protocol`.
pub(crate) fn redis_error(e: RedisError) -> StoreError {
    let unreachable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        )
        || matches!(e.code(), Some("OOM" | "BUSY" | "MISCONF"));
    if unreachable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

/// A server error left inside a pipeline's replies.
pub(crate) fn server_error(v: &Value) -> Option<StoreError> {
    let Value::ServerError(e) = v else {
        return None;
    };
    let msg = format!("{} {}", e.code(), e.details().unwrap_or_default());
    Some(match e.code() {
        "OOM" | "BUSY" | "MISCONF" | "LOADING" | "MASTERDOWN" | "READONLY" | "TRYAGAIN"
        | "CLUSTERDOWN" => StoreError::Unavailable(msg),
        _ => StoreError::Protocol(msg),
    })
}
