//! Sliding-window replay protection (RFC 6479 style bitmap, as in boringtun).
//!
//! The window is checked *before* decryption (cheap rejection of replays) and updated only
//! *after* the packet authenticates, so a forged packet with a huge counter cannot move the
//! window (the flaw Pilot's S10 exploits).

/// Counters this far behind the highest accepted one are still accepted once.
pub const WINDOW: u64 = 2048;
/// One spare word so the word holding the highest counter never aliases the window's oldest.
const WORDS: usize = (WINDOW / 64) as usize + 1;

/// Replay state for one direction of a session. No allocation: a fixed bitmap ring.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted so far (0 = nothing yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            next: 0,
            bits: [0; WORDS],
        }
    }

    /// Would `counter` be accepted? Does not change the window.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (w, b) = Self::slot(counter);
        self.bits[w] & (1 << b) == 0
    }

    /// Records `counter` as received. Call only after the packet authenticated. Returns
    /// `false` (and changes nothing) if the counter is a replay or too old.
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter >= self.next {
            // Clear the words the window slides into (they hold counters a full ring ago).
            let old_word = self.next.saturating_sub(1) / 64;
            let new_word = counter / 64;
            let to_clear = (new_word - old_word).min(WORDS as u64);
            for i in 1..=to_clear {
                self.bits[((old_word + i) % WORDS as u64) as usize] = 0;
            }
            self.next = counter + 1;
        }
        let (w, b) = Self::slot(counter);
        self.bits[w] |= 1 << b;
        true
    }

    /// One more than the highest counter accepted (0 if none).
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    fn slot(counter: u64) -> (usize, u32) {
        (
            ((counter / 64) % WORDS as u64) as usize,
            (counter % 64) as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn accepts_each_counter_once() {
        let mut w = ReplayWindow::new();
        for c in [0, 1, 5, 3, 2, 4, 100, 99, 6] {
            assert!(w.update(c), "{c}");
            assert!(!w.update(c), "replay of {c}");
        }
    }

    #[test]
    fn rejects_too_old_and_accepts_window_edge() {
        let mut w = ReplayWindow::new();
        assert!(w.update(10_000));
        // next = 10_001, so the oldest acceptable counter is 10_001 - WINDOW.
        assert!(w.check(10_001 - WINDOW));
        assert!(!w.check(10_000 - WINDOW));
        assert!(w.update(10_001 - WINDOW));
    }

    #[test]
    fn check_without_update_does_not_move() {
        let mut w = ReplayWindow::new();
        assert!(w.update(5));
        assert!(w.check(u64::MAX - 1));
        // Only `update` moves the window, so 6 is still fine.
        assert!(w.update(6));
    }

    #[test]
    fn matches_reference_model_over_a_long_walk() {
        // Deterministic pseudo-random walk compared with an exact set model.
        let mut w = ReplayWindow::new();
        let mut seen = BTreeSet::new();
        let mut hi = 0u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = match x % 4 {
                0 => hi + (x >> 8) % 3000,
                _ => hi.saturating_sub((x >> 8) % 2500),
            };
            let expect = !seen.contains(&c) && (c >= hi || hi - c <= WINDOW);
            assert_eq!(w.update(c), expect, "counter {c} hi {hi}");
            if expect {
                seen.insert(c);
                hi = hi.max(c + 1);
            }
        }
    }
}
