//! Which HLS renditions to produce for a source, and at what bit rate. Pure.
//!
//! "1080p" names the *short* side, so a portrait 1080x1920 phone video is 1080p too and scales
//! the same way as a landscape one. The rules:
//!
//! - top rendition: the source's short side, capped at 1080 (never upscaled);
//! - second rendition: 720, or 480 when the top is ≤ 720;
//! - only the top one when the two are within 100 px of each other (or the second would be an
//!   upscale): a 562p source gets one 562p rendition, not 562p + 480p;
//! - sizes keep the source's aspect ratio and are even (H.264 4:2:0 needs even dimensions):
//!   the short side is rounded down to even, the long side to the nearest even number.
//!
//! Bit rates scale with pixel count to the power 0.75 from 5000 kb/s at 1920x1080 (≈2700 at 720p,
//! ≈1500 at 480p, ≈1000 at 360p), rounded to 100 kb/s; peak (`maxrate`) is 110 % and the VBV
//! buffer two seconds' worth of the average.

use serde::{Deserialize, Serialize};

/// Largest short side produced.
pub const MAX_SHORT_SIDE: u32 = 1080;
/// Two candidate renditions closer than this (in short-side pixels) collapse into one.
pub const MIN_STEP: u32 = 100;

/// One HLS variant stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Short-side name, e.g. `"720p"`; also the variant's directory name in the HLS output.
    pub name: String,
    /// Output width in pixels (even).
    pub width: u32,
    /// Output height in pixels (even).
    pub height: u32,
    /// Average video bit rate, kb/s.
    pub video_kbps: u32,
    /// Peak video bit rate (x264 `-maxrate`), kb/s.
    pub maxrate_kbps: u32,
    /// Rate-control buffer (x264 `-bufsize`), kb.
    pub bufsize_kbps: u32,
}

impl Rendition {
    /// The short side in pixels (the number in the name).
    pub fn short_side(&self) -> u32 {
        self.width.min(self.height)
    }
}

/// The renditions for a source whose *display* size is `width` x `height`, best first.
/// Never empty; degenerate sizes (0) are treated as 2 px.
pub fn ladder(width: u32, height: u32) -> Vec<Rendition> {
    let (w, h) = (width.max(2), height.max(2));
    let short = w.min(h);
    let top = even_down(short.min(MAX_SHORT_SIDE));
    let second = if top > 720 { 720 } else { 480 };
    let mut out = vec![rendition(w, h, top)];
    if second < top && top - second > MIN_STEP {
        out.push(rendition(w, h, second));
    }
    out
}

fn rendition(src_w: u32, src_h: u32, short_side: u32) -> Rendition {
    let (src_short, src_long) = (src_w.min(src_h), src_w.max(src_h));
    let long = even_nearest(f64::from(src_long) * f64::from(short_side) / f64::from(src_short));
    let (width, height) = if src_w >= src_h {
        (long, short_side)
    } else {
        (short_side, long)
    };
    let video_kbps = bitrate_kbps(width, height);
    Rendition {
        name: format!("{short_side}p"),
        width,
        height,
        video_kbps,
        maxrate_kbps: video_kbps + video_kbps / 10,
        bufsize_kbps: video_kbps * 2,
    }
}

/// Default average bit rate for a picture of this size, kb/s (see the module docs).
pub fn bitrate_kbps(width: u32, height: u32) -> u32 {
    const REF_PIXELS: f64 = 1920.0 * 1080.0;
    const REF_KBPS: f64 = 5000.0;
    let pixels = f64::from(width) * f64::from(height);
    let kbps = REF_KBPS * (pixels / REF_PIXELS).powf(0.75);
    let rounded = (kbps / 100.0).round() * 100.0;
    rounded.clamp(200.0, 8000.0) as u32
}

fn even_down(v: u32) -> u32 {
    (v & !1).max(2)
}

fn even_nearest(v: f64) -> u32 {
    let e = (v / 2.0).round() * 2.0;
    if e.is_finite() && e >= 2.0 {
        e.min(f64::from(u32::MAX - 1)) as u32
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(w: u32, h: u32) -> Vec<(String, u32, u32)> {
        ladder(w, h)
            .into_iter()
            .map(|r| (r.name, r.width, r.height))
            .collect()
    }

    #[test]
    fn ladder_table() {
        let s = |n: &str, w, h| (n.to_owned(), w, h);
        type Row = ((u32, u32), Vec<(String, u32, u32)>);
        let table: &[Row] = &[
            (
                (1920, 1080),
                vec![s("1080p", 1920, 1080), s("720p", 1280, 720)],
            ),
            ((1280, 720), vec![s("720p", 1280, 720), s("480p", 854, 480)]),
            ((854, 480), vec![s("480p", 854, 480)]),
            ((640, 360), vec![s("360p", 640, 360)]),
            ((720, 1280), vec![s("720p", 720, 1280), s("480p", 480, 854)]),
            (
                (1080, 1920),
                vec![s("1080p", 1080, 1920), s("720p", 720, 1280)],
            ),
            (
                (3840, 2160),
                vec![s("1080p", 1920, 1080), s("720p", 1280, 720)],
            ),
            ((1000, 562), vec![s("562p", 1000, 562)]),
            // 820 vs 720 is exactly 100 apart: within, one rendition.
            ((1458, 820), vec![s("820p", 1458, 820)]),
            (
                (1600, 900),
                vec![s("900p", 1600, 900), s("720p", 1280, 720)],
            ),
            ((800, 600), vec![s("600p", 800, 600), s("480p", 640, 480)]),
            // Odd sizes: short side rounds down to even, long side to the nearest even.
            ((1279, 719), vec![s("718p", 1278, 718), s("480p", 854, 480)]),
            ((641, 361), vec![s("360p", 640, 360)]),
            (
                (1921, 1081),
                vec![s("1080p", 1920, 1080), s("720p", 1280, 720)],
            ),
            (
                (1080, 1080),
                vec![s("1080p", 1080, 1080), s("720p", 720, 720)],
            ),
            ((5, 3), vec![s("2p", 4, 2)]),
            ((0, 0), vec![s("2p", 2, 2)]),
        ];
        for ((w, h), want) in table {
            assert_eq!(&sizes(*w, *h), want, "{w}x{h}");
        }
    }

    #[test]
    fn every_rendition_is_even_bounded_and_ordered() {
        for w in (2..4000).step_by(37) {
            for h in (2..4000).step_by(41) {
                let l = ladder(w, h);
                assert!(!l.is_empty() && l.len() <= 2);
                for r in &l {
                    assert!(r.width % 2 == 0 && r.height % 2 == 0, "{w}x{h} {r:?}");
                    assert!(r.short_side() <= MAX_SHORT_SIDE);
                    assert!(
                        r.short_side() <= w.min(h).max(2),
                        "no upscale: {w}x{h} {r:?}"
                    );
                    assert!(
                        r.width == r.height || (r.width > r.height) == (w > h),
                        "orientation kept: {w}x{h} {r:?}"
                    );
                    assert!(r.maxrate_kbps > r.video_kbps && r.bufsize_kbps > r.maxrate_kbps);
                }
                if let [a, b] = l.as_slice() {
                    assert!(a.short_side() > b.short_side() + MIN_STEP);
                    assert!(a.video_kbps > b.video_kbps);
                }
            }
        }
    }

    #[test]
    fn default_bitrates() {
        assert_eq!(bitrate_kbps(1920, 1080), 5000);
        assert_eq!(bitrate_kbps(1280, 720), 2700);
        assert_eq!(bitrate_kbps(854, 480), 1500);
        assert_eq!(bitrate_kbps(640, 360), 1000);
        assert_eq!(bitrate_kbps(2, 2), 200);
    }
}
