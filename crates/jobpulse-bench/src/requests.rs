//! The request/response scenarios — `progress`, `batch`, `etag` — against the server over
//! loopback with the load generator of [`crate::load`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use jobpulse_cli::config::Settings;

use crate::SEEDED;
use crate::args::{BenchArgs, secs};
use crate::load::{self, LoadResult, MakeRequest};
use crate::server::{ServerSpec, start_server};

fn row(name: &str, r: &LoadResult) -> String {
    format!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} |",
        r.rps(),
        r.pct_ms(0.50),
        r.pct_ms(0.99),
        r.errors + r.non_2xx
    )
}

/// The request/response scenarios: progress, batch, etag.
#[allow(clippy::print_stdout)]
pub(crate) async fn http_scenarios(
    settings: &Settings,
    args: &BenchArgs,
    only: &[&str],
) -> anyhow::Result<()> {
    let duration = secs(&args.duration, "duration")?;
    let warmup = secs(&args.warmup, "warmup")?;
    let server = start_server(
        settings,
        &ServerSpec {
            store: &args.store,
            with_old: only.contains(&"progress"),
            sse_cap: None,
            tenants: 1,
        },
    )?;
    let c = args.connections;
    println!(
        "\nconnections={c}, duration={}s, warmup={}s",
        duration.as_secs(),
        warmup.as_secs()
    );
    let token = server.token.clone();
    let path_for = |p: String| -> MakeRequest {
        let token = token.clone();
        Arc::new(move |_| load::get(&p, &token))
    };
    let hit_token = token.clone();
    let hit: MakeRequest = Arc::new(move |n| {
        let id = (n as i64 % SEEDED) + 1;
        load::get(&format!("/api/v1/media/videos/{id}/progress/"), &hit_token)
    });

    if only.contains(&"progress") {
        let a = load::run(server.addr, c, warmup, duration, hit.clone()).await?;
        let b = load::run(
            server.addr,
            c,
            warmup,
            duration,
            path_for("/api/v1/media/videos/999999/progress/".into()),
        )
        .await?;
        let bare = load::run(
            server.addr,
            c,
            warmup,
            duration,
            path_for("/healthz".into()),
        )
        .await?;
        let old_token = token.clone();
        let old: MakeRequest = Arc::new(move |n| {
            let id = (n as i64 % SEEDED) + 1;
            load::get(
                &format!("/old/api/v1/media/videos/{id}/progress/"),
                &old_token,
            )
        });
        let d = load::run(server.addr, c, warmup, duration, old).await?;
        println!("\n## progress endpoint\n");
        println!("| route | requests/s | p50 ms | p99 ms | errors |");
        println!("|---|---|---|---|---|");
        println!("{}", row("(a) progress, read-model hit", &a));
        println!("{}", row("(b) progress, miss (UNKNOWN)", &b));
        println!("{}", row("(c) bare route /healthz", &bare));
        println!("{}", row("(d) old way: PostgreSQL joins + membership", &d));
        println!(
            "\n(a)/(c) = {:.2}   (a)/(d) = {:.1}   (b)/(c) = {:.2}",
            a.rps() / bare.rps(),
            a.rps() / d.rps(),
            b.rps() / bare.rps()
        );
    }

    if only.contains(&"batch") {
        let ids: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
        let batch_path = format!("/api/v1/progress/?videos={}", ids.join(","));
        let batch = load::run(
            server.addr,
            c,
            warmup,
            duration,
            path_for(batch_path.clone()),
        )
        .await?;
        let singles = load::run(server.addr, c, warmup, duration, hit.clone()).await?;
        // Wall time to refresh 100 tasks from one client: 100 sequential polls vs one batch.
        let (seq_ms, batch_ms) = refresh_times(server.addr, &token, &batch_path).await?;
        println!("\n## batch read of 100 ids vs 100 single polls\n");
        println!(
            "| way | requests per refresh | refreshes/s (at {c} conns) | one client's refresh, median ms |"
        );
        println!("|---|---|---|---|");
        println!(
            "| 100 single polls | 100 | {:.1} | {seq_ms:.2} |",
            singles.rps() / 100.0
        );
        println!(
            "| one batch read | 1 | {:.1} | {batch_ms:.2} |",
            batch.rps()
        );
        println!(
            "\nthroughput ratio (batch/singles) = {:.1}   wall-time ratio (singles/batch) = {:.1}",
            batch.rps() / (singles.rps() / 100.0),
            seq_ms / batch_ms
        );
    }

    if only.contains(&"etag") {
        let plain = load::run(server.addr, c, warmup, duration, hit.clone()).await?;
        // The current ETag of video 1, then conditional polls of it.
        let tag = current_etag(server.addr, &token).await?;
        let cond_token = token.clone();
        let cond: MakeRequest = Arc::new(move |_| {
            let mut r = load::get("/api/v1/media/videos/1/progress/", &cond_token);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&tag) {
                r.headers_mut().insert("if-none-match", v);
            }
            r
        });
        let conditional = load::run(server.addr, c, warmup, duration, cond).await?;
        let per = |r: &LoadResult| r.bytes as f64 / r.requests.max(1) as f64;
        println!("\n## unchanged poll with and without ETag\n");
        println!("| poll | bytes per answer (headers + body) | requests/s |");
        println!("|---|---|---|");
        println!(
            "| plain GET (200 + body) | {:.0} | {:.0} |",
            per(&plain),
            plain.rps()
        );
        println!(
            "| If-None-Match (304, no body) | {:.0} | {:.0} |",
            per(&conditional),
            conditional.rps()
        );
        println!(
            "\nbytes ratio (plain/304) = {:.2}",
            per(&plain) / per(&conditional)
        );
    }
    drop(server);
    Ok(())
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

async fn refresh_times(
    addr: SocketAddr,
    token: &str,
    batch_path: &str,
) -> anyhow::Result<(f64, f64)> {
    use http_body_util::BodyExt;
    let mut send = connect(addr).await?;
    let mut seq = Vec::new();
    let mut batch = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        for id in 1..=100 {
            send.ready().await?;
            let res = send
                .send_request(load::get(
                    &format!("/api/v1/media/videos/{id}/progress/"),
                    token,
                ))
                .await?;
            res.into_body().collect().await?;
        }
        seq.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t0 = Instant::now();
        send.ready().await?;
        let res = send.send_request(load::get(batch_path, token)).await?;
        res.into_body().collect().await?;
        batch.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    seq.sort_by(f64::total_cmp);
    batch.sort_by(f64::total_cmp);
    Ok((seq[seq.len() / 2], batch[batch.len() / 2]))
}

async fn current_etag(addr: SocketAddr, token: &str) -> anyhow::Result<String> {
    let mut send = connect(addr).await?;
    send.ready().await?;
    let res = send
        .send_request(load::get("/api/v1/media/videos/1/progress/", token))
        .await?;
    res.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no ETag on the progress answer")
}
