//! The `attendance_excel_export` handler: the attendance workbook of one lecture, stored as the
//! job's output file.
//!
//! Steps (`steps::EXPORT`): 1 loading — the lecture, its sessions and its active students;
//! 2 writing — [`export::attendance_workbook`] on a blocking thread; 3 uploading — media storage
//! under `tenants/{t}/jobs/{job}/output/attendance-{lecture}.xlsx`. The result (inline in the
//! read model) is `{download_url, filename, size_bytes}`; the API serves `download_url` to the
//! job's tenant with the caller's token.
//!
//! The lecture comes from the payload (`{"lecture_id": N}`) or the job row. Storing the file
//! again on a retried attempt overwrites the same key, so a retry is harmless.

use std::time::Duration;

use bytes::Bytes;
use jobpulse_domain::JobType;
use jobpulse_domain::steps::{self, StepPlan};
use jobpulse_media::keys;

use super::{DEFAULT_MAX_ATTEMPTS, Handler, HandlerError, HandlerOutput, JobContext};
use crate::excel::Phone;
use crate::excel::export::{self, SessionInfo, StudentInfo};

/// How the export runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    pub timeout: Duration,
    pub max_attempts: u32,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10 * 60),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct AttendanceExportHandler {
    settings: ExportSettings,
}

impl AttendanceExportHandler {
    pub fn new(settings: ExportSettings) -> Self {
        Self { settings }
    }
}

/// The file name of a lecture's export (also the last segment of its storage key).
pub fn export_file_name(lecture_id: i64) -> String {
    format!("attendance-{lecture_id}.xlsx")
}

/// Phones are stored as digits; the sheet shows them as people write them.
fn display_phone(stored: &str) -> String {
    Phone::parse(stored).map_or_else(|_| stored.to_owned(), |p| p.as_str().to_owned())
}

#[async_trait::async_trait]
impl Handler for AttendanceExportHandler {
    fn job_type(&self) -> &'static str {
        JobType::ATTENDANCE_EXCEL_EXPORT
    }

    fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn needs_file(&self) -> bool {
        false
    }

    fn staff_only(&self) -> bool {
        true
    }

    fn max_attempts(&self) -> u32 {
        self.settings.max_attempts
    }

    fn plan(&self) -> StepPlan {
        steps::EXPORT
    }

    async fn run(&self, ctx: &JobContext) -> Result<HandlerOutput, HandlerError> {
        let (db, tenant) = (&ctx.db, ctx.tenant());
        let r = &ctx.reporter;

        r.step(1).await;
        let lecture_id = ctx.lecture_id()?.ok_or_else(|| {
            HandlerError::BadInput("내보낼 강의(lecture_id)가 지정되지 않았습니다.".to_owned())
        })?;
        let lecture = db
            .get_lecture(tenant, lecture_id)
            .await
            .map_err(HandlerError::from_db)?
            .ok_or_else(|| {
                HandlerError::BadInput(format!("강의를 찾을 수 없습니다(lecture_id {lecture_id})."))
            })?;
        let sessions: Vec<SessionInfo> = db
            .list_lecture_sessions(tenant, lecture_id)
            .await
            .map_err(HandlerError::from_db)?
            .into_iter()
            .map(|s| SessionInfo {
                id: s.id,
                title: s.title,
                date: None,
            })
            .collect();
        r.progress(0.5, None).await;
        let students: Vec<StudentInfo> = db
            .list_lecture_students(tenant, lecture_id)
            .await
            .map_err(HandlerError::from_db)?
            .into_iter()
            .map(|s| StudentInfo {
                name: s.name,
                school: s.school,
                grade: s.grade,
                phone: s.phone.as_deref().map(display_phone),
                parent_phone: Some(display_phone(&s.parent_phone)),
                attendance: Default::default(),
            })
            .collect();
        ctx.check_cancelled()?;

        r.step(2).await;
        let title = lecture.title;
        let bytes = tokio::task::spawn_blocking(move || {
            export::attendance_workbook(&title, &sessions, &students)
        })
        .await
        .map_err(|e| HandlerError::Permanent(format!("writing the workbook: {e}")))?
        .map_err(|e| match e {
            export::ExportError::Xlsx(x) => HandlerError::Transient(format!("writing: {x}")),
            too_many => HandlerError::Permanent(too_many.to_string()),
        })?;
        ctx.check_cancelled()?;

        r.step(3).await;
        let filename = export_file_name(lecture_id);
        let key = keys::job_output_key(tenant, ctx.job_id(), &filename);
        let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))]);
        let size_bytes = ctx
            .storage
            .put_stream(&key, body, u64::MAX)
            .await
            .map_err(|e| HandlerError::Transient(format!("media storage: {e}")))?;
        tracing::info!(
            tenant.id = %tenant,
            job.id = %ctx.job_id(),
            lecture.id = lecture_id,
            size_bytes,
            "attendance exported"
        );
        HandlerOutput::done_public(serde_json::json!({
            "download_url": format!("/api/v1/jobs/{}/files/{filename}", ctx.job_id()),
            "filename": filename,
            "size_bytes": size_bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_phones() {
        assert_eq!(export_file_name(12), "attendance-12.xlsx");
        assert_eq!(display_phone("01012345678"), "010-1234-5678");
        assert_eq!(display_phone("not a phone"), "not a phone");
    }
}
