/*!
`--max-queued-mb`: the bytes of requests and replies every connection holds
in memory, together. A request waiting for a compile slot keeps its source
in memory, and a reply waiting for a slow reader keeps its object: without
one budget for all, `--max-connections` × `--max-input-mb` is the bound, which
is no bound. When the budget is spent, a request is refused as busy (the
client compiles elsewhere or locally) instead of the daemon running out of
memory.
*/

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Budget {
    total: usize,
    used: AtomicUsize,
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Budget {
    pub fn new(total: usize) -> Budget {
        Budget {
            total,
            used: AtomicUsize::new(0),
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn available(&self) -> usize {
        self.total.saturating_sub(self.used())
    }

    /// Nothing held yet.
    pub fn none(&self) -> Held<'_> {
        Held {
            budget: self,
            bytes: 0,
        }
    }

    fn try_add(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.total)
            })
            .is_ok()
    }
}

impl Held<'_> {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `n` bytes instead of what it held, if the budget allows the growth.
    pub fn resize(&mut self, n: usize) -> bool {
        if n > self.bytes {
            if !self.budget.try_add(n - self.bytes) {
                return false;
            }
        } else {
            self.budget.used.fetch_sub(self.bytes - n, Ordering::AcqRel);
        }
        self.bytes = n;
        true
    }

    pub fn grow(&mut self, n: usize) -> bool {
        self.resize(self.bytes.saturating_add(n))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_within_the_total_and_gives_back_on_drop() {
        let b = Budget::new(100);
        let mut a = b.none();
        assert!(a.grow(60));
        let mut c = b.none();
        assert!(!c.grow(41), "60 + 41 > 100");
        assert!(c.grow(40));
        assert_eq!(b.available(), 0);
        assert!(a.resize(10), "shrinking always works");
        assert_eq!(b.used(), 50);
        drop(c);
        assert_eq!(b.used(), 10);
        drop(a);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_refused_growth_keeps_what_was_held() {
        let b = Budget::new(10);
        let mut a = b.none();
        assert!(a.resize(8));
        assert!(!a.resize(11));
        assert_eq!((a.bytes(), b.used()), (8, 8));
    }
}
