//! Step 3: every sheet row not yet in the job's ledger, in sheet order — created, restored or
//! found, and enrolled, one database transaction per row.

use std::collections::HashSet;

use jobpulse_db::{DbError, EnrollTarget, ImportOutcome, NewCredentials, StudentInput};
use jobpulse_domain::enroll::{EnrollOptions, PasswordMode};

use super::input::{lecture_missing, session_missing};
use super::passwords::{CredentialSource, Passwords};
use super::{ExcelImportHandler, MAX_LOGIN_ATTEMPTS, NO_PHONE_FOR_PASSWORD};
use crate::ai::{HandlerError, JobContext};
use crate::excel::credentials;
use crate::excel::import::{Import, StudentRow};
use crate::progress::Eta;

impl ExcelImportHandler {
    /// Step 3: every sheet row not yet in the job's ledger, in sheet order.
    pub(super) async fn enroll(
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
