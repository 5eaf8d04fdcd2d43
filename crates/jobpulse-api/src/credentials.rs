//! Showing an import's sealed initial passwords to staff (docs/contract.md §3): the API opens the
//! `credentials_sealed` value of a result ([`jobpulse_db::sealed`]) into `credentials`.
//!
//! - In the read model's inline result (the DONE answer of the progress route, the batch route
//!   and the stream): opened while it has not expired, else `credentials` stays `[]`. Only staff
//!   ever get an `excel_parsing` answer (students and parents get 404 / nothing), so the routes
//!   need no further check.
//! - In the stored full result (the result route): opened until the workers purge it.
//!
//! The sealed value itself never leaves the API. A server without the workers' key (or with
//! another one) answers without the passwords and logs why, once per answer.

use jobpulse_db::CredentialSeal;
use jobpulse_db::sealed::SEALED_CREDENTIALS_KEY;
use serde_json::{Map, Value};

/// Whether a result holds sealed credentials (the only results [`reveal`] changes).
pub fn has_sealed(result: &Map<String, Value>) -> bool {
    result.contains_key(SEALED_CREDENTIALS_KEY)
}

/// `result` with its sealed credentials replaced by `credentials` (when they open and have not
/// expired at `now_ms`), or just removed.
pub fn reveal(
    mut result: Map<String, Value>,
    job_id: &str,
    seal: Option<&CredentialSeal>,
    now_ms: i64,
) -> Map<String, Value> {
    let Some(Value::String(sealed)) = result.remove(SEALED_CREDENTIALS_KEY) else {
        return result;
    };
    let Some(seal) = seal else {
        tracing::warn!(
            job.id = job_id,
            "an import result holds sealed credentials but this server has no credentials key \
             (set JOBPULSE_CREDENTIALS_KEY, the same as the AI workers')"
        );
        return result;
    };
    match seal.open_credentials(job_id, &sealed, now_ms) {
        Ok(Some(credentials)) => {
            result.insert("credentials".to_owned(), credentials);
        }
        Ok(None) => {
            result
                .entry("credentials".to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
        }
        Err(e) => {
            tracing::warn!(
                job.id = job_id,
                error = %e,
                "the sealed credentials of an import do not open: is JOBPULSE_CREDENTIALS_KEY \
                 the same for the API and the AI workers?"
            );
        }
    }
    result
}

/// Seals the `fixed` password of an `excel_parsing` payload (`initial_password` →
/// `initial_password_sealed`, sealed to the tenant) so the job row never holds it in clear.
/// A client may not send a sealed value itself; a server without a key cannot take a `fixed`
/// password.
pub fn seal_payload(
    payload: &mut Map<String, Value>,
    tenant: jobpulse_domain::TenantId,
    seal: Option<&CredentialSeal>,
) -> Result<(), crate::error::ApiError> {
    use crate::error::ApiError;
    use jobpulse_domain::enroll::{
        PAYLOAD_FIXED_SEALED, PAYLOAD_INITIAL_PASSWORD, payload_context,
    };
    if payload.contains_key(PAYLOAD_FIXED_SEALED) {
        return Err(ApiError::BadRequest(format!(
            "{PAYLOAD_FIXED_SEALED} is set by the server; send initial_password"
        )));
    }
    let Some(Value::String(clear)) = payload.remove(PAYLOAD_INITIAL_PASSWORD) else {
        return Ok(());
    };
    let seal = seal.ok_or(ApiError::Unavailable {
        what: "the credentials key (JOBPULSE_CREDENTIALS_KEY) that keeps a fixed password encrypted",
        cause: None,
    })?;
    let sealed = seal
        .seal_text(&payload_context(tenant), &clear)
        .map_err(ApiError::internal)?;
    payload.insert(PAYLOAD_FIXED_SEALED.to_owned(), sealed.into());
    Ok(())
}

/// Now, as Unix milliseconds: the database's application clock, which sealed credentials'
/// expiries are written with.
pub use jobpulse_db::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn opens_for_its_job_until_it_expires() {
        let seal = CredentialSeal::random();
        let creds = serde_json::json!([{"name": "김", "login_id": "s1", "password": "pw"}]);
        let sealed = seal
            .seal_credentials("job1", &creds, Some(5_000))
            .expect("seals");
        let result = map(serde_json::json!({"created": 1, "credentials": [],
                                             SEALED_CREDENTIALS_KEY: sealed}));
        assert!(has_sealed(&result));
        let shown = reveal(result.clone(), "job1", Some(&seal), 4_000);
        assert_eq!(shown["credentials"], creds);
        assert!(!has_sealed(&shown));
        let late = reveal(result.clone(), "job1", Some(&seal), 5_000);
        assert_eq!(late["credentials"], serde_json::json!([]));
        assert!(!has_sealed(&late));
        let other_job = reveal(result.clone(), "job2", Some(&seal), 4_000);
        assert_eq!(other_job["credentials"], serde_json::json!([]));
        let no_key = reveal(result, "job1", None, 4_000);
        assert_eq!(no_key["credentials"], serde_json::json!([]));
        assert!(!has_sealed(&no_key));
    }
}
