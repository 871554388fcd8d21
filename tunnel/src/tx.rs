//! The outgoing datagram batch: encrypted packets written back to back into one buffer.
//!
//! The core encrypts straight into [`TxBatch::room`]; the shell then sends runs of
//! equal-sized datagrams to the same destination from the same source address with one
//! `sendmsg` each (UDP GSO: the kernel cuts the run into datagrams at `segment_size`).
//!
//! Each datagram carries the local address it must leave from (`None`: the kernel chooses
//! by its routing table): a path is local uplink x remote endpoint, so two datagrams to
//! the same endpoint over two ISPs differ only in their source.

use std::net::{IpAddr, SocketAddr};

/// One datagram in the batch.
#[derive(Debug, Clone, Copy)]
struct Entry {
    dst: SocketAddr,
    src: Option<IpAddr>,
    start: usize,
    len: usize,
}

/// A run of datagrams that one GSO send can carry.
#[derive(Debug, PartialEq, Eq)]
pub struct Run<'a> {
    pub dst: SocketAddr,
    /// The local address to send from (`None`: the kernel chooses).
    pub src: Option<IpAddr>,
    pub contents: &'a [u8],
    /// `Some(size)` when the run holds several datagrams of `size` bytes (the last may be shorter).
    pub segment_size: Option<usize>,
}

/// Most bytes one GSO send may carry (a UDP datagram's payload limit, with margin).
pub const MAX_GSO_BYTES: usize = 65000;

/// Reusable buffer of outgoing datagrams.
#[derive(Debug)]
pub struct TxBatch {
    buf: Box<[u8]>,
    used: usize,
    entries: Vec<Entry>,
}

impl TxBatch {
    /// A batch holding up to `capacity` bytes of datagrams.
    pub fn new(capacity: usize) -> Self {
        TxBatch {
            buf: vec![0; capacity].into_boxed_slice(),
            used: 0,
            // A datagram is at least 32 bytes; reserving for that bound means pushes never
            // reallocate.
            entries: Vec::with_capacity(capacity / 32 + 1),
        }
    }

    /// Free space, to write the next datagram at its start.
    pub fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.used..]
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.used
    }

    /// Counts the first `len` bytes of [`TxBatch::room`] as a datagram for `dst`, sent from
    /// whatever local address the kernel chooses.
    pub fn commit(&mut self, len: usize, dst: SocketAddr) {
        self.commit_from(len, dst, None);
    }

    /// Counts the first `len` bytes of [`TxBatch::room`] as a datagram for `dst`, sent from
    /// the local address `src` (`None`: the kernel chooses).
    pub fn commit_from(&mut self, len: usize, dst: SocketAddr, src: Option<IpAddr>) {
        let len = len.min(self.remaining());
        self.entries.push(Entry {
            dst,
            src,
            start: self.used,
            len,
        });
        self.used += len;
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the datagrams (keeps the memory).
    pub fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
    }

    /// The datagrams grouped into GSO runs of at most `max_segments` datagrams: same
    /// destination and source, same size except a shorter last one, adjacent in the buffer.
    pub fn runs(&self, max_segments: usize) -> impl Iterator<Item = Run<'_>> {
        let max_segments = max_segments.max(1);
        let mut i = 0;
        std::iter::from_fn(move || {
            let first = *self.entries.get(i)?;
            let mut count = 1;
            let mut end = first.start + first.len;
            while count < max_segments {
                let Some(next) = self.entries.get(i + count) else {
                    break;
                };
                // A run continues while datagrams are the same size; a shorter one may end it.
                let fits = next.dst == first.dst
                    && next.src == first.src
                    && next.start == end
                    && next.len <= first.len
                    && end + next.len - first.start <= MAX_GSO_BYTES;
                if !fits {
                    break;
                }
                count += 1;
                end += next.len;
                if next.len < first.len {
                    break;
                }
            }
            i += count;
            Some(Run {
                dst: first.dst,
                src: first.src,
                contents: &self.buf[first.start..end],
                segment_size: (count > 1).then_some(first.len),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(b: &mut TxBatch, len: usize, dst: &str, fill: u8) {
        b.room()[..len].fill(fill);
        b.commit(len, dst.parse().unwrap());
    }

    #[test]
    fn equal_datagrams_to_one_peer_form_one_run() {
        let mut b = TxBatch::new(10_000);
        for _ in 0..5 {
            push(&mut b, 100, "198.51.100.1:1", 1);
        }
        push(&mut b, 40, "198.51.100.1:1", 2);
        let runs: Vec<_> = b.runs(64).collect();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].contents.len(), 540);
        assert_eq!(runs[0].segment_size, Some(100));
    }

    #[test]
    fn runs_split_on_destination_size_and_limit() {
        let mut b = TxBatch::new(10_000);
        push(&mut b, 100, "198.51.100.1:1", 1);
        push(&mut b, 100, "198.51.100.2:1", 1);
        push(&mut b, 100, "198.51.100.2:1", 1);
        push(&mut b, 120, "198.51.100.2:1", 1);
        push(&mut b, 120, "198.51.100.2:1", 1);
        push(&mut b, 120, "198.51.100.2:1", 1);
        let runs: Vec<_> = b.runs(2).collect();
        let shape: Vec<_> = runs
            .iter()
            .map(|r| (r.dst.ip().to_string(), r.contents.len(), r.segment_size))
            .collect();
        assert_eq!(
            shape,
            vec![
                ("198.51.100.1".into(), 100, None),
                ("198.51.100.2".into(), 200, Some(100)),
                ("198.51.100.2".into(), 240, Some(120)),
                ("198.51.100.2".into(), 120, None),
            ]
        );
    }

    #[test]
    fn runs_split_on_source_address() {
        let mut b = TxBatch::new(10_000);
        let dst: SocketAddr = "198.51.100.1:1".parse().unwrap();
        let isp1: IpAddr = "198.51.100.2".parse().unwrap();
        let isp2: IpAddr = "203.0.113.2".parse().unwrap();
        for src in [Some(isp1), Some(isp1), Some(isp2), None] {
            b.room()[..100].fill(1);
            b.commit_from(100, dst, src);
        }
        let shape: Vec<_> = b.runs(64).map(|r| (r.src, r.contents.len())).collect();
        assert_eq!(
            shape,
            vec![(Some(isp1), 200), (Some(isp2), 100), (None, 100)]
        );
    }

    #[test]
    fn a_shorter_datagram_ends_the_run() {
        let mut b = TxBatch::new(10_000);
        push(&mut b, 100, "198.51.100.1:1", 1);
        push(&mut b, 50, "198.51.100.1:1", 1);
        push(&mut b, 100, "198.51.100.1:1", 1);
        let sizes: Vec<_> = b.runs(64).map(|r| r.contents.len()).collect();
        assert_eq!(sizes, vec![150, 100]);
    }

    #[test]
    fn runs_stay_below_the_gso_limit() {
        let mut b = TxBatch::new(200_000);
        for _ in 0..100 {
            push(&mut b, 1452, "198.51.100.1:1", 1);
        }
        for r in b.runs(1000) {
            assert!(r.contents.len() <= MAX_GSO_BYTES);
        }
        assert_eq!(
            b.runs(1000).map(|r| r.contents.len()).sum::<usize>(),
            145_200
        );
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.runs(64).count(), 0);
    }
}
