//! Parsing ffmpeg's `-progress` stream into a monotonic fraction.
//!
//! With `-progress pipe:1 -nostats` ffmpeg writes, about twice a second, a block of `key=value`
//! lines ending with `progress=continue` (or `progress=end` for the last one):
//!
//! ```text
//! frame=52
//! fps=50.28
//! bitrate=N/A
//! total_size=N/A
//! out_time_us=2113022
//! out_time_ms=2113022
//! out_time=00:00:02.113022
//! speed=2.04x
//! progress=continue
//! ```
//!
//! Only the position (`out_time_us`; `out_time_ms`, which despite its name is also in
//! microseconds; `out_time` as `HH:MM:SS.micro`, in that order of preference) and `speed` are used.
//! Any value may be `N/A`, negative or padded (`speed=   0x`); such values are ignored rather
//! than treated as zero. The pipe delivers arbitrary chunks, so [`ProgressParser`] buffers partial
//! lines, and it keeps memory bounded however long a line is.
//!
//! [`ProgressTracker`] turns blocks into [`TranscodeProgress`]: `fraction = out_time / duration`,
//! clamped to `0..=1` and never decreasing, which is what a progress bar needs.

use serde::{Deserialize, Serialize};

use crate::process::LineSplitter;

/// One completed `-progress` block, as ffmpeg reported it (unusable values are `None`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProgressBlock {
    /// Output position in seconds.
    pub out_time_secs: Option<f64>,
    /// Encoding speed as a multiple of real time (`2.0` = twice real time).
    pub speed: Option<f64>,
    /// Frames output so far.
    pub frame: Option<u64>,
    /// True for the final block (`progress=end`).
    pub end: bool,
}

/// Incremental parser for ffmpeg's `-progress` output.
#[derive(Debug, Default)]
pub struct ProgressParser {
    lines: LineSplitter,
    current: Partial,
}

#[derive(Debug, Default)]
struct Partial {
    out_time_us: Option<f64>,
    out_time_ms: Option<f64>,
    out_time: Option<f64>,
    speed: Option<f64>,
    frame: Option<u64>,
}

impl ProgressParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of the stream (any split, even mid-line) and returns the blocks it
    /// completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<ProgressBlock> {
        let mut done = Vec::new();
        let current = &mut self.current;
        self.lines.push(chunk, |line| {
            if let Some(block) = current.line(line) {
                done.push(block);
            }
        });
        done
    }

    /// Call at end of stream: completes a final block whose last line had no newline.
    pub fn finish(&mut self) -> Option<ProgressBlock> {
        let mut done = None;
        let current = &mut self.current;
        self.lines.finish(|line| done = current.line(line));
        done
    }
}

impl Partial {
    fn line(&mut self, line: &str) -> Option<ProgressBlock> {
        let (key, value) = line.split_once('=')?;
        let value = value.trim();
        match key.trim() {
            "out_time_us" => self.out_time_us = micros(value),
            "out_time_ms" => self.out_time_ms = micros(value),
            "out_time" => self.out_time = clock(value),
            "speed" => self.speed = speed(value),
            "frame" => self.frame = value.parse().ok(),
            "progress" => {
                let p = std::mem::take(self);
                return Some(ProgressBlock {
                    out_time_secs: p.out_time_us.or(p.out_time_ms).or(p.out_time),
                    speed: p.speed,
                    frame: p.frame,
                    end: value == "end",
                });
            }
            _ => {}
        }
        None
    }
}

fn micros(v: &str) -> Option<f64> {
    let us: i64 = v.parse().ok()?;
    // Negative positions (and the i64::MIN "no timestamp" sentinel) appear before output starts.
    (us >= 0).then(|| us as f64 / 1_000_000.0)
}

/// `HH:MM:SS.micro`; `N/A` and negative clocks yield `None`.
fn clock(v: &str) -> Option<f64> {
    let mut parts = v.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || h < 0.0 || m < 0.0 || s < 0.0 {
        return None;
    }
    let t = h * 3600.0 + m * 60.0 + s;
    t.is_finite().then_some(t)
}

fn speed(v: &str) -> Option<f64> {
    let x: f64 = v.strip_suffix('x')?.trim().parse().ok()?;
    (x.is_finite() && x > 0.0).then_some(x)
}

/// Progress of one transcode, as delivered to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TranscodeProgress {
    /// `out_time / duration`, within `0..=1`, never decreasing during one run.
    pub fraction: f64,
    /// Latest encoding speed (multiple of real time), when ffmpeg reported a usable one.
    pub speed: Option<f64>,
    /// Furthest output position reported, in seconds.
    pub out_time_secs: f64,
    /// ffmpeg reported its final block (`progress=end`). Success is still decided by its exit
    /// status, not by this flag.
    pub finished: bool,
}

/// Folds [`ProgressBlock`]s into a monotonic [`TranscodeProgress`] for a known duration.
#[derive(Debug, Clone)]
pub struct ProgressTracker {
    duration_secs: f64,
    current: TranscodeProgress,
}

impl ProgressTracker {
    /// A tracker for a source of this duration (non-positive or non-finite durations keep the
    /// fraction at 0 rather than dividing by zero).
    pub fn new(duration_secs: f64) -> Self {
        Self {
            duration_secs,
            current: TranscodeProgress::default(),
        }
    }

    /// Applies one block and returns the new state.
    pub fn update(&mut self, block: &ProgressBlock) -> TranscodeProgress {
        let c = &mut self.current;
        if let Some(t) = block.out_time_secs.filter(|t| t.is_finite()) {
            c.out_time_secs = c.out_time_secs.max(t);
        }
        if self.duration_secs.is_finite() && self.duration_secs > 0.0 {
            let f = (c.out_time_secs / self.duration_secs).clamp(0.0, 1.0);
            c.fraction = c.fraction.max(f);
        }
        if block.speed.is_some() {
            c.speed = block.speed;
        }
        c.finished |= block.end;
        *c
    }

    /// The state after the last update.
    pub fn current(&self) -> TranscodeProgress {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of ffmpeg 5.1 (two HLS renditions + audio, preset veryslow).
    const TWO_RENDITIONS: &str = include_str!("../tests/fixtures/progress_hls_two_renditions.txt");
    /// Real output of ffmpeg 5.1 with a slow encoder start: `speed=N/A`, `speed=   0x`,
    /// `out_time_us=0` while nothing is muxed yet, then a measured bitrate.
    const SLOW_START: &str = include_str!("../tests/fixtures/progress_slow_start.txt");

    fn parse_all(text: &[u8], chunk: usize) -> Vec<ProgressBlock> {
        let mut p = ProgressParser::new();
        let mut out = Vec::new();
        for c in text.chunks(chunk.max(1)) {
            out.extend(p.push(c));
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn parses_real_output() {
        let blocks = parse_all(TWO_RENDITIONS.as_bytes(), 4096);
        assert_eq!(blocks.len(), TWO_RENDITIONS.matches("progress=").count());
        assert_eq!(blocks[0].out_time_secs, Some(0.046433));
        assert_eq!(blocks[0].speed, Some(3.13));
        assert_eq!(blocks[0].frame, Some(1));
        let last = blocks.last().expect("blocks");
        assert!(last.end);
        assert_eq!(last.out_time_secs, Some(6.013967));
        assert!(blocks[..blocks.len() - 1].iter().all(|b| !b.end));

        let slow = parse_all(SLOW_START.as_bytes(), 4096);
        assert_eq!(slow[0].speed, None, "speed=N/A");
        assert_eq!(slow[1].speed, None, "speed=   0x is no measurement");
        assert_eq!(slow[0].out_time_secs, Some(0.0));
        assert!(slow.last().expect("blocks").end);
    }

    #[test]
    fn any_chunking_gives_the_same_blocks() {
        let whole = parse_all(SLOW_START.as_bytes(), usize::MAX);
        for chunk in [1, 2, 3, 7, 13, 64, 333] {
            assert_eq!(
                parse_all(SLOW_START.as_bytes(), chunk),
                whole,
                "chunk {chunk}"
            );
        }
        // A stream cut right after the final key, without its newline.
        let cut = TWO_RENDITIONS.trim_end();
        let blocks = parse_all(cut.as_bytes(), 100);
        assert!(blocks.last().expect("blocks").end);
    }

    #[test]
    fn unusable_values_are_ignored_not_zeroed() {
        let text = "out_time_us=N/A\nout_time_ms=N/A\nout_time=N/A\nspeed=N/A\nprogress=continue\n\
                    out_time_us=-9223372036854775807\nout_time=-577014:32:22.775808\nprogress=continue\n\
                    out_time_ms=1500000\nspeed=1.5x\nprogress=continue\n\
                    out_time=00:01:02.500000\nprogress=continue\n\
                    garbage line\n=\nframe=x\nprogress=end";
        let blocks = parse_all(text.as_bytes(), 5);
        let times: Vec<_> = blocks.iter().map(|b| b.out_time_secs).collect();
        assert_eq!(times, [None, None, Some(1.5), Some(62.5), None]);
        assert_eq!(blocks[2].speed, Some(1.5));
        assert!(blocks[4].end);
    }

    #[test]
    fn tracker_is_monotonic_and_clamped() {
        let mut t = ProgressTracker::new(6.0);
        let mut last = 0.0;
        for b in parse_all(TWO_RENDITIONS.as_bytes(), 50) {
            let p = t.update(&b);
            assert!(p.fraction >= last && (0.0..=1.0).contains(&p.fraction));
            last = p.fraction;
        }
        let end = t.current();
        assert!(end.finished);
        assert_eq!(end.fraction, 1.0, "6.01 s of a 6 s source clamps to 1");

        let mut t = ProgressTracker::new(10.0);
        let at = |s| ProgressBlock {
            out_time_secs: Some(s),
            ..ProgressBlock::default()
        };
        assert_eq!(t.update(&at(5.0)).fraction, 0.5);
        assert_eq!(t.update(&at(4.0)).fraction, 0.5, "never goes back");
        assert_eq!(t.update(&ProgressBlock::default()).out_time_secs, 5.0);
        let mut zero = ProgressTracker::new(0.0);
        assert_eq!(
            zero.update(&at(5.0)).fraction,
            0.0,
            "no duration, no division"
        );
    }
}
