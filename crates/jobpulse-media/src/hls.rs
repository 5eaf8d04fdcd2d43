//! Checking an HLS output directory before it is published: [`validate_hls`].
//!
//! A transcode that exits 0 has still been known to leave a playlist without `#EXT-X-ENDLIST`
//! (killed muxer), a zero-byte segment (full disk) or a variant that was never written. Players
//! fail on each of those long after the video was marked READY, so the worker validates first:
//!
//! - `master.m3u8` starts with `#EXTM3U` and lists at least one `#EXT-X-STREAM-INF` variant,
//!   each with a `BANDWIDTH`;
//! - every variant playlist exists, starts with `#EXTM3U`, has at least one `#EXTINF` segment
//!   and ends with `#EXT-X-ENDLIST` (a VOD playlist);
//! - every segment (and `#EXT-X-MAP` init section) exists and is non-empty;
//! - every URI is a plain relative path that stays inside the directory (no scheme, no `/`
//!   prefix, no `..`), so the published prefix is self-contained.
//!
//! The [`HlsSummary`] lists every referenced file, which is exactly what to upload.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::MediaError;
use crate::transcode::MASTER_PLAYLIST;

/// One variant stream of a validated output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    /// The playlist URI as written in the master playlist, e.g. `720p/index.m3u8`.
    pub uri: String,
    /// `BANDWIDTH`, bits per second.
    pub bandwidth: u64,
    /// `RESOLUTION` as (width, height), when present.
    pub resolution: Option<(u32, u32)>,
    /// `CODECS`, when present, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: Option<String>,
    /// Number of media segments.
    pub segments: usize,
    /// Sum of the `#EXTINF` durations, seconds.
    pub duration_secs: f64,
    /// `#EXT-X-TARGETDURATION`, when present.
    pub target_duration: Option<u32>,
}

/// What [`validate_hls`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HlsSummary {
    /// Variants in master-playlist order.
    pub variants: Vec<VariantSummary>,
    /// The longest variant's duration, seconds.
    pub total_duration_secs: f64,
    /// Every file the output consists of, relative to the directory with `/` separators:
    /// the master playlist first, then variant playlists and their segments.
    pub files: Vec<String>,
    /// Total size of those files in bytes.
    pub total_bytes: u64,
}

/// Validates the HLS output in `dir` (see the module docs).
pub async fn validate_hls(dir: &Path) -> Result<HlsSummary, MediaError> {
    let invalid = |m: String| MediaError::InvalidHls(m);
    let master_text = read_playlist(dir, MASTER_PLAYLIST).await?;
    let entries = parse_master(&master_text).map_err(invalid)?;

    let mut files = vec![MASTER_PLAYLIST.to_owned()];
    let mut seen = BTreeSet::new();
    let mut total_bytes = file_size(dir, MASTER_PLAYLIST).await?;
    let mut variants = Vec::with_capacity(entries.len());
    for entry in entries {
        let uri = entry.uri;
        check_uri(&uri).map_err(invalid)?;
        let text = read_playlist(dir, &uri).await?;
        let media = parse_media(&text).map_err(|m| invalid(format!("{uri}: {m}")))?;
        if seen.insert(uri.clone()) {
            total_bytes += file_size(dir, &uri).await?;
            files.push(uri.clone());
        }
        let base = match uri.rsplit_once('/') {
            Some((d, _)) => format!("{d}/"),
            None => String::new(),
        };
        for seg in media.segments.iter().chain(media.map.iter()) {
            check_uri(seg).map_err(|m| invalid(format!("{uri}: {m}")))?;
            let rel = format!("{base}{seg}");
            if !seen.insert(rel.clone()) {
                continue;
            }
            let size = file_size(dir, &rel).await?;
            if size == 0 {
                return Err(invalid(format!("segment {rel} is empty")));
            }
            total_bytes += size;
            files.push(rel);
        }
        variants.push(VariantSummary {
            uri,
            bandwidth: entry.bandwidth,
            resolution: entry.resolution,
            codecs: entry.codecs,
            segments: media.segments.len(),
            duration_secs: media.duration_secs,
            target_duration: media.target_duration,
        });
    }
    let total_duration_secs = variants.iter().map(|v| v.duration_secs).fold(0.0, f64::max);
    Ok(HlsSummary {
        variants,
        total_duration_secs,
        files,
        total_bytes,
    })
}

async fn read_playlist(dir: &Path, rel: &str) -> Result<String, MediaError> {
    let path = dir.join(rel);
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|_| MediaError::InvalidHls(format!("{rel} is missing")))?;
    // Playlists of a few hours of 4 s segments are tens of KB; refuse absurd ones unread.
    if meta.len() > 16 * 1024 * 1024 {
        return Err(MediaError::InvalidHls(format!(
            "{rel} is implausibly large"
        )));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| MediaError::io(format!("reading {}", path.display()), e))?;
    String::from_utf8(bytes).map_err(|_| MediaError::InvalidHls(format!("{rel} is not UTF-8")))
}

async fn file_size(dir: &Path, rel: &str) -> Result<u64, MediaError> {
    match tokio::fs::metadata(dir.join(rel)).await {
        Ok(m) if m.is_file() => Ok(m.len()),
        _ => Err(MediaError::InvalidHls(format!("{rel} is missing"))),
    }
}

/// A URI we are willing to publish: relative, inside the directory, plain characters.
fn check_uri(uri: &str) -> Result<(), String> {
    let ok = !uri.is_empty()
        && !uri.starts_with('/')
        && uri
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        && uri
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(format!("URI {uri:?} is not a plain relative path"))
    }
}

#[derive(Debug)]
struct MasterEntry {
    uri: String,
    bandwidth: u64,
    resolution: Option<(u32, u32)>,
    codecs: Option<String>,
}

fn parse_master(text: &str) -> Result<Vec<MasterEntry>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err(format!("{MASTER_PLAYLIST} does not start with #EXTM3U"));
    }
    let mut out = Vec::new();
    let mut pending: Option<Vec<(String, String)>> = None;
    for line in lines {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(attributes(attrs));
        } else if line.starts_with('#') {
            continue;
        } else if let Some(attrs) = pending.take() {
            let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let bandwidth = get("BANDWIDTH")
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| format!("variant {line} has no valid BANDWIDTH"))?;
            let resolution = get("RESOLUTION").and_then(|r| {
                let (w, h) = r.split_once('x')?;
                Some((w.parse().ok()?, h.parse().ok()?))
            });
            out.push(MasterEntry {
                uri: line.to_owned(),
                bandwidth,
                resolution,
                codecs: get("CODECS"),
            });
        } else {
            return Err(format!("URI {line:?} without #EXT-X-STREAM-INF"));
        }
    }
    if out.is_empty() {
        return Err(format!("{MASTER_PLAYLIST} lists no variant"));
    }
    Ok(out)
}

/// Parses an HLS attribute list (`A=1,B="x,y",C=z`); quoted values lose their quotes.
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, tail)) => (v, tail.strip_prefix(',').unwrap_or(tail)),
                None => (q, ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, tail)) => (v, tail),
                None => (after, ""),
            }
        };
        out.push((name.trim().to_owned(), value.to_owned()));
        rest = next;
    }
    out
}

#[derive(Debug)]
struct MediaPlaylist {
    segments: Vec<String>,
    map: Option<String>,
    duration_secs: f64,
    target_duration: Option<u32>,
}

fn parse_media(text: &str) -> Result<MediaPlaylist, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("does not start with #EXTM3U".to_owned());
    }
    let mut segments = Vec::new();
    let mut map = None;
    let mut duration = 0.0;
    let mut target = None;
    let mut ended = false;
    let mut pending: Option<f64> = None;
    for line in lines {
        if ended {
            return Err("content after #EXT-X-ENDLIST".to_owned());
        }
        if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d: f64 = v
                .split(',')
                .next()
                .and_then(|d| d.trim().parse().ok())
                .filter(|d: &f64| d.is_finite() && *d >= 0.0)
                .ok_or_else(|| format!("bad #EXTINF {line:?}"))?;
            pending = Some(d);
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            map = attributes(v)
                .into_iter()
                .find(|(k, _)| k == "URI")
                .map(|(_, u)| u);
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if line.starts_with('#') {
            continue;
        } else {
            let d = pending
                .take()
                .ok_or_else(|| format!("segment {line:?} without #EXTINF"))?;
            duration += d;
            segments.push(line.to_owned());
        }
    }
    if segments.is_empty() {
        return Err("has no segments".to_owned());
    }
    if !ended {
        return Err("has no #EXT-X-ENDLIST (incomplete)".to_owned());
    }
    Ok(MediaPlaylist {
        segments,
        map,
        duration_secs: duration,
        target_duration: target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_lists_respect_quotes() {
        let a =
            attributes(r#"BANDWIDTH=1020800,RESOLUTION=360x640,CODECS="avc1.64001e,mp4a.40.2""#);
        assert_eq!(
            a,
            [
                ("BANDWIDTH".to_owned(), "1020800".to_owned()),
                ("RESOLUTION".to_owned(), "360x640".to_owned()),
                ("CODECS".to_owned(), "avc1.64001e,mp4a.40.2".to_owned()),
            ]
        );
        assert_eq!(attributes(r#"URI="init.mp4""#)[0].1, "init.mp4");
    }

    #[test]
    fn uris_stay_inside() {
        for ok in ["720p/index.m3u8", "seg_00001.ts", "a/b/c.ts"] {
            assert!(check_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x.ts",
            "a/../../x.ts",
            "http://evil/x.ts",
            "a//b.ts",
            "./a.ts",
            "a b.ts",
            "a?x=1",
        ] {
            assert!(check_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn media_playlist_rules() {
        let ok = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.000000,\na.ts\n#EXTINF:2.5,\nb.ts\n#EXT-X-ENDLIST\n";
        let m = parse_media(ok).expect("valid");
        assert_eq!(m.segments, ["a.ts", "b.ts"]);
        assert_eq!(m.duration_secs, 6.5);
        assert_eq!(m.target_duration, Some(4));
        assert!(
            parse_media("#EXTM3U\n#EXTINF:4,\na.ts\n").is_err(),
            "no ENDLIST"
        );
        assert!(
            parse_media("#EXTM3U\n#EXT-X-ENDLIST\n").is_err(),
            "no segments"
        );
        assert!(
            parse_media("#EXTM3U\na.ts\n#EXT-X-ENDLIST\n").is_err(),
            "no EXTINF"
        );
        assert!(
            parse_media("#EXTINF:4,\na.ts\n#EXT-X-ENDLIST\n").is_err(),
            "no header"
        );
        assert!(parse_media("#EXTM3U\n#EXTINF:x,\na.ts\n#EXT-X-ENDLIST\n").is_err());
    }

    #[test]
    fn master_playlist_rules() {
        assert!(
            parse_master("#EXTM3U\n#EXT-X-VERSION:6\n").is_err(),
            "no variant"
        );
        assert!(parse_master("#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=2x2\na.m3u8\n").is_err());
        assert!(parse_master("#EXTM3U\nloose.m3u8\n").is_err());
        let m = parse_master("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=5,RESOLUTION=4x2\nv/a.m3u8\n")
            .expect("valid");
        assert_eq!(m[0].resolution, Some((4, 2)));
        assert_eq!(m[0].codecs, None);
    }
}
