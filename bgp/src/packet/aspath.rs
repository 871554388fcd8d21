//! AS_PATH values (RFC 4271 §4.3, RFC 5065 confederation segments) and their 2- and 4-octet
//! wire forms (RFC 6793).

use std::fmt;

use super::open::AS_TRANS;
use super::reader::Reader;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

impl SegmentKind {
    fn from_code(code: u8) -> Option<SegmentKind> {
        Some(match code {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

/// An AS path, always held with 4-octet AS numbers whatever the session spoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    pub fn from_sequence(asns: impl IntoIterator<Item = u32>) -> AsPath {
        let asns: Vec<u32> = asns.into_iter().collect();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// Path length for best-path selection (RFC 4271 §9.1.2.2 a): a set counts as one AS and
    /// confederation segments do not count (RFC 5065 §5.3).
    pub fn length(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentKind::Sequence => s.asns.len(),
                SegmentKind::Set => 1,
                SegmentKind::ConfedSequence | SegmentKind::ConfedSet => 0,
            })
            .sum()
    }

    /// The AS a route was learned from: the first AS of a leading sequence (RFC 4271 §9.1.2.2 c).
    pub fn neighbor_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }) => asns.first().copied(),
            _ => None,
        }
    }

    /// The AS that originated the route: the last AS of a trailing sequence. `None` for an
    /// empty path (our own routes) or one ending in a set, where the origin is not one AS.
    pub fn origin_as(&self) -> Option<u32> {
        match self.segments.last() {
            Some(AsSegment {
                kind: SegmentKind::Sequence,
                asns,
            }) => asns.last().copied(),
            _ => None,
        }
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// Puts `asn` in front `times` times, as a speaker does when it sends to an external peer
    /// (and policy does for prepending).
    pub fn prepend(&mut self, asn: u32, times: usize) {
        for _ in 0..times {
            match self.segments.first_mut() {
                Some(s) if s.kind == SegmentKind::Sequence && s.asns.len() < 255 => {
                    s.asns.insert(0, asn)
                }
                _ => self.segments.insert(
                    0,
                    AsSegment {
                        kind: SegmentKind::Sequence,
                        asns: vec![asn],
                    },
                ),
            }
        }
    }

    pub fn needs_four_octets(&self) -> bool {
        self.segments
            .iter()
            .flat_map(|s| &s.asns)
            .any(|&a| a > 0xffff)
    }

    /// Decodes a path whose AS numbers are `as_width` (2 or 4) octets; `None` if malformed.
    pub(crate) fn decode(bytes: &[u8], as_width: usize) -> Option<AsPath> {
        let mut r = Reader::new(bytes);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = SegmentKind::from_code(r.u8()?)?;
            let count = usize::from(r.u8()?);
            // RFC 7606 §7.2: a segment of length zero is malformed.
            if count == 0 {
                return None;
            }
            let mut asns = Vec::with_capacity(count);
            for _ in 0..count {
                asns.push(if as_width == 4 {
                    r.u32()?
                } else {
                    u32::from(r.u16()?)
                });
            }
            // Consecutive sequences are one path; a long path arrives split at 255 AS numbers.
            match segments.last_mut() {
                Some(AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: prev,
                }) if kind == SegmentKind::Sequence => prev.extend(asns),
                _ => segments.push(AsSegment { kind, asns }),
            }
        }
        Some(AsPath { segments })
    }

    /// Encodes with `as_width`-octet AS numbers; AS numbers that do not fit 2 octets become
    /// AS_TRANS (the real path then goes in AS4_PATH). Segments longer than 255 are split.
    pub(crate) fn encode(&self, as_width: usize, out: &mut Vec<u8>) {
        for s in &self.segments {
            for chunk in s.asns.chunks(255) {
                out.push(s.kind as u8);
                out.push(chunk.len() as u8);
                for &asn in chunk {
                    if as_width == 4 {
                        out.extend_from_slice(&asn.to_be_bytes());
                    } else {
                        let two = u16::try_from(asn).unwrap_or(AS_TRANS);
                        out.extend_from_slice(&two.to_be_bytes());
                    }
                }
            }
        }
    }

    /// RFC 6793 §4.2.3: rebuilds the real path from a 2-octet AS_PATH and an AS4_PATH. The
    /// AS4_PATH is ignored when it claims more AS numbers than the AS_PATH holds.
    pub(crate) fn merge_as4(&self, as4: &AsPath) -> AsPath {
        let count = |p: &AsPath| -> usize {
            p.segments
                .iter()
                .map(|s| match s.kind {
                    SegmentKind::Sequence => s.asns.len(),
                    SegmentKind::Set => 1,
                    _ => 0,
                })
                .sum()
        };
        let (n, n4) = (count(self), count(as4));
        if n < n4 {
            return self.clone();
        }
        // Keep the first n - n4 AS numbers of AS_PATH (confederation segments are kept whole,
        // they do not count), then append AS4_PATH.
        let mut keep = n - n4;
        let mut segments = Vec::new();
        for s in &self.segments {
            match s.kind {
                SegmentKind::ConfedSequence | SegmentKind::ConfedSet => segments.push(s.clone()),
                _ if keep == 0 => break,
                SegmentKind::Set => {
                    segments.push(s.clone());
                    keep -= 1;
                }
                SegmentKind::Sequence => {
                    let take = keep.min(s.asns.len());
                    segments.push(AsSegment {
                        kind: s.kind,
                        asns: s.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
            }
        }
        segments.extend(as4.segments.iter().cloned());
        AsPath { segments }
    }
}

impl fmt::Display for AsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.segments {
            if !first {
                write!(f, " ")?;
            }
            first = false;
            let list = s
                .asns
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            match s.kind {
                SegmentKind::Sequence => write!(f, "{list}")?,
                SegmentKind::Set => write!(f, "{{{list}}}")?,
                SegmentKind::ConfedSequence => write!(f, "({list})")?,
                SegmentKind::ConfedSet => write!(f, "[{list}]")?,
            }
        }
        Ok(())
    }
}
