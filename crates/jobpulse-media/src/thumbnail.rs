//! A JPEG poster frame for the video list.
//!
//! ```text
//! ffmpeg -hide_banner -nostdin -y -loglevel error
//!   -format_whitelist <probe::INPUT_FORMATS> -protocol_whitelist file
//!   -ss <at> -i /abs/source.mp4 -map 0:v:0 -frames:v 1
//!   -vf scale='min(640,iw)':-2 -q:v 3 -f image2 -update 1 /abs/thumb.jpg
//! ```
//!
//! `-ss` before `-i` seeks by index first (fast on long files) and ffmpeg then decodes
//! accurately to the requested time. Autorotation applies, so a portrait video gets a portrait
//! thumbnail. The width is capped at 640 (never upscaled) with an even height keeping the aspect.
//! `-update 1` makes the image muxer write exactly this file name (no `%d` pattern). When the
//! seek lands past the last frame ffmpeg writes nothing and still exits 0; the frame at 0 s is
//! taken instead.

use std::path::Path;
use std::time::Duration;

use crate::probe::{INPUT_FORMATS, absolute_input};
use crate::process::{command, run_limited};
use crate::toolchain::FFMPEG_ENV;
use crate::{MediaError, Toolchain};

/// Widest thumbnail produced, in pixels.
pub const THUMBNAIL_MAX_WIDTH: u32 = 640;
/// Budget for one thumbnail run.
const THUMBNAIL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where to take the thumbnail from: 10 % into the video (past fade-ins and black intros).
pub fn thumbnail_time(duration_secs: f64) -> f64 {
    if duration_secs.is_finite() && duration_secs > 0.0 {
        duration_secs * 0.1
    } else {
        0.0
    }
}

impl Toolchain {
    /// Writes one JPEG frame of `input` at `at_secs` to `output_jpg` (see the module docs) and
    /// returns its size in bytes.
    pub async fn thumbnail(
        &self,
        input: &Path,
        output_jpg: &Path,
        at_secs: f64,
    ) -> Result<u64, MediaError> {
        let input = absolute_input(input).await?;
        let output = std::path::absolute(output_jpg)
            .map_err(|e| MediaError::io(format!("resolving {}", output_jpg.display()), e))?;
        let at = if at_secs.is_finite() && at_secs > 0.0 {
            at_secs
        } else {
            0.0
        };
        for seek in [at, 0.0] {
            // A stale file from an earlier attempt must not pass for this run's output.
            let _ = tokio::fs::remove_file(&output).await;
            let scale = format!("scale='min({THUMBNAIL_MAX_WIDTH},iw)':-2");
            run_limited(
                "ffmpeg",
                FFMPEG_ENV,
                command(self.ffmpeg().as_os_str())
                    .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
                    .args(["-format_whitelist", INPUT_FORMATS])
                    .args(["-protocol_whitelist", "file"])
                    .args(["-ss", &format!("{seek:.3}"), "-i"])
                    .arg(&input)
                    .args(["-map", "0:v:0", "-frames:v", "1", "-vf", &scale])
                    .args(["-q:v", "3", "-f", "image2", "-update", "1"])
                    .args(["-threads", "1"])
                    .arg(&output),
                THUMBNAIL_TIMEOUT,
                self.memory_limit(),
            )
            .await?
            .check("ffmpeg")?;
            if let Ok(meta) = tokio::fs::metadata(&output).await
                && meta.len() > 0
            {
                return Ok(meta.len());
            }
            if seek == 0.0 {
                break;
            }
        }
        Err(MediaError::BadToolOutput {
            tool: "ffmpeg",
            detail: "no frame could be extracted for the thumbnail".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_percent_in() {
        assert_eq!(thumbnail_time(50.0), 5.0);
        assert_eq!(thumbnail_time(0.0), 0.0);
        assert_eq!(thumbnail_time(f64::NAN), 0.0);
    }
}
