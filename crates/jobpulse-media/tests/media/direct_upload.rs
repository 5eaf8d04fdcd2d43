//! Direct uploads: presigned PUTs (real HTTP PUTs with reqwest to the S3 test server, which
//! checks signatures and expiry as S3 does), multipart uploads driven the way the front end
//! drives them (parts out of order, ETags read from the answers), on S3 and on file storage,
//! completion twice, abort, verification, and the cleanup of abandoned uploads.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jobpulse_domain::{TenantId, VideoId};
use jobpulse_media::{
    CompletedPart, MIN_PART_SIZE, MediaStorage, StorageError, StorageKey, raw_key,
};

use crate::helpers::Store;

crate::on_both_backends!(
    multipart_parts_out_of_order_assemble_in_order,
    a_bad_part_list_is_refused_and_the_upload_stays_open,
    abort_frees_the_upload_and_is_idempotent,
    verify_tells_missing_empty_and_too_large,
    stale_uploads_are_aborted_and_fresh_ones_kept,
);

fn video_key(video: i64) -> StorageKey {
    raw_key(
        TenantId::new(4).expect("valid"),
        VideoId::new(video).expect("valid"),
        "upload.mp4",
    )
}

/// Part `n` (1-based) of a test object: `len` bytes, each byte derived from its position so a
/// misplaced part shows.
fn part_bytes(n: u32, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| ((i / 4096) as u8).wrapping_mul(31).wrapping_add(n as u8))
            .collect::<Vec<u8>>(),
    )
}

fn once(bytes: Bytes) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter([Ok(bytes)])
}

async fn read_all(storage: &MediaStorage, key: &StorageKey) -> Vec<u8> {
    let mut object = storage.get_stream(key).await.expect("get");
    let mut all = Vec::new();
    while let Some(chunk) = object.stream.next().await {
        all.extend_from_slice(&chunk.expect("chunk"));
    }
    all
}

/// Uploads part `n` the way the front end does: a presigned PUT without a Content-Type on S3,
/// the library call the API's own part URL makes on file storage. Returns the ETag answered.
async fn upload_part(
    storage: &MediaStorage,
    key: &StorageKey,
    id: &str,
    n: u32,
    bytes: Bytes,
) -> String {
    if storage.presigns() {
        let url = storage
            .presign_part(key, id, n, Duration::from_secs(600))
            .await
            .expect("presign part");
        assert!(
            url.query()
                .is_some_and(|q| q.contains(&format!("partNumber={n}"))),
            "{url}"
        );
        let resp = reqwest::Client::new()
            .put(url)
            .body(bytes)
            .send()
            .await
            .expect("PUT part");
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
        resp.headers()["etag"].to_str().expect("etag").to_owned()
    } else {
        let part = storage
            .put_part(key, id, n, once(bytes.clone()), 200 * 1024 * 1024)
            .await
            .expect("put part");
        assert_eq!(part.size, bytes.len() as u64);
        part.e_tag
    }
}

async fn multipart_parts_out_of_order_assemble_in_order(store: Store) {
    let storage = &store.storage;
    let key = video_key(1);
    let id = storage.create_multipart(&key).await.expect("create");
    let sizes = [MIN_PART_SIZE as usize, MIN_PART_SIZE as usize + 7, 1234];
    let mut parts = Vec::new();
    // Uploaded 3, 1, 2 and listed in completion order, as the front end does.
    for n in [3u32, 1, 2] {
        let e_tag = upload_part(storage, &key, &id, n, part_bytes(n, sizes[n as usize - 1])).await;
        parts.push(CompletedPart {
            part_number: n,
            e_tag,
        });
    }
    assert!(
        !storage.exists(&key).await.expect("exists"),
        "nothing visible before completion"
    );
    let pending = storage.list_multipart_uploads().await.expect("list");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        (pending[0].key.clone(), pending[0].upload_id.clone()),
        (key.clone(), id.clone())
    );

    let info = storage
        .complete_multipart(&key, &id, parts.clone())
        .await
        .expect("complete");
    let want: Vec<u8> = (1..=3u32)
        .flat_map(|n| part_bytes(n, sizes[n as usize - 1]).to_vec())
        .collect();
    assert_eq!(info.size, want.len() as u64);
    assert_eq!(read_all(storage, &key).await, want);
    assert_eq!(storage.list_multipart_uploads().await.expect("list"), []);

    // Completing twice: S3 answers a repeated completion with the object (it is idempotent
    // there), file storage with NoSuchUpload; either way nothing changes.
    match storage.complete_multipart(&key, &id, parts).await {
        Ok(again) => {
            assert!(
                storage.presigns(),
                "file storage has no upload left to complete"
            );
            assert_eq!(again.size, info.size);
        }
        Err(StorageError::NoSuchUpload { .. }) => {}
        Err(e) => panic!("{e:?}"),
    }
    assert_eq!(
        storage.head(&key).await.expect("head").size,
        want.len() as u64
    );
    assert!(
        store
            .files()
            .iter()
            .all(|f| !f.to_string_lossy().contains("multipart")),
        "staging removed: {:?}",
        store.files()
    );
}

async fn a_bad_part_list_is_refused_and_the_upload_stays_open(store: Store) {
    let storage = &store.storage;
    let key = video_key(2);
    let id = storage.create_multipart(&key).await.expect("create");
    let e1 = upload_part(storage, &key, &id, 1, part_bytes(1, MIN_PART_SIZE as usize)).await;
    let e2 = upload_part(storage, &key, &id, 2, part_bytes(2, 10)).await;
    let part = |n, e: &str| CompletedPart {
        part_number: n,
        e_tag: e.to_owned(),
    };

    // A wrong ETag (another part's), a missing part, a too-small middle part: refused, nothing
    // visible, and the upload still completes with the right list afterwards.
    for bad in [
        vec![part(1, &e2), part(2, &e2)],
        vec![part(2, &e2)],
        vec![part(1, &e1), part(2, &e2), part(3, &e2)],
    ] {
        let err = storage
            .complete_multipart(&key, &id, bad.clone())
            .await
            .expect_err("bad list");
        assert!(
            matches!(err, StorageError::InvalidParts(_)),
            "{bad:?}: {err:?}"
        );
        assert!(!storage.exists(&key).await.expect("exists"));
    }
    let small = storage
        .create_multipart(&video_key(3))
        .await
        .expect("create");
    let s1 = upload_part(storage, &video_key(3), &small, 1, part_bytes(1, 1000)).await;
    let s2 = upload_part(storage, &video_key(3), &small, 2, part_bytes(2, 1000)).await;
    let err = storage
        .complete_multipart(&video_key(3), &small, vec![part(2, &s2), part(1, &s1)])
        .await
        .expect_err("part 1 under the minimum");
    assert!(matches!(err, StorageError::InvalidParts(_)), "{err:?}");

    // The upload id belongs to its key (S3 enforces this itself; the test server, moto, does
    // not, so this is checked on file storage only).
    if !storage.presigns() {
        let err = storage
            .complete_multipart(&video_key(9), &id, vec![part(1, &e1), part(2, &e2)])
            .await
            .expect_err("other key");
        assert!(matches!(err, StorageError::NoSuchUpload { .. }), "{err:?}");
    }

    let info = storage
        .complete_multipart(&key, &id, vec![part(2, &e2), part(1, &e1)])
        .await
        .expect("the right list still completes");
    assert_eq!(info.size, MIN_PART_SIZE + 10);
}

async fn abort_frees_the_upload_and_is_idempotent(store: Store) {
    let storage = &store.storage;
    let key = video_key(4);
    let id = storage.create_multipart(&key).await.expect("create");
    let e1 = upload_part(storage, &key, &id, 1, part_bytes(1, 2000)).await;
    storage.abort_multipart(&key, &id).await.expect("abort");
    assert_eq!(storage.list_multipart_uploads().await.expect("list"), []);
    storage
        .abort_multipart(&key, &id)
        .await
        .expect("abort again is fine");
    storage
        .abort_multipart(&key, "not-an-upload")
        .await
        .expect("unknown is fine");
    let err = storage
        .complete_multipart(
            &key,
            &id,
            vec![CompletedPart {
                part_number: 1,
                e_tag: e1,
            }],
        )
        .await
        .expect_err("aborted");
    assert!(matches!(err, StorageError::NoSuchUpload { .. }), "{err:?}");
    assert!(!storage.exists(&key).await.expect("exists"));
    assert_eq!(
        store.files(),
        Vec::<std::path::PathBuf>::new(),
        "nothing left on disk"
    );
}

async fn verify_tells_missing_empty_and_too_large(store: Store) {
    let storage = &store.storage;
    let missing = storage.verify_upload(&video_key(5), 100).await;
    assert!(
        matches!(missing, Err(StorageError::NotFound { .. })),
        "{missing:?}"
    );
    storage
        .put_stream(
            &video_key(5),
            futures::stream::empty::<Result<Bytes, std::io::Error>>(),
            100,
        )
        .await
        .expect("empty object");
    let empty = storage.verify_upload(&video_key(5), 100).await;
    assert!(
        matches!(empty, Err(StorageError::Empty { .. })),
        "{empty:?}"
    );
    storage
        .put_stream(&video_key(6), once(Bytes::from(vec![7u8; 101])), 1000)
        .await
        .expect("object");
    let big = storage.verify_upload(&video_key(6), 100).await;
    assert!(
        matches!(big, Err(StorageError::TooLarge { limit: 100 })),
        "{big:?}"
    );
    assert_eq!(
        storage
            .verify_upload(&video_key(6), 101)
            .await
            .expect("fits")
            .size,
        101
    );
}

async fn stale_uploads_are_aborted_and_fresh_ones_kept(store: Store) {
    let storage = &store.storage;
    let old = storage
        .create_multipart(&video_key(7))
        .await
        .expect("create");
    upload_part(storage, &video_key(7), &old, 1, part_bytes(1, 100)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = storage
        .create_multipart(&video_key(8))
        .await
        .expect("create");

    let aborted = storage
        .abort_stale_multipart(Duration::from_secs(1))
        .await
        .expect("cleanup");
    assert_eq!(
        aborted
            .iter()
            .map(|u| u.upload_id.as_str())
            .collect::<Vec<_>>(),
        [old.as_str()]
    );
    assert_eq!(aborted[0].key, video_key(7));
    let left = storage.list_multipart_uploads().await.expect("list");
    assert_eq!(
        left.iter()
            .map(|u| u.upload_id.as_str())
            .collect::<Vec<_>>(),
        [fresh.as_str()]
    );
    let none = storage
        .abort_stale_multipart(Duration::from_secs(3600))
        .await
        .expect("cleanup");
    assert_eq!(none, []);
}

#[tokio::test]
async fn presigned_put_takes_the_browser_upload_and_refuses_tampering() {
    let store = Store::s3().await;
    let storage = &store.storage;
    let key = video_key(10);
    let url = storage
        .presign_put(&key, Duration::from_secs(7200), Some("video/mp4"))
        .await
        .expect("presign");
    let http = reqwest::Client::new();
    let body = part_bytes(1, 300_000);
    let resp = http
        .put(url.clone())
        .header("content-type", "video/mp4")
        .body(body.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 200);
    let e_tag = resp.headers()["etag"].to_str().expect("etag").to_owned();
    let info = storage
        .verify_upload(&key, 300_000)
        .await
        .expect("verified");
    assert_eq!(info.e_tag.as_deref(), Some(e_tag.as_str()));
    assert_eq!(read_all(storage, &key).await, body.to_vec());

    // The signature covers the Content-Type, the key and the expiry.
    let resp = http
        .put(url.clone())
        .header("content-type", "text/html")
        .body("<script>")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 403, "another content type");
    let other = url.as_str().replace("/source.mp4", "/other.mp4");
    let resp = http
        .put(other)
        .header("content-type", "video/mp4")
        .body("x")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 403, "another key");
    let short = storage
        .presign_put(&key, Duration::from_secs(1), None)
        .await
        .expect("presign");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = http.put(short).body("late").send().await.expect("PUT");
    assert_eq!(resp.status(), 403, "expired");
    assert!(resp.text().await.expect("body").contains("expired"));
    assert_eq!(read_all(storage, &key).await, body.to_vec(), "unchanged");

    // A presigned GET reads it back, ranges included.
    let get = storage
        .presign_get(&key, Duration::from_secs(60))
        .await
        .expect("presign get");
    let resp = http
        .get(get)
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), &body[..10]);

    for bad in [Duration::ZERO, Duration::from_secs(8 * 24 * 3600)] {
        let err = storage
            .presign_put(&key, bad, None)
            .await
            .expect_err("bad expiry");
        assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
    }
    let err = storage
        .presign_put(
            &key,
            Duration::from_secs(60),
            Some("video/mp4\r\nx-evil: 1"),
        )
        .await
        .expect_err("header injection");
    assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn file_storage_has_no_presigned_urls_but_writes_with_an_etag() {
    let store = Store::file();
    let storage = &store.storage;
    assert!(!storage.presigns());
    for result in [
        storage
            .presign_put(&video_key(11), Duration::from_secs(60), None)
            .await,
        storage
            .presign_get(&video_key(11), Duration::from_secs(60))
            .await,
        storage
            .presign_part(
                &video_key(11),
                "0123456789abcdef0123456789abcdef",
                1,
                Duration::from_secs(60),
            )
            .await,
    ] {
        assert!(
            matches!(result, Err(StorageError::Unsupported(_))),
            "{result:?}"
        );
    }
    let written = storage
        .write(&video_key(11), once(Bytes::from_static(b"bytes")), 10)
        .await
        .expect("write");
    assert_eq!(written.size, 5);
    let tag = written.e_tag.expect("etag");
    assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
    assert_eq!(
        storage.head(&video_key(11)).await.expect("head").e_tag,
        Some(tag)
    );

    // A client's upload id never names a directory.
    for id in ["../../tenants", "0123456789ABCDEF0123456789ABCDEF", "x"] {
        let err = storage
            .put_part(&video_key(11), id, 1, once(Bytes::from_static(b"x")), 10)
            .await
            .expect_err("bad id");
        assert!(
            matches!(err, StorageError::NoSuchUpload { .. }),
            "{id}: {err:?}"
        );
    }
    // A part over its limit is refused and leaves no part behind.
    let id = storage
        .create_multipart(&video_key(12))
        .await
        .expect("create");
    let err = storage
        .put_part(&video_key(12), &id, 1, once(Bytes::from(vec![0u8; 11])), 10)
        .await
        .expect_err("too large");
    assert!(
        matches!(err, StorageError::TooLarge { limit: 10 }),
        "{err:?}"
    );
    let err = storage
        .complete_multipart(
            &video_key(12),
            &id,
            vec![CompletedPart {
                part_number: 1,
                e_tag: "\"x\"".into(),
            }],
        )
        .await
        .expect_err("no part 1");
    assert!(matches!(err, StorageError::InvalidParts(_)), "{err:?}");
}

/// The API calls these from axum handlers and spawned tasks: their futures must be `Send`.
#[test]
fn direct_upload_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let storage = MediaStorage::new(std::sync::Arc::new(object_store::memory::InMemory::new()));
    let key = video_key(1);
    send(storage.write(&key, once(Bytes::new()), 1));
    send(storage.presign_put(&key, Duration::from_secs(1), None));
    send(storage.create_multipart(&key));
    send(storage.put_part(&key, "id", 1, once(Bytes::new()), 1));
    send(storage.complete_multipart(&key, "id", Vec::new()));
    send(storage.abort_multipart(&key, "id"));
    send(storage.abort_stale_multipart(Duration::from_secs(1)));
    send(storage.verify_upload(&key, 1));
    send(storage.check(&[]));
}

/// File storage's multipart on a local directory (file copies) and on any other store
/// (streamed): a part sent again gets a new ETag, and only the current one completes.
#[tokio::test]
async fn staged_parts_sent_again_need_their_new_etag() {
    let file = Store::file();
    let memory = MediaStorage::new(std::sync::Arc::new(object_store::memory::InMemory::new()));
    for storage in [&file.storage, &memory] {
        let key = video_key(20);
        let id = storage.create_multipart(&key).await.expect("create");
        let p2 = upload_part(storage, &key, &id, 2, part_bytes(2, 333)).await;
        let first = upload_part(storage, &key, &id, 1, part_bytes(9, MIN_PART_SIZE as usize)).await;
        let again = upload_part(storage, &key, &id, 1, part_bytes(1, MIN_PART_SIZE as usize)).await;
        assert_ne!(first, again, "{storage:?}");
        let part = |n, e: &String| CompletedPart {
            part_number: n,
            e_tag: e.clone(),
        };
        let err = storage
            .complete_multipart(&key, &id, vec![part(2, &p2), part(1, &first)])
            .await
            .expect_err("stale ETag");
        assert!(matches!(err, StorageError::InvalidParts(_)), "{err:?}");
        assert!(!storage.exists(&key).await.expect("exists"));
        storage
            .complete_multipart(&key, &id, vec![part(2, &p2), part(1, &again)])
            .await
            .expect("complete");
        let want: Vec<u8> = [part_bytes(1, MIN_PART_SIZE as usize), part_bytes(2, 333)].concat();
        assert_eq!(read_all(storage, &key).await, want, "{storage:?}");
        assert_eq!(storage.list_multipart_uploads().await.expect("list"), []);
    }
    assert!(
        file.files()
            .iter()
            .all(|f| f.to_string_lossy().contains("tenants/4/video/raw/20")),
        "only the object is left: {:?}",
        file.files()
    );
}
