//! A byte ring for stream buffers: like `VecDeque<u8>`, but appending copies whole slices,
//! and growing the logical length (reassembly making room for a frame beyond the readable
//! part) never writes the new bytes: positions past the old end keep whatever they held,
//! which is fine because the owner tracks which offsets hold received data and only ever
//! reads those. Storage grows by doubling (zero-filled once, when it grows) and is kept, so
//! a stream in steady state neither allocates nor clears memory per packet.

/// A growable ring of bytes (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct ByteRing {
    buf: Vec<u8>,
    head: usize,
    len: usize,
}

/// Smallest storage allocated once anything is stored.
const MIN_CAPACITY: usize = 64;

impl ByteRing {
    /// An empty ring; allocates nothing until bytes arrive.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Bytes held (including not-yet-written gaps made by [`ByteRing::set_len_at_least`]).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Grows the storage to hold at least `need` bytes, keeping the content in order.
    fn grow(&mut self, need: usize) {
        let cap = need.next_power_of_two().max(MIN_CAPACITY);
        let mut v = vec![0u8; cap];
        let (a, b) = self.as_slices();
        v[..a.len()].copy_from_slice(a);
        v[a.len()..a.len() + b.len()].copy_from_slice(b);
        self.buf = v;
        self.head = 0;
    }

    /// Makes the ring at least `n` bytes long; the new bytes' values are unspecified.
    pub(crate) fn set_len_at_least(&mut self, n: usize) {
        if n > self.buf.len() {
            self.grow(n);
        }
        self.len = self.len.max(n);
    }

    /// Appends `data`.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let at = self.len;
        self.set_len_at_least(at + data.len());
        self.write_at(at, data);
    }

    /// Overwrites bytes `at..at + data.len()` (which must be within the length).
    pub(crate) fn write_at(&mut self, at: usize, data: &[u8]) {
        debug_assert!(at + data.len() <= self.len);
        if data.is_empty() {
            return;
        }
        let cap = self.buf.len();
        let start = (self.head + at) % cap;
        let first = (cap - start).min(data.len());
        self.buf[start..start + first].copy_from_slice(&data[..first]);
        let rest = data.len() - first;
        self.buf[..rest].copy_from_slice(&data[first..]);
    }

    /// The content as two slices, front first.
    pub(crate) fn as_slices(&self) -> (&[u8], &[u8]) {
        let cap = self.buf.len();
        if self.head + self.len <= cap {
            (&self.buf[self.head..self.head + self.len], &[])
        } else {
            let first = cap - self.head;
            (&self.buf[self.head..], &self.buf[..self.len - first])
        }
    }

    /// Drops the first `n` bytes.
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.buf.len()
        };
    }

    /// Empties the ring (keeps the storage).
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    proptest! {
        /// Behaves like a `VecDeque<u8>` for pushes, overwrites and consumption.
        #[test]
        fn matches_a_vecdeque(ops in proptest::collection::vec((0u8..4, 0usize..300, any::<u8>()), 0..300)) {
            let mut r = ByteRing::new();
            let mut m: VecDeque<u8> = VecDeque::new();
            for (op, n, v) in ops {
                match op {
                    0 => {
                        let data = vec![v; n];
                        r.push(&data);
                        m.extend(&data);
                    }
                    1 => {
                        let k = n.min(m.len());
                        r.consume(k);
                        m.drain(..k);
                    }
                    2 if !m.is_empty() => {
                        let at = n % m.len();
                        let k = (m.len() - at).min(17);
                        let data = vec![v; k];
                        r.write_at(at, &data);
                        for (i, b) in data.iter().enumerate() {
                            m[at + i] = *b;
                        }
                    }
                    _ => {
                        // Grow the length with bytes of unspecified value, then define them.
                        let target = m.len() + n;
                        let at = m.len();
                        r.set_len_at_least(target);
                        let data = vec![v; n];
                        r.write_at(at, &data);
                        m.extend(&data);
                    }
                }
                let (a, b) = r.as_slices();
                let got: Vec<u8> = a.iter().chain(b).copied().collect();
                prop_assert_eq!(got, m.iter().copied().collect::<Vec<u8>>());
                prop_assert_eq!(r.len(), m.len());
            }
        }
    }
}
