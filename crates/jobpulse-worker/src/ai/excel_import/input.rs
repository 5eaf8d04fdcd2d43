//! The job's input: the lecture and session to enroll into (steps 1), the file read from media
//! storage (bounded) and its parse on a blocking thread (step 2).

use futures::StreamExt;
use jobpulse_db::EnrollTarget;
use jobpulse_media::StorageError;
use tokio::sync::watch;

use crate::ai::{HandlerError, JobContext};
use crate::excel::import::{self, Import, Limits};

/// The lecture to enroll into; it must exist in the job's tenant.
pub(super) async fn lecture(ctx: &JobContext) -> Result<i64, HandlerError> {
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
pub(super) async fn target(
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

pub(super) fn session_missing(id: i64) -> HandlerError {
    HandlerError::BadInput(format!("강의에 해당 차시가 없습니다(session_id {id})."))
}

pub(super) fn lecture_missing(id: i64) -> HandlerError {
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
pub(super) async fn download(ctx: &JobContext, max: u64) -> Result<Vec<u8>, HandlerError> {
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
pub(super) async fn parse(
    ctx: &JobContext,
    bytes: Vec<u8>,
    limits: Limits,
) -> Result<Import, HandlerError> {
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
