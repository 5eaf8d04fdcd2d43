//! Storage key naming. Keys are built only here, only from validated domain ids; nothing a client
//! sent (a file name, a path) becomes part of a key unsanitised. (Reading a key back —
//! [`StorageKey::parse`], [`StoragePrefix::join`], [`StorageKey::resolve`] for a playlist's
//! relative URIs — checks it; it builds no new kind of key.)
//!
//! | key | holds |
//! |---|---|
//! | `tenants/3/video/uploads/k3x…9q/source.mp4` | an uploaded original, as the API stores it ([`upload_key`], [`UploadKind::Video`]) |
//! | `tenants/3/jobs/uploads/k3x…9q/input.xlsx` | an AI job's uploaded input ([`upload_key`], [`UploadKind::JobInput`]) |
//! | `tenants/3/video/raw/321/source.mp4` | an original under its video's id (`raw_key`, only with the `testing` feature: tests and benches place originals there) |
//! | `tenants/3/video/hls/321/` | the HLS output ([`hls_prefix`]): `master.m3u8`, `720p/index.m3u8`, `720p/seg_00000.ts`, … |
//! | `tenants/3/video/thumbnails/321.jpg` | the poster frame ([`thumbnail_key`]) |
//! | `tenants/3/jobs/a1b2/output/result.json` | an AI job's output files ([`job_output_key`]) |
//! | `multipart/0123…cdef/upload.json`, `…/part-00001` | file storage's staged multipart upload ([`multipart_staging_prefix`]) |
//! | `jobpulse-check/probe-….txt` | the storage check's probe object, deleted at once ([`storage_probe_key`]) |
//!
//! The tenant is the first segment so one tenant's data can be listed, exported or deleted by
//! prefix. An upload keeps only an extension from an allowlist — video containers for videos,
//! spreadsheet/document types for job inputs — and `bin` otherwise (the client's file name is
//! never used: it could carry `../`, control characters, or an extension such as `.m3u8` or
//! `.html` that a content-type-by-extension server or player would act on).

use jobpulse_domain::{JobId, TenantId, VideoId};

use crate::transcode::MASTER_PLAYLIST;

mod internal;
mod path;
pub use internal::{
    multipart_meta_key, multipart_part_key, multipart_staging_prefix, multipart_staging_root,
    storage_probe_key,
};
pub use path::{KeyError, StorageKey, StoragePrefix};

/// Container extensions kept for raw uploads; anything else is stored as `source.bin` (ffprobe
/// identifies the content, not the name).
const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "mov", "m4v", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mts", "m2ts", "3gp", "3g2",
    "wmv", "flv", "ogv", "mxf",
];

/// Extensions kept for AI job inputs; anything else is stored as `input.bin` (each handler checks
/// the content).
const JOB_INPUT_EXTENSIONS: &[&str] = &[
    "xlsx", "xlsm", "xlsb", "xls", "ods", "csv", "tsv", "txt", "json", "pdf", "docx", "pptx",
];

/// What an upload is: it decides the key's area, its stem and the extensions it may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadKind {
    /// A video's original: `tenants/{t}/video/uploads/{random}/source.<video container|bin>`.
    Video,
    /// An AI job's input: `tenants/{t}/jobs/uploads/{random}/input.<document type|bin>`.
    JobInput,
}

/// The extension an upload named `client_filename` is stored with: its own, lower-cased, when
/// `kind` allows it, otherwise `bin`.
pub fn upload_extension(kind: UploadKind, client_filename: &str) -> &'static str {
    let allowed = match kind {
        UploadKind::Video => VIDEO_EXTENSIONS,
        UploadKind::JobInput => JOB_INPUT_EXTENSIONS,
    };
    client_filename
        .rsplit_once('.')
        .map(|(_, e)| e.trim().to_ascii_lowercase())
        .and_then(|e| allowed.iter().copied().find(|a| *a == e))
        .unwrap_or("bin")
}

/// A fresh key for an upload (a new random segment each call, so uploads never overwrite each
/// other), e.g. `tenants/3/video/uploads/k3x0c9q1m2z7a8b4/source.mp4`.
pub fn upload_key(tenant: TenantId, kind: UploadKind, client_filename: &str) -> StorageKey {
    use rand::RngExt;
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let token: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    let (area, stem) = match kind {
        UploadKind::Video => ("video", "source"),
        UploadKind::JobInput => ("jobs", "input"),
    };
    let ext = upload_extension(kind, client_filename);
    StorageKey(format!(
        "tenants/{tenant}/{area}/uploads/{token}/{stem}.{ext}"
    ))
}

/// An original placed under its video's id by a test or a benchmark:
/// `tenants/{tid}/video/raw/{vid}/source.<ext>`, the extension taken from `client_filename` only
/// when it is a known video container. (The API stores uploads under [`upload_key`].)
#[cfg(any(test, feature = "testing"))]
pub fn raw_key(tenant: TenantId, video: VideoId, client_filename: &str) -> StorageKey {
    let ext = client_filename
        .rsplit_once('.')
        .map(|(_, e)| e.trim().to_ascii_lowercase())
        .filter(|e| VIDEO_EXTENSIONS.contains(&e.as_str()))
        .unwrap_or_else(|| "bin".to_owned());
    StorageKey(format!("{}source.{ext}", raw_prefix(tenant, video)))
}

/// The directory of [`raw_key`]: `tenants/{tid}/video/raw/{vid}/`.
#[cfg(any(test, feature = "testing"))]
pub fn raw_prefix(tenant: TenantId, video: VideoId) -> StoragePrefix {
    StoragePrefix(format!("tenants/{tenant}/video/raw/{video}/"))
}

/// Everything of one tenant: `tenants/{tid}/`.
pub fn tenant_prefix(tenant: TenantId) -> StoragePrefix {
    StoragePrefix(format!("tenants/{tenant}/"))
}

/// A video's HLS output: `tenants/{tid}/video/hls/{vid}/`.
pub fn hls_prefix(tenant: TenantId, video: VideoId) -> StoragePrefix {
    StoragePrefix(format!("tenants/{tenant}/video/hls/{video}/"))
}

/// The master playlist: `tenants/{tid}/video/hls/{vid}/master.m3u8` (docs/contract.md's `hls_path`).
pub fn hls_master_key(tenant: TenantId, video: VideoId) -> StorageKey {
    StorageKey(format!("{}{MASTER_PLAYLIST}", hls_prefix(tenant, video)))
}

/// A video's thumbnail: `tenants/{tid}/video/thumbnails/{vid}.jpg`.
pub fn thumbnail_key(tenant: TenantId, video: VideoId) -> StorageKey {
    StorageKey(format!("tenants/{tenant}/video/thumbnails/{video}.jpg"))
}

/// Everything of one AI job: `tenants/{tid}/jobs/{job_id}/`.
pub fn job_prefix(tenant: TenantId, job: &JobId) -> StoragePrefix {
    StoragePrefix(format!("tenants/{tenant}/jobs/{job}/"))
}

/// An AI job's output file: `tenants/{tid}/jobs/{job_id}/output/<filename>`, the file name reduced
/// to `[A-Za-z0-9._-]` (other characters become `_`, a leading `.` too), at most 100 bytes
/// keeping its extension, `output` when nothing is left.
pub fn job_output_key(tenant: TenantId, job: &JobId, filename: &str) -> StorageKey {
    StorageKey(format!(
        "{}output/{}",
        job_prefix(tenant, job),
        sanitize_file_name(filename)
    ))
}

fn sanitize_file_name(name: &str) -> String {
    const MAX: usize = 100;
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    if s.trim_matches('_').is_empty() {
        return "output".to_owned();
    }
    if s.len() > MAX {
        // ASCII only from here, so byte slicing is safe.
        let ext = s
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| e.len() <= 10)
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        s = format!("{}{ext}", &s[..MAX - ext.len()]);
    }
    s
}

/// The `Content-Type` to serve a stored object with, by its extension. Unknown extensions are
/// `application/octet-stream`; no extension maps to a type a browser would execute (HTML, SVG,
/// JavaScript), so a stored file can never become a script on the API's origin.
pub fn content_type_for(key: &str) -> &'static str {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "m4s" => "video/iso.segment",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "aac" => "audio/aac",
        "m4a" => "audio/mp4",
        "mp3" => "audio/mpeg",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "csv" => "text/csv; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TenantId {
        TenantId::new(3).expect("valid")
    }
    fn v() -> VideoId {
        VideoId::new(321).expect("valid")
    }
    fn j() -> JobId {
        JobId::parse("a1b2").expect("valid")
    }

    #[test]
    fn uploads_keep_only_allowed_extensions() {
        use UploadKind::{JobInput, Video};
        assert_eq!(upload_extension(Video, "Lecture 1.MP4"), "mp4");
        assert_eq!(upload_extension(Video, "x.mkv"), "mkv");
        // A playlist, a page, a script: never kept, whatever the content is.
        for name in [
            "x.m3u8",
            "x.html",
            "x.svg",
            "x.js",
            "x.xlsx",
            "noext",
            "x.../../etc",
            "x.mp4 ",
        ] {
            let ext = upload_extension(Video, name);
            assert!(ext == "bin" || ext == "mp4", "{name} → {ext}");
        }
        assert_eq!(upload_extension(Video, "x.m3u8"), "bin");
        assert_eq!(upload_extension(JobInput, "students.XLSX"), "xlsx");
        assert_eq!(upload_extension(JobInput, "a.csv"), "csv");
        assert_eq!(upload_extension(JobInput, "a.html"), "bin");
        assert_eq!(upload_extension(JobInput, "a.mp4"), "bin");
        let a = upload_key(t(), Video, "x.m3u8");
        let b = upload_key(t(), Video, "x.m3u8");
        assert_ne!(a, b, "a fresh key per upload");
        assert!(a.as_str().starts_with("tenants/3/video/uploads/"), "{a}");
        assert!(a.as_str().ends_with("/source.bin"), "{a}");
        assert!(StorageKey::parse(a.as_str()).is_ok());
        let k = upload_key(t(), JobInput, "../../students.xlsx");
        assert!(k.as_str().starts_with("tenants/3/jobs/uploads/"), "{k}");
        assert!(k.as_str().ends_with("/input.xlsx"), "{k}");
    }

    #[test]
    fn layout_matches_the_contract() {
        assert_eq!(
            raw_key(t(), v(), "My Holiday.MP4").as_str(),
            "tenants/3/video/raw/321/source.mp4"
        );
        assert_eq!(hls_prefix(t(), v()).as_str(), "tenants/3/video/hls/321/");
        assert_eq!(
            hls_master_key(t(), v()).as_str(),
            "tenants/3/video/hls/321/master.m3u8"
        );
        assert_eq!(
            thumbnail_key(t(), v()).as_str(),
            "tenants/3/video/thumbnails/321.jpg"
        );
        assert_eq!(
            job_output_key(t(), &j(), "result.json").as_str(),
            "tenants/3/jobs/a1b2/output/result.json"
        );
    }

    #[test]
    fn client_names_never_reach_keys() {
        for (name, ext) in [
            ("../../etc/passwd", "bin"),
            ("x.html", "bin"),
            ("video.mp4/../x", "bin"),
            ("noext", "bin"),
            ("clip.MoV", "mov"),
            ("a.b.webm", "webm"),
            ("\u{0}.mp4\n", "mp4"),
            ("x.mp4\u{0}", "bin"),
            ("영상.mkv", "mkv"),
        ] {
            let k = raw_key(t(), v(), name);
            assert_eq!(
                k.as_str(),
                format!("tenants/3/video/raw/321/source.{ext}"),
                "{name:?}"
            );
            assert_eq!(StorageKey::parse(k.as_str()), Ok(k.clone()));
        }
        for (name, want) in [
            ("출석부.xlsx", "___.xlsx"),
            ("../../x.json", "x.json"),
            (".htaccess", "_htaccess"),
            ("", "output"),
            ("///", "output"),
            ("a b?.pptx", "a_b_.pptx"),
        ] {
            assert_eq!(
                job_output_key(t(), &j(), name).file_name(),
                want,
                "{name:?}"
            );
        }
        let long = format!("{}.xlsx", "a".repeat(300));
        let k = job_output_key(t(), &j(), &long);
        assert_eq!(k.file_name().len(), 100);
        assert_eq!(k.extension().as_deref(), Some("xlsx"));
    }

    #[test]
    fn relative_paths_cannot_escape_a_prefix() {
        let p = hls_prefix(t(), v());
        let k = p.join("720p/seg_00001.ts").expect("valid");
        assert_eq!(k.as_str(), "tenants/3/video/hls/321/720p/seg_00001.ts");
        assert!(p.contains(&k));
        for bad in [
            "",
            "../322/master.m3u8",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a b",
            "a%2e",
        ] {
            assert!(p.join(bad).is_err(), "{bad:?}");
        }
        assert!(StorageKey::parse("tenants/3/../4/x").is_err());
        assert!(StorageKey::parse("other/3/x").is_err());
    }

    #[test]
    fn a_playlists_relative_uris_resolve_beside_it() {
        let master = hls_master_key(t(), v());
        let variant = master.resolve("720p/index.m3u8").expect("valid");
        assert_eq!(variant.as_str(), "tenants/3/video/hls/321/720p/index.m3u8");
        let segment = variant.resolve("seg_00001.ts").expect("valid");
        assert_eq!(
            segment.as_str(),
            "tenants/3/video/hls/321/720p/seg_00001.ts"
        );
        for bad in ["", "../../322/master.m3u8", "/etc/passwd", "a//b", "a b"] {
            assert!(variant.resolve(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type_for("tenants/3/video/hls/321/master.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(content_type_for("a/720p/seg_00001.TS"), "video/mp2t");
        assert_eq!(content_type_for("x/321.jpg"), "image/jpeg");
        for active in [
            "x.html",
            "x.htm",
            "x.svg",
            "x.js",
            "x.xml",
            "noext",
            "dir.m3u8/x",
        ] {
            assert_eq!(
                content_type_for(active),
                "application/octet-stream",
                "{active}"
            );
        }
    }
}
