//! The import result, read back from the job's ledger: the same for every attempt, credentials
//! included.

use jobpulse_db::sealed::SEALED_PREFIX;
use jobpulse_db::{CredentialSeal, ImportOutcome, ImportRow};

use crate::ai::HandlerError;
use crate::excel::report::{Credential, FailedRow, ImportReport, RowRef};

/// The import result, read from the job's ledger (the same for every attempt).
pub(super) fn report_from_ledger(
    ledger: Vec<ImportRow>,
    sheet_rows: usize,
    seal: &CredentialSeal,
) -> Result<ImportReport, HandlerError> {
    if ledger.len() != sheet_rows {
        return Err(HandlerError::Permanent(format!(
            "the import ledger holds {} rows but the sheet has {sheet_rows}",
            ledger.len()
        )));
    }
    let mut report = ImportReport::default();
    for r in ledger {
        let name = r.name.unwrap_or_default();
        let row = r.row_number;
        match r.outcome {
            ImportOutcome::Created => {
                report.created += 1;
                match (r.login_id, r.initial_password) {
                    (Some(login_id), Some(stored)) => report.credentials.push(Credential {
                        name,
                        login_id,
                        password: open_ledger_password(seal, &r.job_id, &stored)?,
                    }),
                    _ => {
                        return Err(HandlerError::Permanent(format!(
                            "the import ledger lost the credentials of row {row}"
                        )));
                    }
                }
            }
            ImportOutcome::Duplicate => report.duplicates.push(RowRef { row, name }),
            ImportOutcome::Restored => report.restored.push(RowRef { row, name }),
            ImportOutcome::Failed => report.failed.push(FailedRow {
                row,
                name,
                error: r.error.unwrap_or_default(),
            }),
        }
    }
    Ok(report)
}

/// A ledger password: sealed (a row written before passwords were sealed is taken as is).
fn open_ledger_password(
    seal: &CredentialSeal,
    job: &jobpulse_domain::JobId,
    stored: &str,
) -> Result<String, HandlerError> {
    if !stored.starts_with(SEALED_PREFIX) {
        return Ok(stored.to_owned());
    }
    seal.open_text(job.as_str(), stored).map_err(|e| {
        HandlerError::Permanent(format!(
            "an initial password in the import ledger does not open ({e}): was \
             JOBPULSE_CREDENTIALS_KEY changed while the job ran?"
        ))
    })
}
