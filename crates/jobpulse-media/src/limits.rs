//! What jobpulse agrees to transcode: [`MediaLimits`], checked against a [`ProbeInfo`] by
//! [`MediaLimits::check`] — by the API when an upload arrives (a 422, nothing stored or queued)
//! and by the video worker before it starts ffmpeg (FAILED with the same sentence as
//! `error_reason`, not retried).
//!
//! | bound | default | why |
//! |---|---|---|
//! | duration | 4 h | the real bound on work, output size and HLS segment count (4 s segments: ≤ 3 600 per rendition) |
//! | width or height | 4096 px (coded or displayed) | 4K is the largest picture a lecture needs; ffmpeg's frame buffers grow with it |
//! | pixels per frame | 4096 × 2304 (9.4 Mpx) | the same memory bound for odd shapes (a 16384 × 576 strip) |
//! | frame rate | 240 fps | a phone's slow-motion clip is 240 fps; the transcode keeps at most 60 of them |
//!
//! There is deliberately no bytes-per-second floor: a lecture of static slides compresses to a
//! few kB/s (the issue's 10 h 1080p25 file of slides is 18 MB, ~4 kB/s), so a floor would refuse
//! honest uploads, and a header that claims more than the data holds is caught later anyway
//! (the worker's short-output check, and the transcode's time budget derived from the probed
//! duration). The duration cap is what bounds such a file.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ProbeInfo;

/// The largest video jobpulse transcodes. See the module docs for the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaLimits {
    /// Longest playable duration.
    pub max_duration: Duration,
    /// Largest width or height, coded (stored) or displayed.
    pub max_dimension: u32,
    /// Largest frame, in pixels (coded or displayed, whichever is larger).
    pub max_pixels: u64,
    /// Highest average frame rate, frames per second.
    pub max_fps: u32,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_duration: Duration::from_secs(4 * 3600),
            max_dimension: 4096,
            max_pixels: 4096 * 2304,
            max_fps: 240,
        }
    }
}

/// Which bound a video is over, with the figures; its `Display` is the sentence a user reads
/// (`error_reason`, the 422's message).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitViolation {
    /// Longer than [`MediaLimits::max_duration`].
    #[error("the video is {} long; the limit is {}", human_duration(*secs), human_duration(*max_secs))]
    Duration {
        /// Probed duration in seconds.
        secs: f64,
        /// The limit in seconds.
        max_secs: f64,
    },
    /// A side over [`MediaLimits::max_dimension`].
    #[error("the video is {width}x{height} pixels; the limit is {max} pixels on either side")]
    Dimension {
        /// Width of the picture (coded or displayed) with a side over the limit.
        width: u32,
        /// Its height.
        height: u32,
        /// The limit.
        max: u32,
    },
    /// A frame over [`MediaLimits::max_pixels`].
    #[error(
        "the video is {width}x{height} pixels ({:.1} megapixels per frame); the limit is {:.1} megapixels",
        megapixels(u64::from(*width) * u64::from(*height)),
        megapixels(*max)
    )]
    Pixels {
        /// Width of the larger picture (coded or displayed).
        width: u32,
        /// Height of the larger picture.
        height: u32,
        /// The limit in pixels.
        max: u64,
    },
    /// A frame rate over [`MediaLimits::max_fps`].
    #[error("the video has {fps:.0} frames per second; the limit is {max}")]
    FrameRate {
        /// The probed average frame rate.
        fps: f64,
        /// The limit.
        max: u32,
    },
}

impl MediaLimits {
    /// Whether `probe` is within every bound; the first bound it is over otherwise (duration
    /// first: it is the one a user most likely meets).
    pub fn check(&self, probe: &ProbeInfo) -> Result<(), LimitViolation> {
        let max_secs = self.max_duration.as_secs_f64();
        if probe.duration_secs > max_secs {
            return Err(LimitViolation::Duration {
                secs: probe.duration_secs,
                max_secs,
            });
        }
        // Memory follows the stored picture; the displayed one is what gets scaled. Both count.
        let pictures = [
            (probe.coded_width, probe.coded_height),
            (probe.width, probe.height),
        ];
        if let Some(&(width, height)) = pictures
            .iter()
            .find(|(w, h)| (*w).max(*h) > self.max_dimension)
        {
            return Err(LimitViolation::Dimension {
                width,
                height,
                max: self.max_dimension,
            });
        }
        let area = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
        let larger = if area(pictures[0]) >= area(pictures[1]) {
            pictures[0]
        } else {
            pictures[1]
        };
        if u64::from(larger.0) * u64::from(larger.1) > self.max_pixels {
            return Err(LimitViolation::Pixels {
                width: larger.0,
                height: larger.1,
                max: self.max_pixels,
            });
        }
        if let Some(fps) = probe.frame_rate
            && fps > f64::from(self.max_fps)
        {
            return Err(LimitViolation::FrameRate {
                fps,
                max: self.max_fps,
            });
        }
        Ok(())
    }

    /// Refuses limits that would refuse everything or nothing sensible.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_duration < Duration::from_secs(1) {
            return Err("video_max_duration: at least 1s".into());
        }
        if self.max_dimension < 16 {
            return Err("video_max_dimension: at least 16".into());
        }
        if self.max_pixels < 256 {
            return Err("video_max_pixels: at least 256".into());
        }
        if self.max_fps == 0 {
            return Err("video_max_fps: at least 1".into());
        }
        Ok(())
    }
}

/// `"10 h 0 min"`, `"4 h"`, `"12 min 5 s"`, `"40 s"`.
pub fn human_duration(secs: f64) -> String {
    let total = if secs.is_finite() && secs > 0.0 {
        secs.round() as u64
    } else {
        0
    };
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, 0) => format!("{h} h"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

fn megapixels(px: u64) -> f64 {
    px as f64 / 1e6
}

impl fmt::Display for MediaLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at most {}, {} px a side, {:.1} megapixels, {} fps",
            human_duration(self.max_duration.as_secs_f64()),
            self.max_dimension,
            megapixels(self.max_pixels),
            self.max_fps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(secs: f64, w: u32, h: u32, fps: f64) -> ProbeInfo {
        ProbeInfo {
            duration_secs: secs,
            width: w,
            height: h,
            coded_width: w,
            coded_height: h,
            rotation: 0,
            has_audio: false,
            video_codec: "h264".into(),
            audio_codec: None,
            frame_rate: Some(fps),
            format_name: "mov,mp4".into(),
            bit_rate: None,
            size_bytes: None,
        }
    }

    #[test]
    fn the_issues_files_are_refused_with_a_sentence() {
        let l = MediaLimits::default();
        // 10 h of static 1080p25 (18 MB).
        let e = l
            .check(&probe(36_000.0, 1920, 1080, 25.0))
            .expect_err("too long");
        assert_eq!(e.to_string(), "the video is 10 h long; the limit is 4 h");
        // 15872x15872, 2 frames.
        let e = l
            .check(&probe(2.0, 15872, 15872, 25.0))
            .expect_err("too big");
        assert_eq!(
            e.to_string(),
            "the video is 15872x15872 pixels; the limit is 4096 pixels on either side"
        );
        // 10 h of 16x16 at 1 fps: the duration cap, not the picture.
        assert!(matches!(
            l.check(&probe(36_000.0, 16, 16, 1.0)),
            Err(LimitViolation::Duration { .. })
        ));
        let e = l
            .check(&probe(5.0, 4096, 4096, 25.0))
            .expect_err("too many pixels");
        assert_eq!(
            e.to_string(),
            "the video is 4096x4096 pixels (16.8 megapixels per frame); the limit is 9.4 megapixels"
        );
        let e = l.check(&probe(5.0, 640, 360, 1000.0)).expect_err("fps");
        assert_eq!(
            e.to_string(),
            "the video has 1000 frames per second; the limit is 240"
        );
    }

    #[test]
    fn honest_lectures_pass() {
        let l = MediaLimits::default();
        for p in [
            probe(4.0 * 3600.0, 1920, 1080, 25.0),
            probe(3.0 * 3600.0, 3840, 2160, 30.0),
            probe(60.0, 2160, 3840, 60.0),
            probe(30.0, 1920, 1080, 240.0),
            probe(600.0, 4096, 2304, 24.0),
        ] {
            assert_eq!(l.check(&p), Ok(()), "{p:?}");
        }
        // A stored picture larger than the displayed one counts (anamorphic squeeze).
        let mut p = probe(10.0, 1920, 1080, 25.0);
        p.coded_width = 8192;
        assert!(matches!(
            l.check(&p),
            Err(LimitViolation::Dimension { width: 8192, .. })
        ));
        // A phone's portrait 4K: stored landscape, shown portrait.
        let mut p = probe(60.0, 2160, 3840, 30.0);
        (p.coded_width, p.coded_height, p.rotation) = (3840, 2160, 90);
        assert_eq!(l.check(&p), Ok(()));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(40.2), "40 s");
        assert_eq!(human_duration(725.0), "12 min 5 s");
        assert_eq!(human_duration(600.0), "10 min");
        assert_eq!(human_duration(4.0 * 3600.0), "4 h");
        assert_eq!(human_duration(36_030.0), "10 h 0 min");
        assert_eq!(human_duration(f64::NAN), "0 s");
        assert!(MediaLimits::default().validate().is_ok());
        assert!(
            MediaLimits {
                max_fps: 0,
                ..MediaLimits::default()
            }
            .validate()
            .is_err()
        );
    }
}
