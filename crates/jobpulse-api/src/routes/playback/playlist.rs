//! Rewriting the URIs of an HLS playlist (RFC 8216): the media files a playlist names
//! (segments, `#EXT-X-MAP` init sections, keys) become absolute presigned storage URLs, while
//! playlists stay relative and keep coming through jobpulse under the same signed prefix.
//!
//! URIs appear on their own lines (segments, variant playlists) and in `URI="…"` attributes of
//! tags. Only plain relative paths inside the playlist's directory are rewritten — what the
//! worker's validated output contains; anything else is left as it is.

/// The URIs of `text` to rewrite, in order of appearance (duplicates included), and the sum of
/// its `#EXTINF` durations in seconds.
pub fn media_uris(text: &str) -> (Vec<&str>, f64) {
    let mut uris = Vec::new();
    let mut duration = 0.0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let secs = rest.split(',').next().unwrap_or("").trim();
            duration += secs
                .parse::<f64>()
                .ok()
                .filter(|d| d.is_finite() && *d > 0.0)
                .unwrap_or(0.0);
        }
        if line.starts_with('#') {
            uris.extend(attribute_uris(line).filter(|u| is_media(u)));
        } else if is_media(line) {
            uris.push(line);
        }
    }
    (uris, duration)
}

/// `text` with every URI `replace` maps to `Some` replaced.
pub fn rewrite(text: &str, mut replace: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            out.push_str(&rewrite_attributes(line, &mut replace));
        } else if trimmed.is_empty() {
            out.push_str(line);
        } else {
            match Some(trimmed).filter(|u| is_media(u)).and_then(&mut replace) {
                Some(url) => out.push_str(&url),
                None => out.push_str(line),
            }
        }
        out.push('\n');
    }
    out
}

/// A plain relative path inside the directory that is not a playlist.
fn is_media(uri: &str) -> bool {
    is_plain_relative(uri) && !uri.to_ascii_lowercase().ends_with(".m3u8")
}

/// No scheme, no leading `/`, no `.`/`..` segments, no query or fragment, nothing to escape.
pub fn is_plain_relative(uri: &str) -> bool {
    !uri.is_empty()
        && uri.len() <= 500
        && uri
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        && uri
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The values of the `URI="…"` attributes of a tag line.
fn attribute_uris(line: &str) -> impl Iterator<Item = &str> {
    line.match_indices("URI=\"").filter_map(move |(i, m)| {
        let start = i + m.len();
        line[start..].find('"').map(|end| &line[start..start + end])
    })
}

fn rewrite_attributes(line: &str, replace: &mut impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("URI=\"") {
        let start = i + "URI=\"".len();
        let Some(len) = rest[start..].find('"') else {
            break;
        };
        out.push_str(&rest[..start]);
        let uri = &rest[start..start + len];
        match Some(uri).filter(|u| is_media(u)).and_then(&mut *replace) {
            Some(url) => out.push_str(&url),
            None => out.push_str(uri),
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARIANT: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n\
        #EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4.000,\nseg_00000.ts\n#EXTINF:2.5,\nseg_00001.ts\n\
        #EXT-X-ENDLIST\n";

    #[test]
    fn media_uris_and_duration_are_found() {
        let (uris, d) = media_uris(VARIANT);
        assert_eq!(uris, ["init.mp4", "seg_00000.ts", "seg_00001.ts"]);
        assert!((d - 6.5).abs() < 1e-9);
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p/index.m3u8\n\
            #EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\"\n";
        assert!(media_uris(master).0.is_empty(), "playlists stay relative");
    }

    #[test]
    fn only_plain_relative_media_uris_are_replaced() {
        let text = format!("{VARIANT}https://elsewhere/x.ts\n../escape.ts\n/abs.ts\n");
        let out = rewrite(&text, |u| Some(format!("https://s3/{u}?sig")));
        assert!(
            out.contains("#EXT-X-MAP:URI=\"https://s3/init.mp4?sig\""),
            "{out}"
        );
        assert!(out.contains("\nhttps://s3/seg_00000.ts?sig\n"), "{out}");
        assert!(out.contains("\nhttps://s3/seg_00001.ts?sig\n"), "{out}");
        for kept in [
            "https://elsewhere/x.ts",
            "../escape.ts",
            "/abs.ts",
            "#EXTINF:4.000,",
        ] {
            assert!(out.lines().any(|l| l == kept), "{kept} kept: {out}");
        }
        // Lines `replace` declines stay as they were.
        assert_eq!(rewrite(VARIANT, |_| None), VARIANT);
    }
}
