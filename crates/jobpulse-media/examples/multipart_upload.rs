//! Benchmark: a multipart upload through presigned part URLs (parts of 100 MiB, 3 in flight, as
//! the front end sends them) against one plain presigned `PUT` of the same bytes to the same
//! storage, measured in the same run, alternating which goes first. Prints every round and the
//! median ratio (multipart time / single-PUT time).
//!
//! ```text
//! eval "export $(scripts/s3-test-server start)"
//! cargo run --release -p jobpulse-media --example multipart_upload -- [--size-mib 300]
//!     [--part-mib 100] [--in-flight 3] [--rounds 3] [--url s3://bucket/prefix]
//! ```
//!
//! Without `--url` it uses a fresh bucket on the test server (`JOBPULSE_TEST_S3_ENDPOINT`); with
//! it, any S3-compatible storage configured by the standard `AWS_*` variables. `--url
//! file:///dir` measures file storage's variant at the library level (the bytes go through
//! `write` / `put_part` in-process; its HTTP routes are the API's).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use jobpulse_domain::{TenantId, VideoId};
use jobpulse_media::{CompletedPart, MediaStorage, StorageKey, raw_key};

const MIB: usize = 1024 * 1024;
const URL_EXPIRY: Duration = Duration::from_secs(3600);

struct Args {
    size_mib: usize,
    part_mib: usize,
    in_flight: usize,
    rounds: usize,
    url: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        size_mib: 300,
        part_mib: 100,
        in_flight: 3,
        rounds: 3,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--size-mib" => a.size_mib = value()?.parse()?,
            "--part-mib" => a.part_mib = value()?.parse()?,
            "--in-flight" => a.in_flight = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--url" => a.url = Some(value()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.part_mib >= 5 && a.size_mib >= a.part_mib && a.in_flight >= 1);
    Ok(a)
}

/// Incompressible-looking bytes (xorshift), made once.
fn payload(len: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn chunks(data: Bytes) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let n = data.len().div_ceil(MIB);
    futures::stream::iter(
        (0..n).map(move |i| Ok(data.slice(i * MIB..((i + 1) * MIB).min(data.len())))),
    )
}

async fn single(
    storage: &MediaStorage,
    http: &reqwest::Client,
    key: &StorageKey,
    data: &Bytes,
) -> anyhow::Result<()> {
    if storage.presigns() {
        let url = storage
            .presign_put(key, URL_EXPIRY, Some("video/mp4"))
            .await?;
        let resp = http
            .put(url)
            .header("content-type", "video/mp4")
            .body(data.clone())
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "PUT answered {}", resp.status());
        anyhow::ensure!(resp.headers().contains_key("etag"), "no ETag");
    } else {
        storage
            .write(key, chunks(data.clone()), data.len() as u64)
            .await?;
    }
    Ok(())
}

async fn multipart(
    storage: &MediaStorage,
    http: &reqwest::Client,
    key: &StorageKey,
    data: &Bytes,
    part: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    let id = storage.create_multipart(key).await?;
    let count = data.len().div_ceil(part);
    let parts: Vec<CompletedPart> = futures::stream::iter(1..=count as u32)
        .map(|n| {
            let id = id.clone();
            let bytes = data.slice((n as usize - 1) * part..(n as usize * part).min(data.len()));
            async move {
                let e_tag = if storage.presigns() {
                    let url = storage.presign_part(key, &id, n, URL_EXPIRY).await?;
                    let resp = http.put(url).body(bytes).send().await?;
                    anyhow::ensure!(
                        resp.status().is_success(),
                        "part PUT answered {}",
                        resp.status()
                    );
                    resp.headers()["etag"].to_str()?.to_owned()
                } else {
                    let len = bytes.len() as u64;
                    storage
                        .put_part(key, &id, n, chunks(bytes), len)
                        .await?
                        .e_tag
                };
                Ok(CompletedPart {
                    part_number: n,
                    e_tag,
                })
            }
        })
        .buffer_unordered(in_flight)
        .try_collect()
        .await?;
    let complete = Instant::now();
    storage.complete_multipart(key, &id, parts).await?;
    Ok(complete.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let storage = match &a.url {
        Some(url) => MediaStorage::from_url(url)?,
        None => jobpulse_media::testing::s3::fresh_storage("bench").await,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()?;
    let data = payload(a.size_mib * MIB);
    let key = raw_key(TenantId::new(1)?, VideoId::new(1)?, "bench.mp4");
    println!(
        "storage: {}\nobject: {} MiB; multipart: parts of {} MiB, {} in flight; {} rounds",
        storage.describe(),
        a.size_mib,
        a.part_mib,
        a.in_flight,
        a.rounds
    );
    let (mut singles, mut multis, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=a.rounds {
        let mut times = [0.0f64; 2];
        let mut completing = 0.0;
        // Alternate the order so neither side always runs on a warmer server.
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for which in order {
            let start = Instant::now();
            if which == 0 {
                single(&storage, &http, &key, &data).await?;
            } else {
                completing =
                    multipart(&storage, &http, &key, &data, a.part_mib * MIB, a.in_flight).await?;
            }
            times[which] = start.elapsed().as_secs_f64();
            let info = storage.head(&key).await?;
            anyhow::ensure!(info.size == data.len() as u64, "stored {} bytes", info.size);
            storage.delete(&key).await?;
        }
        let mib = a.size_mib as f64;
        println!(
            "round {round}: single PUT {:.2} s ({:.0} MiB/s) · multipart {:.2} s ({:.0} MiB/s; \
             of which completing {:.2} s) · ratio {:.2}",
            times[0],
            mib / times[0],
            times[1],
            mib / times[1],
            completing,
            times[1] / times[0]
        );
        singles.push(times[0]);
        multis.push(times[1]);
        ratios.push(times[1] / times[0]);
    }
    println!(
        "median: single PUT {:.2} s · multipart {:.2} s · multipart/single = {:.2}",
        median(singles),
        median(multis),
        median(ratios)
    );
    Ok(())
}
