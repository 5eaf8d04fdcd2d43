//! Videos: upload, reads and tenant isolation, user retry, delete, the one-active-job rule.

use std::time::Duration;

use jobpulse_db::{Caps, ClaimedTask, DbError, Queue, VideoFilter, VideoJobState};
use jobpulse_domain::{Fence, VideoId, VideoStatus};

use crate::helpers::{Backend, both, test_db};

const LEASE: Duration = Duration::from_secs(30);

async fn upload_read_and_list(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let other = t.db.create_tenant("b", "B").await?;
    let v1 =
        t.db.create_video(a.tenant_id, Some(a.session_id), "one", "tenants/1/v/1.mp4")
            .await?;
    assert_eq!(v1.value.status, VideoStatus::Uploaded);
    assert_eq!(v1.value.fence, Fence::new(1, 0, 1)?);
    assert_eq!(v1.outbox.len(), 1);
    let v2 =
        t.db.create_video(a.tenant_id, None, "two", "k2")
            .await?
            .value;
    let v3 =
        t.db.create_video(a.tenant_id, None, "three", "k3")
            .await?
            .value;

    // Publishing the returned rows makes UPLOADED visible before the id is handed out.
    t.relay.publish_now(&v1.outbox).await?;
    let snap = t.snapshot(&v1.value.key()).await?.expect("published");
    assert_eq!(snap.state.status.as_str(), "UPLOADED");

    assert_eq!(
        t.db.get_video(a.tenant_id, v1.value.id).await?,
        Some(v1.value.clone())
    );
    assert!(
        t.db.get_video(other.tenant_id, v1.value.id)
            .await?
            .is_none(),
        "another tenant's id is not found"
    );
    let bad_session =
        t.db.create_video(other.tenant_id, Some(a.session_id), "x", "k")
            .await;
    assert!(
        matches!(bad_session, Err(DbError::NotFound("session"))),
        "{bad_session:?}"
    );
    let bad_title = t.db.create_video(a.tenant_id, None, "", "k").await;
    assert!(
        matches!(bad_title, Err(DbError::Invalid(_))),
        "{bad_title:?}"
    );

    let all =
        t.db.list_videos(
            a.tenant_id,
            &VideoFilter {
                limit: 50,
                ..Default::default()
            },
        )
        .await?;
    let ids: Vec<VideoId> = all.iter().map(|v| v.id).collect();
    assert_eq!(ids, [v3.id, v2.id, v1.value.id], "newest first");
    let page =
        t.db.list_videos(
            a.tenant_id,
            &VideoFilter {
                limit: 1,
                before_id: Some(v3.id),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(page.iter().map(|v| v.id).collect::<Vec<_>>(), [v2.id]);
    let in_session =
        t.db.list_videos(
            a.tenant_id,
            &VideoFilter {
                limit: 50,
                session_id: Some(a.session_id),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(in_session.len(), 1);
    let processing =
        t.db.list_videos(
            a.tenant_id,
            &VideoFilter {
                limit: 50,
                status: Some(VideoStatus::Processing),
                ..Default::default()
            },
        )
        .await?;
    assert!(processing.is_empty());
    assert!(
        t.db.list_videos(
            other.tenant_id,
            &VideoFilter {
                limit: 50,
                ..Default::default()
            }
        )
        .await?
        .is_empty()
    );
    Ok(())
}
both!(upload_read_and_list);

async fn retry_starts_a_new_generation(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;

    let early = t.db.retry_video(a.tenant_id, v.id).await;
    assert!(
        matches!(
            early,
            Err(DbError::IllegalTransition {
                from: "UPLOADED",
                to: "UPLOADED"
            })
        ),
        "only FAILED may be retried: {early:?}"
    );

    let claim =
        t.db.claim(Queue::Video, "w1", LEASE, Caps::default())
            .await?
            .expect("job");
    t.db.fail(&claim, "corrupt input", false).await?;
    t.drain().await?;
    let failed = t.snapshot(&v.key()).await?.expect("published");
    assert_eq!(failed.state.status.as_str(), "FAILED");
    assert_eq!(
        failed.fence,
        Fence::new(1, 2, 0)?,
        "between attempts after attempt 1"
    );

    let retried = t.db.retry_video(a.tenant_id, v.id).await?;
    assert_eq!(retried.value.status, VideoStatus::Uploaded);
    assert_eq!(retried.value.fence, Fence::new(2, 0, 1)?);
    assert_eq!(retried.value.error_reason, None);
    t.drain().await?;
    let snap = t.snapshot(&v.key()).await?.expect("published");
    assert_eq!(
        snap.state.status.as_str(),
        "UPLOADED",
        "the read model leaves the terminal FAILED for the new generation"
    );
    assert_eq!(snap.fence.generation, 2);

    let again = t.db.retry_video(a.tenant_id, v.id).await;
    assert!(
        matches!(again, Err(DbError::IllegalTransition { .. })),
        "{again:?}"
    );

    let claim =
        t.db.claim(Queue::Video, "w2", LEASE, Caps::default())
            .await?
            .expect("new job");
    assert_eq!((claim.generation(), claim.attempt()), (2, 1));
    t.db.complete_video(&claim, "tenants/1/video/hls/1/master.m3u8", 12, 9)
        .await?;
    t.drain().await?;
    let ready = t.snapshot(&v.key()).await?.expect("published");
    assert_eq!(ready.state.status.as_str(), "READY");
    assert_eq!(ready.fence, Fence::new(2, 1, 9)?);
    let jobs = t.db.video_jobs(a.tenant_id, v.id).await?;
    let states: Vec<_> = jobs.iter().map(|j| (j.generation, j.state)).collect();
    assert_eq!(
        states,
        [(1, VideoJobState::Dead), (2, VideoJobState::Succeeded)]
    );
    let ready_retry = t.db.retry_video(a.tenant_id, v.id).await;
    assert!(matches!(
        ready_retry,
        Err(DbError::IllegalTransition { from: "READY", .. })
    ));
    Ok(())
}
both!(retry_starts_a_new_generation);

async fn delete_hides_a_ready_video(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    let claim =
        t.db.claim(Queue::Video, "w1", LEASE, Caps::default())
            .await?
            .expect("job");
    t.db.complete_video(&claim, "hls/master.m3u8", 3, 2).await?;
    t.drain().await?;
    assert!(t.snapshot(&v.key()).await?.is_some());

    let deleted = t.db.delete_video(a.tenant_id, v.id).await?;
    assert_eq!(deleted.outbox[0].write.fence, Fence::new(2, 0, 1)?);
    t.drain().await?;
    assert!(
        t.snapshot(&v.key()).await?.is_none(),
        "tombstone hides READY"
    );
    assert!(t.db.get_video(a.tenant_id, v.id).await?.is_none());
    assert!(
        t.db.list_videos(
            a.tenant_id,
            &VideoFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .await?
        .is_empty()
    );
    let twice = t.db.delete_video(a.tenant_id, v.id).await;
    assert!(
        matches!(twice, Err(DbError::NotFound("video"))),
        "{twice:?}"
    );
    let retry = t.db.retry_video(a.tenant_id, v.id).await;
    assert!(
        matches!(retry, Err(DbError::NotFound("video"))),
        "{retry:?}"
    );

    // A late write of the deleted generation is refused by the store.
    let late = jobpulse_domain::Write::set(
        v.key(),
        Fence::new(1, 5, 1)?,
        jobpulse_domain::State::video(VideoStatus::Processing),
    )?;
    use jobpulse_store::StatusStore;
    assert!(matches!(
        t.memory.apply(&late).await?,
        jobpulse_domain::Outcome::Stale { .. }
    ));
    Ok(())
}
both!(delete_hides_a_ready_video);

async fn delete_while_running_discards_the_result(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let first =
        t.db.create_video(a.tenant_id, None, "first", "k")
            .await?
            .value;
    let second =
        t.db.create_video(a.tenant_id, None, "second", "k")
            .await?
            .value;
    let claim =
        t.db.claim(Queue::Video, "w1", LEASE, Caps::default())
            .await?
            .expect("job");
    let ClaimedTask::Video { video, .. } = &claim.task else {
        anyhow::bail!("video claim expected");
    };
    assert_eq!(video.id, first.id, "oldest first");
    let claim2 =
        t.db.claim(Queue::Video, "w2", LEASE, Caps::default())
            .await?
            .expect("job");

    // Deleting a video whose job runs asks its worker to stop.
    t.db.delete_video(a.tenant_id, first.id).await?;
    assert_eq!(
        t.db.heartbeat(&claim).await?,
        jobpulse_db::Heartbeat::CancelRequested
    );
    let done = t.db.complete_video(&claim, "hls/x.m3u8", 1, 2).await;
    assert!(matches!(done, Err(DbError::Cancelled)), "{done:?}");
    let jobs = t.db.video_jobs(a.tenant_id, first.id).await?;
    assert_eq!(jobs[0].state, VideoJobState::Cancelled);
    t.drain().await?;
    assert!(t.snapshot(&first.key()).await?.is_none());

    // The other one is untouched.
    t.db.complete_video(&claim2, "hls/y.m3u8", 1, 2).await?;
    assert_eq!(
        t.video(a.tenant_id, second.id).await?.status,
        VideoStatus::Ready
    );
    Ok(())
}
both!(delete_while_running_discards_the_result);

async fn one_active_job_per_video(b: Backend) -> anyhow::Result<()> {
    let t = test_db(b).await?;
    let a = t.db.create_tenant("a", "A").await?;
    let v = t.db.create_video(a.tenant_id, None, "v", "k").await?.value;
    let insert = |state: &str| {
        format!(
            "INSERT INTO video_jobs (tenant_id, video_id, generation, state, run_after, \
             created_at, updated_at) VALUES ({}, {}, 1, '{state}', 0, 0, 0)",
            a.tenant_id, v.id
        )
    };
    for state in ["QUEUED", "RUNNING", "RETRY_WAIT"] {
        let err = t.raw(&insert(state)).await;
        let unique = matches!(&err, Err(sqlx::Error::Database(e)) if e.is_unique_violation());
        assert!(
            unique,
            "a second active job ({state}) must be refused: {err:?}"
        );
    }
    // Finished jobs are not limited.
    t.raw(&insert("DEAD")).await?;
    t.raw(&insert("SUCCEEDED")).await?;
    // Statuses outside the contract are refused too.
    let err = t.raw(&insert("SLEEPING")).await;
    assert!(err.is_err(), "unknown state accepted");
    let err = t
        .raw(&format!(
            "UPDATE videos SET status = 'DONE' WHERE id = {}",
            v.id
        ))
        .await;
    assert!(err.is_err(), "unknown video status accepted");
    Ok(())
}
both!(one_active_job_per_video);
