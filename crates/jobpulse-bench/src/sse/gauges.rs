//! `/proc` figures (RSS, the kernel's TCP buffers, the open-files limit) and the wall clock
//! both processes share.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{SystemTime, UNIX_EPOCH};

/// `/proc` figures, from files opened once up front: a process out of file descriptors can
/// still read them.
#[derive(Debug)]
pub struct Gauges {
    status: Option<File>,
    sockstat: Option<File>,
}

impl Gauges {
    pub fn open() -> Self {
        Self {
            status: File::open("/proc/self/status").ok(),
            sockstat: File::open("/proc/net/sockstat").ok(),
        }
    }

    /// Resident memory of this process, kB.
    pub fn rss_kb(&mut self) -> Option<u64> {
        let text = reread(self.status.as_mut())?;
        let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
        line["VmRSS:".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Kernel memory of all TCP sockets on the machine, kB (`/proc/net/sockstat` counts pages
    /// of 4 kB): socket buffers are in no process's RSS.
    pub fn tcp_kernel_kb(&mut self) -> Option<u64> {
        let text = reread(self.sockstat.as_mut())?;
        let line = text.lines().find(|l| l.starts_with("TCP:"))?;
        let mut words = line.split_whitespace();
        words.find(|w| *w == "mem")?;
        words.next()?.parse::<u64>().ok().map(|pages| pages * 4)
    }
}

fn reread(file: Option<&mut File>) -> Option<String> {
    let file = file?;
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The soft open-files limit of this process.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Now, as Unix nanoseconds (the clock both processes share).
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
