//! The upload spool's bounds: multipart uploads (the old video upload, job inputs, enroll
//! files) are written to `<data dir>/spool` before they go to media storage, and together they
//! may hold at most [`SpoolLimits::max_bytes`] there, never leaving less than
//! [`SpoolLimits::min_free_bytes`] free on its disk. Four 2 GiB uploads at once used to put
//! 8.5 GB in the spool before failing.
//!
//! Every byte is reserved before it is written and released when the spooled file is gone. A
//! request over the budget is answered **503** with `Retry-After` (others' uploads will end and
//! free it); a disk that would fall under the free-space floor **507**. Either way the partial
//! file is removed and a log line says why.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ApiError;

/// The spool's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Bytes all uploads being received may hold in the spool together (default 4 GiB: two
    /// full-size videos at once).
    pub max_bytes: u64,
    /// Free space the spool's disk keeps (default 1 GiB).
    pub min_free_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024 * 1024,
            min_free_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// The shared budget (cheap to clone; clones share it).
#[derive(Debug, Clone)]
pub struct SpoolBudget {
    limits: SpoolLimits,
    used: Arc<AtomicU64>,
}

/// Bytes reserved by one upload; released when dropped (with its spooled file).
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl SpoolBudget {
    pub fn new(limits: SpoolLimits) -> Self {
        Self {
            limits,
            used: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn limits(&self) -> SpoolLimits {
        self.limits
    }

    /// Bytes held in the spool now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// A reservation of nothing yet, to grow with [`SpoolBudget::grow`].
    pub fn reserve(&self) -> Reservation {
        Reservation {
            used: self.used.clone(),
            bytes: 0,
        }
    }

    /// Adds `n` bytes to `r`, or refuses when the spool would pass its budget (503) or the
    /// disk under `dir` its free-space floor (507).
    pub fn grow(&self, r: &mut Reservation, n: u64, dir: &Path) -> Result<(), ApiError> {
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        r.bytes += n;
        if before + n > self.limits.max_bytes {
            tracing::warn!(
                spool_bytes = before + n,
                max_bytes = self.limits.max_bytes,
                "upload refused: the spool is full (uploads being received hold its budget)"
            );
            return Err(ApiError::Busy {
                what: "uploads being received",
                retry_after: Duration::from_secs(30),
            });
        }
        // The disk is asked once per 8 MiB received, not per chunk.
        let step = 8 * 1024 * 1024;
        let crossed = r.bytes / step != (r.bytes - n) / step || r.bytes == n;
        if crossed
            && let Some(free) = free_bytes(dir)
            && free < self.limits.min_free_bytes.saturating_add(n)
        {
            tracing::error!(
                free_bytes = free,
                min_free_bytes = self.limits.min_free_bytes,
                dir = %dir.display(),
                "upload refused: the spool's disk is almost full"
            );
            return Err(ApiError::InsufficientStorage(
                "the server's upload disk is full; try again later".into(),
            ));
        }
        Ok(())
    }
}

/// Free bytes for unprivileged users on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_are_released_on_drop() {
        let dir = tempfile::tempdir().expect("dir");
        let b = SpoolBudget::new(SpoolLimits {
            max_bytes: 100,
            min_free_bytes: 0,
        });
        let mut one = b.reserve();
        b.grow(&mut one, 60, dir.path()).expect("within");
        let mut two = b.reserve();
        assert!(matches!(
            b.grow(&mut two, 50, dir.path()),
            Err(ApiError::Busy { .. })
        ));
        drop(two);
        assert_eq!(b.used(), 60, "a refused reservation is released");
        drop(one);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_disk_under_the_floor_refuses_with_507() {
        let dir = tempfile::tempdir().expect("dir");
        let free = free_bytes(dir.path()).expect("statvfs");
        let b = SpoolBudget::new(SpoolLimits {
            max_bytes: u64::MAX / 2,
            min_free_bytes: free + 1024 * 1024 * 1024,
        });
        let mut r = b.reserve();
        assert!(matches!(
            b.grow(&mut r, 10, dir.path()),
            Err(ApiError::InsufficientStorage(_))
        ));
    }
}
