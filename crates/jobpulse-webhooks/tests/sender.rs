//! The sender against small HTTP servers of the test (raw TCP, one connection each): a redirect
//! is not followed, an endless answer is read up to the cap and dropped, a silent server times
//! out — each attempt recorded with its outcome.

use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_db::webhooks::{DeliveryState, WebhookDelivery};
use jobpulse_db::{Caps, Queue, WebhookEvent};
use jobpulse_testkit::{Backend, TestDatabase};
use jobpulse_webhooks::{AllowList, Sender, SenderConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the test's server does after reading the request.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Redirect,
    Endless,
    Silent,
}

/// Serves one connection; returns how many body bytes it wrote (Endless).
async fn serve(listener: TcpListener, mode: Mode) -> anyhow::Result<u64> {
    let (mut s, _) = listener.accept().await?;
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
    match mode {
        Mode::Redirect => {
            s.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n",
            )
            .await?;
            Ok(0)
        }
        Mode::Endless => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
                .await?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0u64;
            while sent < 1 << 30 {
                match tokio::time::timeout(Duration::from_secs(5), s.write_all(&chunk)).await {
                    Ok(Ok(())) => sent += chunk.len() as u64,
                    _ => break,
                }
            }
            Ok(sent)
        }
        Mode::Silent => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(0)
        }
    }
}

/// One READY video with an endpoint on a server in `mode`; one sender round; the delivery and
/// what the server wrote.
async fn one_round(mode: Mode, timeout: Duration) -> anyhow::Result<(WebhookDelivery, u64)> {
    let t = TestDatabase::new(Backend::Sqlite).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let server = tokio::spawn(serve(listener, mode));
    let tenant = t.db.create_tenant("a", "A").await?.tenant_id;
    let ep =
        t.db.create_webhook_endpoint(tenant, &url, &[WebhookEvent::VideoReady])
            .await?
            .endpoint;
    t.db.create_video(tenant, None, "v", "k").await?;
    let claim =
        t.db.claim(Queue::Video, "w1", Duration::from_secs(30), Caps::default())
            .await?
            .context("a job")?;
    t.db.complete_video(&claim, "hls/master.m3u8", 1, 2).await?;
    let sender = Sender::new(
        t.db.clone(),
        SenderConfig {
            allow: AllowList::parse(&["127.0.0.1"]).map_err(anyhow::Error::msg)?,
            timeout,
            schedule: vec![Duration::from_secs(3600)],
            ..SenderConfig::default()
        },
    )?;
    assert_eq!(sender.round().await?, 1);
    let written = tokio::time::timeout(Duration::from_secs(20), server).await???;
    let page = t.db.webhook_deliveries(tenant, &ep.id, None, 10).await?;
    Ok((
        page.items.into_iter().next().context("a delivery")?,
        written,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() -> anyhow::Result<()> {
    let (d, _) = one_round(Mode::Redirect, Duration::from_secs(5)).await?;
    assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
    assert_eq!(d.last_status, Some(302));
    assert_eq!(d.last_error.as_deref(), Some("endpoint answered HTTP 302"));
    assert_eq!(d.attempt_log.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_read_up_to_the_cap_and_dropped() -> anyhow::Result<()> {
    let started = Instant::now();
    let (d, written) = one_round(Mode::Endless, Duration::from_secs(10)).await?;
    assert_eq!(d.state, DeliveryState::Delivered, "{d:?}");
    assert_eq!(d.last_status, Some(200));
    // The sender hung up long before the gigabyte was sent (kernel buffers hold a few MiB).
    assert!(written < 64 << 20, "the server could write {written} bytes");
    assert!(started.elapsed() < Duration::from_secs(15));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out() -> anyhow::Result<()> {
    let (d, _) = one_round(Mode::Silent, Duration::from_secs(1)).await?;
    assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
    assert_eq!(d.last_error.as_deref(), Some("no answer within 1s"));
    let a = &d.attempt_log[0];
    assert!((900..3000).contains(&a.duration_ms), "{a:?}");
    Ok(())
}
