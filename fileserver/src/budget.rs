//! A session-wide budget of bytes that fids hold (extended attribute values), so that many
//! fids each holding a bounded value still hold a bounded total.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::errno::{Errno, OpResult};

/// Bytes in use out of a limit, shared by a session's fids.
#[derive(Clone)]
pub(crate) struct Budget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

/// Bytes taken from a budget, given back when dropped (with the fid state holding them).
pub(crate) struct Charge {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Takes `bytes`, or fails with ENOMEM when that would go over the limit.
    pub(crate) fn charge(&self, bytes: usize) -> OpResult<Charge> {
        let before = self.used.fetch_add(bytes, Ordering::SeqCst);
        if before.saturating_add(bytes) > self.limit {
            self.used.fetch_sub(bytes, Ordering::SeqCst);
            return Err(Errno(libc::ENOMEM));
        }
        Ok(Charge {
            used: Arc::clone(&self.used),
            bytes,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_gives_back_on_drop() {
        let budget = Budget::new(100);

        let a = budget.charge(60).unwrap();
        let over = budget.charge(41);
        drop(a);
        let after = budget.charge(100);

        assert_eq!(over.err(), Some(Errno(libc::ENOMEM)));
        assert!(after.is_ok());
    }
}
