//! `attendance_excel_export` through the worker: the stored workbook, read back with calamine.

use std::io::Cursor;
use std::time::Duration;

use anyhow::Context;
use calamine::{Data, Reader, Xlsx};
use futures::TryStreamExt;
use jobpulse_db::{NewAiJob, NewCredentials, StudentInput};
use jobpulse_domain::{JobStatus, JobType};
use jobpulse_media::keys;
use jobpulse_worker::ai::{HandlerSettings, Registry};
use jobpulse_worker::excel::export;

use crate::helpers::{Backend, Env, both, job_status};

const LONG: Duration = Duration::from_secs(120);

fn text(range: &calamine::Range<Data>, row: u32, col: u32) -> String {
    match range.get_value((row, col)) {
        Some(Data::String(s)) => s.clone(),
        Some(Data::Empty) | None => String::new(),
        Some(other) => format!("{other:?}"),
    }
}

async fn attendance_export_writes_a_readable_workbook(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let tenant = env.tenant();
    let lecture = env.seed.lecture_id;
    let (other_lecture, _) = env.db.create_lecture(tenant, "다른 강의").await?;
    let seed_job = env
        .db
        .submit_ai_job(NewAiJob::new(tenant, JobType::parse("seed_students")?))
        .await?
        .value
        .job
        .job_id;
    env.db.cancel_ai_job(tenant, &seed_job).await?;
    // Two enrolled students, one enrolled and then deleted, one in another lecture.
    let people = [
        ("최지우", "01022223333", lecture, false),
        ("김민준", "01011112222", lecture, false),
        ("박서연", "01044445555", lecture, true),
        ("이하준", "01066667777", other_lecture, false),
    ];
    for (i, (name, parent, lec, delete)) in people.iter().enumerate() {
        let input = StudentInput {
            name: (*name).into(),
            phone: None,
            parent_phone: (*parent).into(),
            school: Some("서울중학교".into()),
            grade: Some("2".into()),
        };
        let row = env
            .db
            .import_student_row(tenant, &seed_job, *lec, i as u32 + 1, &input, || {
                NewCredentials {
                    login_id: format!("seed{i}"),
                    password: "unused".into(),
                    password_hash: "unused".into(),
                }
            })
            .await?;
        if *delete {
            env.db
                .delete_student(tenant, row.student_id.context("id")?)
                .await?;
        }
    }
    let sessions = env.db.list_lecture_sessions(tenant, lecture).await?;
    assert!(!sessions.is_empty(), "the seeded lecture has a session");

    let registry = Registry::standard(HandlerSettings::default());
    let info = registry
        .describe(JobType::ATTENDANCE_EXCEL_EXPORT)
        .context("registered")?;
    assert!(!info.needs_file && info.staff_only);
    let mut submit = NewAiJob::new(tenant, JobType::parse(JobType::ATTENDANCE_EXCEL_EXPORT)?);
    submit.payload = serde_json::json!({ "lecture_id": lecture });
    let job = env.submit(&registry, submit).await?;
    // And one for a lecture of another tenant: bad input.
    let stranger = env.db.create_tenant("other", "Other").await?;
    let mut foreign = NewAiJob::new(tenant, JobType::parse(JobType::ATTENDANCE_EXCEL_EXPORT)?);
    foreign.payload = serde_json::json!({ "lecture_id": stranger.lecture_id });
    let foreign = env.submit(&registry, foreign).await?;

    let worker = env.standard_worker("w1").spawn();
    let last = env.wait_terminal(&job, LONG).await?;
    let refused = env.wait_terminal(&foreign, LONG).await?;
    worker.shutdown().await;

    assert_eq!(job_status(&last), Some(JobStatus::Done), "{last:?}");
    let result = last.result.context("a result")?;
    assert!(!result.full_available, "small and public: inline only");
    let inline = result.inline.context("inline result")?;
    let filename = format!("attendance-{lecture}.xlsx");
    assert_eq!(inline["filename"], filename);
    assert_eq!(
        inline["download_url"],
        format!("/api/v1/jobs/{job}/files/{filename}")
    );

    let key = keys::job_output_key(tenant, &job, &filename);
    let object = env.storage.get_stream(&key).await?;
    let bytes: Vec<u8> = object.stream.map_ok(|b| b.to_vec()).try_concat().await?;
    assert_eq!(inline["size_bytes"], bytes.len() as u64);
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).context("a readable xlsx")?;
    let range = book.worksheet_range(export::SHEET_NAME)?;
    let header = export::HEADER_ROW;
    for (c, h) in export::FIXED_HEADERS.iter().enumerate() {
        assert_eq!(text(&range, header, c as u32), *h);
    }
    for (k, s) in sessions.iter().enumerate() {
        let col = (export::FIXED_HEADERS.len() + k) as u32;
        assert_eq!(text(&range, header, col), s.title);
    }
    let first = export::FIRST_STUDENT_ROW;
    let rows: Vec<(String, String)> = (first..range.end().map_or(0, |(r, _)| r + 1))
        .map(|r| (text(&range, r, 1), text(&range, r, 5)))
        .collect();
    assert_eq!(
        rows,
        [
            ("김민준".to_owned(), "010-1111-2222".to_owned()),
            ("최지우".to_owned(), "010-2222-3333".to_owned()),
        ],
        "the lecture's active students, by name, phones as written"
    );

    assert_eq!(
        job_status(&refused),
        Some(JobStatus::RejectedBadInput),
        "{refused:?}"
    );
    let error = refused.error.context("why")?;
    assert!(
        error.as_str().contains("강의를 찾을 수 없습니다"),
        "{error:?}"
    );
    Ok(())
}
both!(attendance_export_writes_a_readable_workbook);
