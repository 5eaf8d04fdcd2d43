//! Where `jobpulse watch` reads updates: the SSE stream (resumed with `Last-Event-ID`), else
//! polling with the server's `X-Poll-After` and `If-None-Match`.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::Target;
use super::view::{Verdict, View};
use crate::client::Client;

pub(super) async fn follow_stream(
    client: &Client,
    target: &Target,
    view: &mut View,
) -> anyhow::Result<Option<Verdict>> {
    use eventsource_stream::Eventsource;
    let mut last_id: Option<String> = None;
    // The server's `retry:` (milliseconds) replaces our own back-off when it sends one.
    let mut retry: Option<Duration> = None;
    let mut failures = 0;
    while failures < 5 {
        let mut req = client.get(&target.stream_path());
        if let Some(id) = &last_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = match req.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                return Ok(None);
            }
            Ok(_) => {
                failures += 1;
                tokio::time::sleep(retry.unwrap_or(Duration::from_secs(failures))).await;
                continue;
            }
            Err(e) => {
                let e = client.transport_error(e);
                // An untrusted certificate does not get better by retrying.
                if format!("{e}").contains("not trusted") {
                    return Err(e);
                }
                failures += 1;
                tokio::time::sleep(retry.unwrap_or(Duration::from_secs(failures))).await;
                continue;
            }
        };
        let mut events = res.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let Ok(event) = event else { break };
            if let Some(r) = event.retry {
                retry = Some(r);
            }
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            // `reset` (a full snapshot follows, its id is the position to resume from) and
            // `resync` carry no task body; the snapshot's own events update the view.
            if event.data.is_empty() || !matches!(event.event.as_str(), "video" | "job") {
                continue;
            }
            if let Ok(v) = serde_json::from_str::<Value>(&event.data) {
                match view.update(v) {
                    Verdict::Continue => {}
                    end => return Ok(Some(end)),
                }
            }
        }
        failures += 1;
        tokio::time::sleep(retry.unwrap_or(Duration::from_millis(500))).await;
    }
    Ok(None)
}

pub(super) async fn follow_polling(
    client: &Client,
    target: &Target,
    view: &mut View,
) -> anyhow::Result<Verdict> {
    let mut etag: Option<String> = None;
    loop {
        let mut req = client.get(&target.progress_path());
        if let Some(t) = &etag {
            req = req.header("If-None-Match", t);
        }
        let res = client.send(req).await?;
        let wait = res
            .headers()
            .get("x-poll-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(3);
        if res.status() != reqwest::StatusCode::NOT_MODIFIED {
            etag = res
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = res.json().await?;
            match view.update(body) {
                Verdict::Continue => {}
                end => return Ok(end),
            }
        }
        tokio::time::sleep(Duration::from_secs(wait.clamp(1, 30))).await;
    }
}
