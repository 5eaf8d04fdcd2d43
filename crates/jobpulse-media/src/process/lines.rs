//! Tool output in bounded memory: lines cut at [`MAX_LINE`] bytes, and the last [`TAIL_LINES`]
//! lines of stderr with a note of any failed allocation ([`StderrTail`]).

use std::collections::VecDeque;

use tokio::io::AsyncReadExt;
use tokio::process::ChildStderr;
use tokio::task::JoinHandle;

/// Longest line kept from a tool's output; the rest of an overlong line is dropped.
pub(crate) const MAX_LINE: usize = 512;
/// How many stderr lines are kept for error messages.
pub(crate) const TAIL_LINES: usize = 20;

/// Splits a byte stream into lines, whatever the chunk boundaries, in bounded memory.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// The current line passed [`MAX_LINE`]; its remainder is discarded up to the newline.
    overlong: bool,
}

impl LineSplitter {
    /// Feeds a chunk; calls `on_line` for each completed line (without `\n` / `\r\n`).
    pub(crate) fn push(&mut self, chunk: &[u8], mut on_line: impl FnMut(&str)) {
        for &b in chunk {
            if b == b'\n' {
                self.emit(&mut on_line);
            } else if self.buf.len() < MAX_LINE {
                self.buf.push(b);
            } else {
                self.overlong = true;
            }
        }
    }

    /// Emits a trailing line that had no newline (the stream ended).
    pub(crate) fn finish(&mut self, mut on_line: impl FnMut(&str)) {
        if !self.buf.is_empty() {
            self.emit(&mut on_line);
        }
    }

    fn emit(&mut self, on_line: &mut impl FnMut(&str)) {
        let text = String::from_utf8_lossy(&self.buf);
        on_line(text.trim_end_matches('\r'));
        self.buf.clear();
        self.overlong = false;
    }
}

/// The last [`TAIL_LINES`] non-empty lines of a stream.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    splitter: LineSplitter,
    alloc_failed: bool,
}

/// What a tool wrote to stderr, as far as jobpulse keeps it.
#[derive(Debug, Default, Clone)]
pub(crate) struct StderrTail {
    /// The last [`TAIL_LINES`] non-empty lines.
    pub(crate) text: String,
    /// Some line (anywhere in the stream) reported a failed allocation.
    pub(crate) alloc_failed: bool,
}

/// How ffmpeg, its libraries and the dynamic loader say that an allocation failed. Only read when
/// the child ran under a memory budget. `get_buffer() failed` is libavcodec failing to allocate a
/// frame: with frame threads, an 8192×8192 picture under a 600 MiB budget sometimes fails there
/// ("… no frame!") and exits before the encoder's own `malloc of size …` line is printed — it
/// was then retried as an ordinary ffmpeg failure. Sometimes even `get_buffer() failed` is not
/// printed and the decoder's `no frame!` is the only line (seen in CI: the first attempt was
/// retried, the second named the budget). ffmpeg does not exit unsuccessfully on a damaged
/// frame of its own accord (it logs it and goes on), so a failed run under a budget whose only
/// clue is `no frame!` is counted as the budget: the cost of being wrong is a damaged file
/// failed at once with the memory reason instead of after every retry with ffmpeg's line.
const ALLOC_FAILURES: [&str; 7] = [
    "cannot allocate memory",
    "could not allocate",
    "malloc of size",
    "failed to map segment",
    "out of memory",
    "get_buffer() failed",
    "no frame!",
];

impl Tail {
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let (lines, flag) = (&mut self.lines, &mut self.alloc_failed);
        self.splitter.push(chunk, |l| keep(lines, flag, l));
    }

    pub(crate) fn finish(mut self) -> StderrTail {
        let (lines, flag) = (&mut self.lines, &mut self.alloc_failed);
        self.splitter.finish(|l| keep(lines, flag, l));
        StderrTail {
            text: self.lines.into_iter().collect::<Vec<_>>().join("\n"),
            alloc_failed: self.alloc_failed,
        }
    }
}

fn keep(lines: &mut VecDeque<String>, alloc_failed: &mut bool, line: &str) {
    if line.trim().is_empty() {
        return;
    }
    if !*alloc_failed {
        let lower = line.to_ascii_lowercase();
        *alloc_failed = ALLOC_FAILURES.iter().any(|m| lower.contains(m));
    }
    if lines.len() == TAIL_LINES {
        lines.pop_front();
    }
    lines.push_back(line.to_owned());
}

/// Reads a child's stderr to the end in the background, keeping only its tail.
pub(crate) fn collect_tail(mut stderr: ChildStderr) -> JoinHandle<StderrTail> {
    tokio::spawn(async move {
        let mut tail = Tail::default();
        let mut buf = [0u8; 4096];
        // A read error means the pipe is gone; whatever was read so far is the tail.
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tail.push(&buf[..n]);
        }
        tail.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_any_chunking_and_stay_bounded() {
        let input = b"alpha\r\nbeta\n\ngamma-without-newline";
        for split in 0..input.len() {
            let mut s = LineSplitter::default();
            let mut got = Vec::new();
            s.push(&input[..split], |l| got.push(l.to_owned()));
            s.push(&input[split..], |l| got.push(l.to_owned()));
            s.finish(|l| got.push(l.to_owned()));
            assert_eq!(
                got,
                ["alpha", "beta", "", "gamma-without-newline"],
                "{split}"
            );
        }
        let mut s = LineSplitter::default();
        let mut got = Vec::new();
        let long = vec![b'x'; 10 * MAX_LINE];
        s.push(&long, |l| got.push(l.len()));
        s.push(b"\nshort\n", |l| got.push(l.len()));
        assert_eq!(got, [MAX_LINE, 5]);
    }

    #[test]
    fn an_allocation_failure_is_noticed_anywhere_in_the_stream() {
        let mut t = Tail::default();
        t.push(b"[h264 @ 0x55] Could not allocate memory\n");
        for i in 0..100 {
            t.push(format!("later line {i}\n").as_bytes());
        }
        let tail = t.finish();
        assert!(tail.alloc_failed, "the line is long gone from the tail");
        assert!(!tail.text.contains("allocate"));
        let mut t = Tail::default();
        t.push(b"Error while decoding stream #0:0: Cannot allocate memory");
        assert!(
            t.finish().alloc_failed,
            "a last line without newline counts"
        );
        let mut t = Tail::default();
        // A frame that could not be allocated, the decoder giving up before the encoder opens.
        t.push(b"[h264 @ 0x5604] get_buffer() failed\n[h264 @ 0x5604] no frame!\n");
        assert!(t.finish().alloc_failed);
        let mut t = Tail::default();
        // The same failure with the decoder's last word only (CI, frame threads, 600 MiB).
        t.push(b"[h264 @ 0x561f059b1c40] no frame!\n");
        assert!(t.finish().alloc_failed);
        let mut t = Tail::default();
        t.push(b"Invalid data found when processing input\n");
        assert!(!t.finish().alloc_failed);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n\n").as_bytes());
        }
        t.push(b"last without newline");
        let tail = t.finish();
        assert!(!tail.alloc_failed);
        let lines: Vec<_> = tail.text.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 81");
        assert_eq!(lines[TAIL_LINES - 1], "last without newline");
    }
}
