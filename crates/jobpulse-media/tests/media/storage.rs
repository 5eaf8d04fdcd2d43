//! The object operations on both backends: file storage and S3 (the test server, a fresh bucket
//! and a key prefix per test).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use jobpulse_domain::{JobId, TenantId, VideoId};
use jobpulse_media::{
    MediaStorage, StorageError, hls_prefix, job_output_key, raw_key, thumbnail_key,
};

use crate::helpers::{Store, tempdir};

crate::on_both_backends!(
    streamed_upload_round_trips_through_download_and_reads,
    over_the_limit_is_too_large_and_leaves_nothing,
    delete_prefix_removes_one_video_and_only_it,
    missing_objects_are_not_found,
);

const MIB: usize = 1024 * 1024;

fn ids(video: i64) -> (TenantId, VideoId) {
    (
        TenantId::new(3).expect("valid"),
        VideoId::new(video).expect("valid"),
    )
}

/// `n` chunks of `size` bytes, each filled with its index, so order errors show.
fn body(n: usize, size: usize) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter((0..n).map(move |i| Ok(Bytes::from(vec![i as u8; size]))))
}

fn expected(n: usize, size: usize) -> Vec<u8> {
    (0..n).flat_map(|i| vec![i as u8; size]).collect()
}

async fn streamed_upload_round_trips_through_download_and_reads(store: Store) {
    let storage = &store.storage;
    let root = tempdir();
    let (t, v) = ids(321);
    let key = raw_key(t, v, "clip.mp4");

    // 12 MiB in 1 MiB chunks: three 5 MiB-or-less parts.
    let size = storage
        .put_stream(&key, body(12, MIB), 12 * MIB as u64)
        .await
        .expect("exactly at the limit is allowed");
    assert_eq!(size, 12 * MIB as u64);
    assert!(storage.exists(&key).await.expect("exists"));
    let info = storage.head(&key).await.expect("head");
    assert_eq!(info.size, size);
    assert_eq!(info.content_type, "video/mp4");
    assert!(
        info.e_tag.as_deref().is_some_and(|t| t.starts_with('"')),
        "{info:?}"
    );

    let local = root.path().join("work/deep/source.mp4");
    assert_eq!(
        storage.download_to(&key, &local).await.expect("download"),
        size
    );
    assert_eq!(std::fs::read(&local).expect("read"), expected(12, MIB));
    assert!(!root.path().join("work/deep/source.mp4.part").exists());

    let mut object = storage.get_stream(&key).await.expect("get");
    let mut all = Vec::new();
    while let Some(chunk) = object.stream.next().await {
        all.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(all, expected(12, MIB));

    let range = storage
        .get_range(&key, (MIB as u64 - 2)..(MIB as u64 + 2))
        .await
        .expect("range");
    assert_eq!(range.as_ref(), [0, 0, 1, 1]);
    // The same range streamed (an HTTP 206 body); `info` describes the whole object.
    let mut part = storage
        .get_stream_range(&key, (MIB as u64 - 2)..(2 * MIB as u64 + 1))
        .await
        .expect("range stream");
    assert_eq!(part.info.size, size);
    let mut bytes = Vec::new();
    while let Some(chunk) = part.stream.next().await {
        bytes.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(bytes, expected(12, MIB)[MIB - 2..2 * MIB + 1]);

    let copy = thumbnail_key(t, v);
    assert_eq!(
        storage.put_file(&copy, &local).await.expect("put_file"),
        size
    );
    assert_eq!(
        storage.head(&copy).await.expect("head").content_type,
        "image/jpeg"
    );
}

async fn over_the_limit_is_too_large_and_leaves_nothing(store: Store) {
    let storage = &store.storage;
    let (t, v) = ids(7);
    let key = raw_key(t, v, "big.mov");
    let err = storage
        .put_stream(&key, body(12, MIB), 8 * MIB as u64)
        .await
        .expect_err("over the limit");
    assert!(
        matches!(err, StorageError::TooLarge { limit } if limit == 8 * MIB as u64),
        "{err:?}"
    );
    assert!(!storage.exists(&key).await.expect("exists"));
    assert_eq!(
        store.files(),
        Vec::<std::path::PathBuf>::new(),
        "no staging files"
    );
    assert_eq!(
        storage.list_multipart_uploads().await.expect("list"),
        [],
        "the aborted upload is gone on S3 too"
    );

    // A body that fails midway (client hung up) leaves nothing either.
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 6 * MIB])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ]);
    let err = storage
        .put_stream(&key, failing, u64::MAX)
        .await
        .expect_err("body error");
    assert!(matches!(err, StorageError::Body(_)), "{err:?}");
    assert!(err.to_string().contains("client went away"));
    assert_eq!(store.files(), Vec::<std::path::PathBuf>::new());
    assert!(!storage.exists(&key).await.expect("exists"));
    assert_eq!(storage.list_multipart_uploads().await.expect("list"), []);
}

#[tokio::test]
async fn the_constructor_takes_any_object_store() {
    let storage = MediaStorage::new(Arc::new(object_store::memory::InMemory::new()))
        .with_part_size(64 * 1024);
    let (t, v) = ids(9);
    let key = raw_key(t, v, "m.mkv");
    assert_eq!(
        storage
            .put_stream(&key, body(5, 100_000), 1_000_000)
            .await
            .expect("put"),
        500_000
    );
    assert!(matches!(
        storage.put_stream(&key, body(11, 100_000), 1_000_000).await,
        Err(StorageError::TooLarge { .. })
    ));
    // The earlier object is intact: a refused upload never replaces it.
    assert_eq!(storage.head(&key).await.expect("head").size, 500_000);
}

async fn delete_prefix_removes_one_video_and_only_it(store: Store) {
    let storage = &store.storage;
    let (t, v321) = ids(321);
    let (_, v3210) = ids(3210);
    let src = tempdir();
    let files: Vec<String> = [
        "master.m3u8",
        "720p/index.m3u8",
        "720p/seg_00000.ts",
        "720p/seg_00001.ts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for f in &files {
        let p = src.path().join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, f.as_bytes()).expect("write");
    }
    let mut calls = Vec::new();
    let bytes = storage
        .put_files(&hls_prefix(t, v321), src.path(), &files, |done, total| {
            calls.push((done, total))
        })
        .await
        .expect("upload");
    assert_eq!(bytes, files.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(calls, [(1, 4), (2, 4), (3, 4), (4, 4)]);
    storage
        .put_files(&hls_prefix(t, v3210), src.path(), &files, |_, _| {})
        .await
        .expect("upload");
    let seg = hls_prefix(t, v321).join("720p/seg_00001.ts").expect("key");
    let mut got = Vec::new();
    let mut s = storage.get_stream(&seg).await.expect("get").stream;
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.expect("chunk"));
    }
    assert_eq!(got, b"720p/seg_00001.ts");

    assert_eq!(
        storage
            .delete_prefix(&hls_prefix(t, v321))
            .await
            .expect("delete"),
        4
    );
    assert!(!storage.exists(&seg).await.expect("exists"));
    if let Some(root) = &store.root {
        assert!(
            !root.path().join("tenants/3/video/hls/321").exists(),
            "empty directories cleaned"
        );
    }
    let other = hls_prefix(t, v3210).join("master.m3u8").expect("key");
    assert!(
        storage.exists(&other).await.expect("exists"),
        "…/3210/ untouched"
    );
    assert_eq!(
        storage
            .delete_prefix(&hls_prefix(t, v321))
            .await
            .expect("again"),
        0
    );
}

async fn missing_objects_are_not_found(store: Store) {
    let storage = &store.storage;
    let root = tempdir();
    let key = job_output_key(
        TenantId::new(1).expect("valid"),
        &JobId::parse("j1").expect("valid"),
        "result.json",
    );
    assert!(!storage.exists(&key).await.expect("exists"));
    assert!(matches!(
        storage.head(&key).await,
        Err(StorageError::NotFound { .. })
    ));
    let err = storage
        .download_to(&key, &root.path().join("x"))
        .await
        .expect_err("missing");
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    assert!(!root.path().join("x").exists() && !root.path().join("x.part").exists());
    storage
        .delete(&key)
        .await
        .expect("deleting a missing object is fine");
}

#[tokio::test]
async fn s3_keys_live_under_the_url_prefix() {
    use jobpulse_media::StorageUrl;
    use jobpulse_media::testing::s3::{fresh_bucket, options};

    let bucket = fresh_bucket().await;
    let url = format!("s3://{bucket}/prod/jp");
    let storage =
        MediaStorage::open(&StorageUrl::parse(&url).expect("url"), &options()).expect("open");
    assert!(storage.presigns());
    assert!(
        storage.describe().starts_with(&url),
        "{}",
        storage.describe()
    );
    let (t, v) = ids(5);
    let key = raw_key(t, v, "a.mp4");
    storage
        .put_stream(&key, body(1, 1000), 1000)
        .await
        .expect("put");

    let whole = MediaStorage::open(
        &StorageUrl::parse(&format!("s3://{bucket}")).expect("url"),
        &options(),
    )
    .expect("open");
    let listed: Vec<String> = whole
        .object_store()
        .list(None)
        .map(|m| m.expect("meta").location.to_string())
        .collect()
        .await;
    assert_eq!(listed, ["prod/jp/tenants/3/video/raw/5/source.mp4"]);
    assert!(
        !whole.exists(&key).await.expect("exists"),
        "not at the bucket root"
    );
}
