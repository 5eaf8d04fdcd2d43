//! The `excel_parsing` handler: imports a sheet of students into a lecture (docs/contract.md §3, the
//! rules in docs/excel-import.md).
//!
//! Steps (`steps::EXCEL_IMPORT`): 1 downloading — the .xlsx from media storage into memory
//! (bounded); 2 parsing — [`import::import_xlsx`] on a blocking thread, its progress fraction
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

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jobpulse_db::sealed::{SEALED_CREDENTIALS_KEY, SEALED_PREFIX};
use jobpulse_db::{
    CredentialSeal, DbError, EnrollTarget, ImportOutcome, ImportRow, NewCredentials, StudentInput,
};
use jobpulse_domain::enroll::{
    EnrollOptions, PAYLOAD_FIXED_SEALED, PAYLOAD_INITIAL_PASSWORD, PasswordMode, payload_context,
};
use jobpulse_domain::steps::{self, StepPlan};
use jobpulse_domain::{JobResult, JobType};
use jobpulse_media::StorageError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Handler, HandlerError, HandlerOutput, JobContext};
use crate::excel::credentials::{self, CredentialError};
use crate::excel::import::{self, Import, Limits, StudentRow};
use crate::excel::report::{Credential, FailedRow, ImportReport, RowRef};
use crate::progress::Eta;

/// Default largest input file (the API checks uploads too).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// Login id attempts per row before giving up (10 readable ones, then random ones, which
/// collide with probability ~1e-8 each).
const MAX_LOGIN_ATTEMPTS: u32 = credentials::DETERMINISTIC_ATTEMPTS + 10;

/// Generated credentials hashed ahead of the rows.
const CREDENTIAL_BUFFER: usize = 64;

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
            now_ms().saturating_add(keep)
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The lecture to enroll into; it must exist in the job's tenant.
async fn lecture(ctx: &JobContext) -> Result<i64, HandlerError> {
    let id = ctx.lecture_id()?.ok_or_else(|| {
        HandlerError::BadInput("학생을 등록할 강의(lecture_id)가 지정되지 않았습니다.".to_owned())
    })?;
    match ctx.db.get_lecture(ctx.tenant(), id).await {
        Ok(Some(_)) => Ok(id),
        Ok(None) => Err(lecture_missing(id)),
        Err(e) => Err(HandlerError::from_db(e)),
    }
}

/// The lecture and the session to enroll into: the payload's session (which must be one of the
/// lecture's), else the lecture's first session (none when the lecture has none).
async fn target(
    ctx: &JobContext,
    lecture_id: i64,
    session: Option<i64>,
) -> Result<EnrollTarget, HandlerError> {
    let sessions = ctx
        .db
        .list_lecture_sessions(ctx.tenant(), lecture_id)
        .await
        .map_err(HandlerError::from_db)?;
    let session_id = match session {
        Some(id) if sessions.iter().any(|s| s.id == id) => Some(id),
        Some(id) => return Err(session_missing(id)),
        None => sessions.first().map(|s| s.id),
    };
    Ok(EnrollTarget {
        lecture_id,
        session_id,
    })
}

fn session_missing(id: i64) -> HandlerError {
    HandlerError::BadInput(format!("강의에 해당 차시가 없습니다(session_id {id})."))
}

/// The per-row error of a `phone_last4` import row without a student phone.
pub const NO_PHONE_FOR_PASSWORD: &str =
    "학생 전화번호가 없어 초기 비밀번호(학생 전화번호 뒤 4자리)를 만들 수 없습니다";

fn lecture_missing(id: i64) -> HandlerError {
    HandlerError::BadInput(format!("강의를 찾을 수 없습니다(lecture_id {id})."))
}

fn too_large(size: u64, max: u64) -> HandlerError {
    const MB: f64 = 1024.0 * 1024.0;
    HandlerError::BadInput(format!(
        "파일이 너무 큽니다({:.1} MB, 최대 {:.0} MB). 학생 명단만 남겨 다시 저장해 올려 주세요.",
        size as f64 / MB,
        max as f64 / MB
    ))
}

/// Reads the job's input file into memory, at most `max` bytes.
async fn download(ctx: &JobContext, max: u64) -> Result<Vec<u8>, HandlerError> {
    let key = ctx.input_key()?;
    let object = match ctx.storage.get_stream(&key).await {
        Ok(o) => o,
        // The upload is stored before the job is submitted, but not in one transaction with it
        // (and replicated stores can lag): worth a few more attempts before giving up.
        Err(StorageError::NotFound { .. }) => {
            return Err(HandlerError::Transient(
                "업로드된 파일을 찾을 수 없습니다(input file not in media storage).".to_owned(),
            ));
        }
        Err(e) => return Err(HandlerError::Transient(format!("media storage: {e}"))),
    };
    let size = object.info.size;
    if size > max {
        return Err(too_large(size, max));
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut stream = object.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HandlerError::Transient(format!("media storage: {e}")))?;
        let got = (buf.len() + chunk.len()) as u64;
        if got > max {
            return Err(too_large(got, max));
        }
        buf.extend_from_slice(&chunk);
        ctx.reporter
            .progress(got as f64 / size.max(1) as f64, None)
            .await;
        ctx.check_cancelled()?;
    }
    Ok(buf)
}

/// Parses on a blocking thread, forwarding its progress to the step percent.
async fn parse(ctx: &JobContext, bytes: Vec<u8>, limits: Limits) -> Result<Import, HandlerError> {
    let (tx, mut rx) = watch::channel(0.0_f64);
    let mut task = tokio::task::spawn_blocking(move || {
        import::import_xlsx(&bytes, &limits, |p| {
            tx.send_replace(p.fraction);
        })
    });
    let mut open = true;
    let joined = loop {
        tokio::select! {
            r = &mut task => break r,
            changed = rx.changed(), if open => match changed {
                Ok(()) => {
                    let f = *rx.borrow_and_update();
                    ctx.reporter.progress(f, None).await;
                }
                Err(_) => open = false,
            },
        }
    };
    match joined {
        Ok(Ok(sheet)) => Ok(sheet),
        Ok(Err(e)) => {
            if let import::ImportError::Unreadable { detail } = &e {
                tracing::info!(job.id = %ctx.job_id(), %detail, "unreadable workbook");
            }
            Err(HandlerError::BadInput(e.to_string()))
        }
        Err(e) => {
            tracing::error!(job.id = %ctx.job_id(), error = %e, "the sheet parser panicked");
            Err(HandlerError::Permanent(
                "internal error while reading the file".to_owned(),
            ))
        }
    }
}

impl ExcelImportHandler {
    /// Step 3: every sheet row not yet in the job's ledger, in sheet order.
    async fn enroll(
        &self,
        ctx: &JobContext,
        target: EnrollTarget,
        options: &EnrollOptions,
        sheet: &Import,
    ) -> Result<(), HandlerError> {
        let (db, tenant, job) = (&ctx.db, ctx.tenant(), ctx.job_id());
        let done: HashSet<u32> = db
            .import_rows(job)
            .await
            .map_err(HandlerError::from_db)?
            .iter()
            .map(|r| r.row_number)
            .collect();
        if !done.is_empty() {
            tracing::info!(job.id = %job, rows = done.len(), "resuming an import");
        }
        // Only an identity's first row can create a student; repeats find it.
        let first: HashSet<u32> = sheet.dedup().unique.iter().map(|s| s.row).collect();
        let need = sheet
            .students()
            .filter(|s| first.contains(&s.row) && !done.contains(&s.row))
            .count();
        let mut source = match options.mode {
            PasswordMode::Random => Passwords::Random(CredentialSource::start(
                need,
                self.settings.hash_threads,
                &ctx.cancel,
            )),
            PasswordMode::PhoneLast4 => Passwords::PhoneLast4,
            PasswordMode::Fixed => {
                let password = options
                    .fixed_password()
                    .ok_or_else(|| {
                        HandlerError::BadInput("initial_password가 없습니다.".to_owned())
                    })?
                    .to_owned();
                // One hash for the whole import (every student gets the same password), at the
                // setting for passwords people choose.
                let p = password.clone();
                let hash = tokio::task::spawn_blocking(move || credentials::hash_password(&p))
                    .await
                    .map_err(|e| HandlerError::Transient(format!("hashing: {e}")))?
                    .map_err(|e| HandlerError::Transient(e.to_string()))?;
                Passwords::Fixed(password, hash)
            }
        };

        let total = sheet.rows.len();
        let mut eta = Eta::new();
        for (i, row) in sheet.rows.iter().enumerate() {
            ctx.check_cancelled()?;
            let number = match row {
                Ok(s) => s.row,
                Err(e) => e.row,
            };
            if !done.contains(&number) {
                match row {
                    Err(e) => {
                        let name = (!e.name.is_empty()).then_some(e.name.as_str());
                        db.record_failed_row(tenant, job, e.row, name, &e.error)
                            .await
                            .map_err(HandlerError::from_db)?;
                    }
                    Ok(s) => self.enroll_row(ctx, target, s, &mut source).await?,
                }
            }
            let f = (i + 1) as f64 / total as f64;
            ctx.reporter.progress(f, eta.observe(f)).await;
        }
        Ok(())
    }

    /// One valid row: create, restore or find the student, and enroll them.
    async fn enroll_row(
        &self,
        ctx: &JobContext,
        target: EnrollTarget,
        s: &StudentRow,
        source: &mut Passwords,
    ) -> Result<(), HandlerError> {
        let input = student_input(s);
        let Some((password, hash)) = source.take(s).await? else {
            return self.enroll_without_password(ctx, target, s).await;
        };
        // The ledger keeps the password sealed (a retried attempt reports it again).
        let sealed = self
            .settings
            .seal
            .seal_text(ctx.job_id().as_str(), &password)
            .map_err(|e| HandlerError::Transient(format!("sealing: {e}")))?;
        let mut attempt = 0;
        let row = loop {
            let login_id =
                credentials::login_id(&self.settings.login_prefix, &s.parent_phone, attempt)
                    .map_err(|e| HandlerError::Transient(e.to_string()))?;
            let creds = NewCredentials {
                login_id,
                password: sealed.clone(),
                password_hash: hash.clone(),
            };
            match ctx
                .db
                .import_student_row(
                    ctx.tenant(),
                    ctx.job_id(),
                    target,
                    s.row,
                    &input,
                    move || creds,
                )
                .await
            {
                Ok(row) => break row,
                Err(DbError::Duplicate("login_id")) if attempt + 1 < MAX_LOGIN_ATTEMPTS => {
                    attempt += 1;
                }
                Err(DbError::NotFound("lecture")) => {
                    return Err(lecture_missing(target.lecture_id));
                }
                Err(DbError::NotFound("session")) => {
                    return Err(session_missing(target.session_id.unwrap_or_default()));
                }
                Err(e) => return Err(HandlerError::from_db(e)),
            }
        };
        let used = row.outcome == ImportOutcome::Created
            && row.initial_password.as_deref() == Some(sealed.as_str());
        if !used {
            source.give_back((password, hash));
        }
        Ok(())
    }
}

impl ExcelImportHandler {
    /// A `phone_last4` row without a student phone: it can only find an existing student
    /// (duplicate, restored); one it would create fails with [`NO_PHONE_FOR_PASSWORD`].
    async fn enroll_without_password(
        &self,
        ctx: &JobContext,
        target: EnrollTarget,
        s: &StudentRow,
    ) -> Result<(), HandlerError> {
        let input = student_input(s);
        let found = ctx
            .db
            .import_student_row(ctx.tenant(), ctx.job_id(), target, s.row, &input, || {
                None::<NewCredentials>
            })
            .await;
        match found {
            Ok(_) => Ok(()),
            Err(DbError::NotFound("credentials")) => ctx
                .db
                .record_failed_row(
                    ctx.tenant(),
                    ctx.job_id(),
                    s.row,
                    Some(&s.name),
                    NO_PHONE_FOR_PASSWORD,
                )
                .await
                .map(|_| ())
                .map_err(HandlerError::from_db),
            Err(DbError::NotFound("lecture")) => Err(lecture_missing(target.lecture_id)),
            Err(DbError::NotFound("session")) => {
                Err(session_missing(target.session_id.unwrap_or_default()))
            }
            Err(e) => Err(HandlerError::from_db(e)),
        }
    }
}

fn student_input(s: &StudentRow) -> StudentInput {
    StudentInput {
        name: s.name.clone(),
        phone: s.phone.as_ref().map(|p| p.digits()),
        parent_phone: s.parent_phone.digits(),
        school: s.school.clone(),
        grade: s.grade.clone(),
    }
}

/// The import result, read from the job's ledger (the same for every attempt).
fn report_from_ledger(
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

/// A password and its hash.
type Generated = (String, String);

/// Where the initial password of a created student comes from ([`PasswordMode`]).
#[derive(Debug)]
enum Passwords {
    Random(CredentialSource),
    /// Hashed per row (light setting, see [`credentials::hash_phone_password`]).
    PhoneLast4,
    /// The same password and hash for every row.
    Fixed(String, String),
}

impl Passwords {
    /// The password for `row`, `None` when it has nothing to make one from (`phone_last4`
    /// without a student phone).
    async fn take(&mut self, row: &StudentRow) -> Result<Option<Generated>, HandlerError> {
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
    fn give_back(&mut self, g: Generated) {
        if let Self::Random(source) = self {
            source.give_back(g);
        }
    }
}

/// Generated passwords, hashed ahead on blocking threads: up to `count` of them, then one at a
/// time on demand. Producers stop when the source is dropped or the attempt is cancelled.
#[derive(Debug)]
struct CredentialSource {
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
    fn start(count: usize, threads: NonZeroUsize, cancel: &CancellationToken) -> Self {
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
