//! A small Server-Sent Events client: one stream, read event by event (`id`, `event`, `data`),
//! resumable with `Last-Event-ID`.

use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// One event of the stream.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.data).with_context(|| format!("event data: {}", self.data))
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An open stream. See the module docs.
pub struct Sse {
    body: Body,
    buf: String,
}

/// What reading the next event gave.
#[derive(Debug)]
pub enum Next {
    Event(Event),
    /// The connection ended (closed, reset, or cut by the balancer).
    Closed(String),
    /// Nothing within the time given.
    Timeout,
}

impl Sse {
    /// Opens `url` (the whole URL, query included) with `token`, resuming after `last_id`.
    pub async fn open(url: &str, token: &str, last_id: Option<&str>) -> anyhow::Result<Sse> {
        // No overall timeout: the stream is meant to stay open.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut req = client
            .get(url)
            .bearer_auth(token)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await?;
        if res.status() != 200 {
            bail!(
                "the stream answered {}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
        Ok(Sse {
            body: Box::pin(res.bytes_stream()),
            buf: String::new(),
        })
    }

    /// The next event (comments such as `: hb` are skipped).
    pub async fn next(&mut self, within: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // A complete event is a block ending in a blank line.
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Event::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if ev.id.is_none() && ev.event.is_empty() && data.is_empty() {
                    continue;
                }
                ev.data = data.join("\n");
                return Next::Event(ev);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) => return Next::Closed("end of stream".into()),
                Ok(Some(Err(e))) => return Next::Closed(format!("{e}")),
                Ok(Some(Ok(chunk))) => {
                    self.buf
                        .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
                }
            }
        }
    }
}
