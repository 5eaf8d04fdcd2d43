//! The `excel_parsing` handler: imports a sheet of students into a lecture (docs/contract.md §3, the
//! rules in docs/excel-import.md).
//!
//! Steps (`steps::EXCEL_IMPORT`): 1 downloading — the .xlsx from media storage into memory
//! (bounded); 2 parsing — [`import::import_xlsx`](crate::excel::import::import_xlsx) on a blocking thread, its progress fraction
//! driving the step percent; 3 enrolling — one database transaction per sheet row
//! ([`jobpulse_db::Db::import_student_row`] / [`jobpulse_db::Db::record_failed_row`]), per-row progress; 4 done — the
//! result, built from the job's import ledger.
//!
//! **Idempotent per job.** Every row's outcome is recorded in the job's ledger in the same
//! transaction as its effect, and the result is read back from that ledger. An attempt that
//! died half-way (worker killed, lease lost) leaves its finished rows recorded; the next
//! attempt skips them and reports them as before, credentials included — never a second
//! student.
//!
//! **Credentials** are generated and hashed ahead of the rows that need them, on blocking
//! threads (`CredentialSource`), so the runtime keeps serving heartbeats and the hashing
//! overlaps the inserts. A login id taken in the tenant (siblings share the parent phone) is
//! retried with the next [`credentials::login_id`] attempt.
//!
//! The submodules: `input` (the lecture and session, the file, the parse), `enroll` (step 3,
//! row by row), `passwords` (where each created student's initial password comes from) and
//! `ledger` (the result, read back from the job's import ledger).

mod enroll;
mod input;
mod ledger;
mod passwords;

use std::num::NonZeroUsize;
use std::time::Duration;

use jobpulse_db::CredentialSeal;
use jobpulse_db::sealed::SEALED_CREDENTIALS_KEY;
use jobpulse_domain::enroll::{
    EnrollOptions, PAYLOAD_FIXED_SEALED, PAYLOAD_INITIAL_PASSWORD, payload_context,
};
use jobpulse_domain::steps::{self, StepPlan};
use jobpulse_domain::{JobResult, JobType};

use self::input::{download, lecture, parse, target};
use self::ledger::report_from_ledger;
use super::{Handler, HandlerError, HandlerOutput, JobContext};
use crate::excel::credentials;
use crate::excel::import::Limits;
use crate::excel::report::ImportReport;

/// Default largest input file (the API checks uploads too).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// Login id attempts per row before giving up (10 readable ones, then random ones, which
/// collide with probability ~1e-8 each).
const MAX_LOGIN_ATTEMPTS: u32 = credentials::DETERMINISTIC_ATTEMPTS + 10;

/// The per-row error of a `phone_last4` import row without a student phone.
pub const NO_PHONE_FOR_PASSWORD: &str =
    "학생 전화번호가 없어 초기 비밀번호(학생 전화번호 뒤 4자리)를 만들 수 없습니다";

/// How the import runs.
#[derive(Debug, Clone)]
pub struct ExcelImportSettings {
    pub limits: Limits,
    /// Largest input file read into memory.
    pub max_file_bytes: u64,
    /// Login ids are this prefix + the last 8 digits of the parent phone.
    pub login_prefix: String,
    /// Threads hashing passwords.
    pub hash_threads: NonZeroUsize,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// Seals the initial passwords wherever they are stored (`jobpulse_db::sealed`); the API
    /// must have the same key to show them. Default: a random key (what this process seals
    /// only it can open — for tests; `jobpulse` passes the configured key).
    pub seal: CredentialSeal,
    /// How long the read model's copy of the credentials opens (the DONE answer shows them
    /// that long; `None`: as long as the record lives). The workers' credentials retention.
    pub credentials_retention: Option<Duration>,
}

impl Default for ExcelImportSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            login_prefix: credentials::DEFAULT_LOGIN_PREFIX.to_owned(),
            hash_threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            timeout: Duration::from_secs(30 * 60),
            max_attempts: 5,
            seal: CredentialSeal::random(),
            credentials_retention: Some(super::DEFAULT_CREDENTIALS_RETENTION),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct ExcelImportHandler {
    settings: ExcelImportSettings,
}

impl ExcelImportHandler {
    pub fn new(settings: ExcelImportSettings) -> Self {
        Self { settings }
    }
}

#[async_trait::async_trait]
impl Handler for ExcelImportHandler {
    fn job_type(&self) -> &'static str {
        JobType::EXCEL_PARSING
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn needs_file(&self) -> bool {
        true
    }

    fn staff_only(&self) -> bool {
        true
    }

    fn max_attempts(&self) -> u32 {
        self.settings.max_attempts
    }

    fn plan(&self) -> StepPlan {
        steps::EXCEL_IMPORT
    }

    async fn run(&self, ctx: &JobContext) -> Result<HandlerOutput, HandlerError> {
        let r = &ctx.reporter;

        r.step(1).await;
        let lecture_id = lecture(ctx).await?;
        let options = self.options(ctx)?;
        let target = target(ctx, lecture_id, options.session_id).await?;
        let bytes = download(ctx, self.settings.max_file_bytes).await?;
        ctx.check_cancelled()?;

        r.step(2).await;
        let sheet = parse(ctx, bytes, self.settings.limits.clone()).await?;
        ctx.check_cancelled()?;

        r.step(3).await;
        self.enroll(ctx, target, &options, &sheet).await?;

        r.step(4).await;
        let ledger = ctx
            .db
            .import_rows(ctx.job_id())
            .await
            .map_err(HandlerError::from_db)?;
        let report = report_from_ledger(ledger, sheet.rows.len(), &self.settings.seal)?;
        tracing::info!(
            tenant.id = %ctx.tenant(),
            job.id = %ctx.job_id(),
            created = report.created,
            duplicates = report.duplicates.len(),
            restored = report.restored.len(),
            failed = report.failed.len(),
            "students imported"
        );
        let (full, read) = self.results(ctx, &report)?;
        Ok(HandlerOutput::done(full, read))
    }
}

impl ExcelImportHandler {
    /// The enroll options of the payload, the `fixed` password opened (the API seals it).
    fn options(&self, ctx: &JobContext) -> Result<EnrollOptions, HandlerError> {
        let mut payload = ctx.payload().clone();
        if let Some(obj) = payload.as_object_mut()
            && let Some(v) = obj.remove(PAYLOAD_FIXED_SEALED)
        {
            let sealed = v.as_str().unwrap_or_default();
            let clear = self
                .settings
                .seal
                .open_text(&payload_context(ctx.tenant()), sealed)
                .map_err(|e| {
                    HandlerError::Permanent(format!(
                        "the fixed initial password does not open ({e}): the API and the AI \
                         workers need the same JOBPULSE_CREDENTIALS_KEY"
                    ))
                })?;
            obj.insert(PAYLOAD_INITIAL_PASSWORD.to_owned(), clear.into());
        }
        EnrollOptions::from_payload(&payload).map_err(|e| HandlerError::BadInput(e.to_string()))
    }

    /// The full result (stored in the database) and the read model's: both with the
    /// credentials sealed (`credentials_sealed`), the read model's copy expiring after the
    /// credentials retention; the read model's inline only when it fits (else `result_url`).
    fn results(
        &self,
        ctx: &JobContext,
        report: &ImportReport,
    ) -> Result<(serde_json::Value, JobResult), HandlerError> {
        let invalid = |e: String| HandlerError::Permanent(format!("result: {e}"));
        let job = ctx.job_id().as_str();
        let seal = &self.settings.seal;
        let public = serde_json::to_value(report.without_credentials())
            .map_err(|e| invalid(e.to_string()))?;
        let with_sealed = |expires: Option<i64>| -> Result<serde_json::Value, HandlerError> {
            let sealed = seal
                .seal_credentials(job, &report.credentials, expires)
                .map_err(|e| invalid(e.to_string()))?;
            let mut v = public.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert(SEALED_CREDENTIALS_KEY.to_owned(), sealed.into());
            }
            Ok(v)
        };
        let full = with_sealed(None)?;
        let expires = self.settings.credentials_retention.map(|keep| {
            let keep = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            jobpulse_db::now_ms().saturating_add(keep)
        });
        // The full result is always stored, so there is always a result_url.
        let mut read = JobResult::summary_with_full(with_sealed(expires)?)
            .map_err(|e| invalid(e.to_string()))?;
        if read.inline.is_none() {
            // Too large with the credentials: the public summary alone, when it fits.
            read = JobResult::summary_with_full(public).map_err(|e| invalid(e.to_string()))?;
        }
        Ok((full, read))
    }
}
