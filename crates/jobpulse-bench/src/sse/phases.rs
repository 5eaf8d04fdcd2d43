//! The measured phases after the streams are open: the latency writes with the baseline
//! subscriber beside the hub, and the floor phase (the same writes through raw sockets).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use jobpulse_domain::{Fence, TaskKey, TenantId, VideoId, Write};
use jobpulse_store::Change;

use super::child::ClientProcess;
use super::{FloorConfig, Latency, Msg, PAGE, SEQ_BASE, SseOptions, unix_ns};
use crate::Server;

/// The latency writer and the baseline subscriber, on the server's store: the send instants,
/// the baseline's latencies, and the last change of video 1 as the feed carried it.
pub(super) async fn write_and_watch(
    server: &Server,
    writes: u32,
    every: Duration,
) -> anyhow::Result<(Vec<(u64, u64)>, Vec<f64>, Option<Change>)> {
    let store = &server.store;
    let key = TaskKey::video(TenantId::new(1)?, VideoId::new(1)?);
    let mut feed = store.subscribe();
    let watched = key.clone();
    // On the server's runtime, beside the hub: the same scheduling as the hub's own feed.
    let baseline = server.runtime.spawn(async move {
        let mut got = Vec::new();
        let mut last = None;
        while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(2), feed.recv()).await {
            let at = unix_ns();
            let seq = c
                .snapshot
                .as_ref()
                .filter(|_| c.key == watched)
                .and_then(|s| s.state.remaining_seconds)
                .map(u64::from);
            if let Some(seq) = seq.filter(|s| *s >= SEQ_BASE) {
                got.push((seq, at));
                last = Some(c);
            }
        }
        (got, last)
    });
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(every);
    for k in 1..=u64::from(writes) {
        tick.tick().await;
        let seq = SEQ_BASE + k;
        let write = progress_write(&key, k, seq)?;
        sent.push((seq, unix_ns()));
        store.apply(&write).await.context("applying a write")?;
    }
    let (got, last) = baseline.await.context("the baseline subscriber")?;
    let at: HashMap<u64, u64> = sent.iter().copied().collect();
    let ms = got
        .iter()
        .filter_map(|(seq, t)| at.get(seq).map(|s0| t.saturating_sub(*s0) as f64 / 1e6))
        .collect();
    Ok((sent, ms, last))
}

/// The bytes jobpulse's lean path sends for `change` with `seq` as its sequence number: the
/// event rendered by `jobpulse_api`, in one HTTP/1.1 chunk.
fn event_bytes(change: &Change, seq: u64) -> anyhow::Result<Vec<u8>> {
    let mut snap = change
        .snapshot
        .clone()
        .context("a change without a snapshot")?;
    snap.state.remaining_seconds = Some(u32::try_from(seq)?);
    let data = jobpulse_api::render::video(VideoId::new(1)?, Some(&snap), Default::default());
    let frame = jobpulse_api::routes::stream::frame("video", &data, Some(&change.cursor));
    Ok(jobpulse_api::stream_conn::chunk(&frame).to_vec())
}

/// The floor's answer to a request: an event-stream head and a snapshot of `PAGE` videos.
fn floor_head() -> anyhow::Result<Vec<u8>> {
    let mut snapshot = Vec::new();
    for v in 1..=PAGE {
        let data = jobpulse_api::render::video(VideoId::new(v)?, None, Default::default());
        snapshot.extend_from_slice(&jobpulse_api::routes::stream::frame("video", &data, None));
    }
    let mut out =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                    transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec();
    out.extend_from_slice(&jobpulse_api::stream_conn::chunk(&snapshot));
    Ok(out)
}

/// What the floor phase measured.
#[derive(Debug, Default)]
pub(super) struct FloorRun {
    pub(super) opened: usize,
    /// Sockets that took a write whole, summed over the writes.
    pub(super) whole_writes: usize,
    /// Time the server side's write loop took, per write (ms).
    pub(super) loop_ms: Vec<f64>,
    pub(super) lat: Option<Latency>,
    pub(super) error: Option<String>,
}

/// The floor phase (see [`crate::floor`]): the latency group's streams are closed, as many raw
/// connections are opened to the floor server, and the same writes are sent through it.
pub(super) async fn floor_phase(
    client: &mut ClientProcess,
    server: &Server,
    o: &SseOptions,
    watchers: usize,
    last: Option<&Change>,
) -> anyhow::Result<FloorRun> {
    let mut run = FloorRun::default();
    let Some(last) = last else {
        run.error = Some("no write reached the baseline subscriber".into());
        return Ok(run);
    };
    client.send(&Msg::CloseWatching).await?;
    let Msg::Held(_) = client.recv(Duration::from_secs(60)).await? else {
        anyhow::bail!("the SSE client answered out of turn");
    };
    // The server side lets go of those sockets too before the floor takes as many.
    let others = o.streams.saturating_sub(watchers);
    for _ in 0..200 {
        if server.hub.as_ref().is_none_or(|h| h.streams() <= others) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let floor = crate::floor::Floor::start(floor_head()?)?;
    client
        .send(&Msg::Floor(FloorConfig {
            addr: floor.addr,
            count: watchers,
        }))
        .await?;
    let Msg::Opened(opened) = client.recv(Duration::from_secs(300)).await? else {
        anyhow::bail!("the SSE client answered out of turn");
    };
    run.opened = opened.verified;
    if opened.verified < watchers {
        run.error = opened.first_error;
    }
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(o.write_every);
    for k in 1..=u64::from(o.writes) {
        tick.tick().await;
        let seq = SEQ_BASE + FLOOR_SEQ + k;
        let bytes = event_bytes(last, seq)?;
        let started = std::time::Instant::now();
        let (at, whole) = tokio::task::block_in_place(|| floor.write(bytes))?;
        run.loop_ms.push(started.elapsed().as_secs_f64() * 1e3);
        run.whole_writes += whole;
        sent.push((seq, at));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.send(&Msg::Sent(sent)).await?;
    let Msg::Latency(lat) = client.recv(Duration::from_secs(60)).await? else {
        anyhow::bail!("the SSE client answered out of turn");
    };
    run.lat = Some(lat);
    Ok(run)
}

/// Floor sequence numbers start here (apart from jobpulse's).
const FLOOR_SEQ: u64 = 500_000;

fn progress_write(key: &TaskKey, k: u64, seq: u64) -> anyhow::Result<Write> {
    let mut s = jobpulse_domain::State::video(jobpulse_domain::VideoStatus::Processing);
    s.percent = jobpulse_domain::Percent::new(57)?;
    s.step = Some(jobpulse_domain::steps::VIDEO.step(4, 0.4));
    s.remaining_seconds = Some(u32::try_from(seq)?);
    Ok(Write::set(key.clone(), Fence::new(1, 1, 1 + k)?, s)?)
}
