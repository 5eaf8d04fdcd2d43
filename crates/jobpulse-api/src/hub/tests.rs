//! The hub's own tests (the API tests cover it through the stream route).

use super::*;
use jobpulse_domain::{Fence, State, TaskId, TaskKey, VideoId, VideoStatus, Write};
use jobpulse_store::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_watched_by_more_streams_than_split_at_reaches_each_once_in_order() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let stop = CancellationToken::new();
    let hub = Hub::start(&store, 10_000, stop.clone());
    let tenant = TenantId::new(1).expect("valid");
    let video = VideoId::new(1).expect("valid");
    let watch = Watch::Tasks(vec![TaskId::Video(video)].into());
    let n = SPLIT_AT * 3 / 2;
    let mut regs: Vec<Registration> = (0..n)
        .map(|_| {
            hub.register(tenant, None, watch.clone(), false)
                .expect("under the cap")
        })
        .collect();
    let other = hub
        .register(
            tenant,
            None,
            Watch::Tasks(vec![TaskId::Video(VideoId::new(2).expect("valid"))].into()),
            false,
        )
        .expect("under the cap");
    for seq in 1..=3 {
        let w = Write::set(
            TaskKey::video(tenant, video),
            Fence::new(1, 1, seq).expect("valid"),
            State::video(VideoStatus::Processing),
        )
        .expect("valid");
        store.apply(&w).await.expect("applies");
    }
    for (i, reg) in regs.iter_mut().enumerate() {
        let mut revs = Vec::new();
        for _ in 0..3 {
            let d = tokio::time::timeout(Duration::from_secs(5), reg.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("stream {i}: a change within 5 s"))
                .expect("open");
            revs.push(d.change.rev);
        }
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "stream {i}: {revs:?}");
        assert!(reg.rx.try_recv().is_err(), "stream {i}: each change once");
    }
    assert!(other.rx.is_empty(), "a stream of another task got nothing");
    assert_eq!(hub.streams(), n + 1);
    stop.cancel();
}

#[tokio::test]
async fn one_user_cannot_take_the_tenants_streams() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let stop = CancellationToken::new();
    let hub = Hub::start(&store, 10, stop.clone()).with_per_user_cap(3);
    let t = TenantId::new(1).expect("valid");
    let watch = Watch::Tasks(vec![TaskId::Video(VideoId::new(1).expect("valid"))].into());
    let mine: Vec<Registration> = (0..3)
        .map(|_| {
            hub.register(t, Some("student-1"), watch.clone(), false)
                .expect("under")
        })
        .collect();
    assert_eq!(
        hub.register(t, Some("student-1"), watch.clone(), false)
            .err(),
        Some(CapExceeded::User)
    );
    // The owner and other users still get theirs, up to the tenant's cap.
    let others: Vec<Registration> = (0..7)
        .map(|i| {
            hub.register(t, Some(&format!("u{i}")), watch.clone(), true)
                .expect("the rest of the tenant's allowance")
        })
        .collect();
    assert_eq!(
        hub.register(t, Some("owner"), watch.clone(), true).err(),
        Some(CapExceeded::Tenant)
    );
    drop(mine);
    assert!(
        hub.register(t, Some("student-1"), watch, false).is_ok(),
        "freed on drop"
    );
    drop(others);
    stop.cancel();
}

/// A running task whose worker writes nothing more is re-sent once, as stalled, to the streams
/// whose last event of it is that change — and not to a stream that already has a newer one.
#[tokio::test]
async fn a_quiet_running_task_is_resent_once_as_stalled() {
    let store: SharedStore = Arc::new(MemoryStore::default());
    let stop = CancellationToken::new();
    let live = crate::render::Liveness {
        stalled_after: Duration::from_millis(300),
    };
    let hub = Hub::start_with(&store, 10, stop.clone(), None, live);
    let t = TenantId::new(1).expect("valid");
    let video = VideoId::new(1).expect("valid");
    let mut reg = hub
        .register(
            t,
            None,
            Watch::Tasks(vec![TaskId::Video(video)].into()),
            false,
        )
        .expect("under the cap");
    let w = Write::set(
        TaskKey::video(t, video),
        Fence::new(1, 1, 2).expect("valid"),
        State::video(VideoStatus::Processing),
    )
    .expect("valid");
    store.apply(&w).await.expect("applies");
    let recv = async |reg: &mut Registration| {
        tokio::time::timeout(Duration::from_secs(3), reg.rx.recv())
            .await
            .expect("an event within 3 s")
            .expect("open")
    };
    let first = recv(&mut reg).await;
    assert!(!first.flip);
    assert!(reg.outlet.lock().filter.live(&first));
    let text = |d: &Dispatched| String::from_utf8_lossy(d.frame(None)).into_owned();
    assert!(
        text(&first).contains("\"stalled\":false"),
        "{}",
        text(&first)
    );
    let flip = recv(&mut reg).await;
    assert!(flip.flip);
    assert_eq!(flip.change.rev, first.change.rev);
    assert!(
        reg.outlet.lock().filter.live(&flip),
        "the flip follows its change"
    );
    assert!(text(&flip).contains("\"stalled\":true"), "{}", text(&flip));
    assert!(text(&flip).contains(&format!("id: {}", first.cursor)));
    // Once: nothing more while the worker stays quiet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(reg.rx.try_recv().is_err(), "re-sent once only");
    stop.cancel();
}
