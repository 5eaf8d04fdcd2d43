//! Which tasks a connection watches.

use std::sync::Arc;

use jobpulse_domain::TaskId;

/// Which tasks a connection watches.
#[derive(Debug, Clone)]
pub enum Watch {
    All,
    /// Sorted and without duplicates (a binary search is as fast as a hash lookup for the 200
    /// ids at most, and the slice costs a tenth of a hash set's memory); shared by the hub's
    /// registration and the connection.
    Tasks(Arc<[TaskId]>),
}

impl Watch {
    pub fn wants(&self, task: &TaskId) -> bool {
        self.position(task).is_some()
    }

    /// Where `task` is in the watched list (0 for every task of an `All` watch).
    pub fn position(&self, task: &TaskId) -> Option<usize> {
        match self {
            Watch::All => Some(0),
            Watch::Tasks(ids) => ids.binary_search(task).ok(),
        }
    }
}
