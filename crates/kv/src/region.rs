//! Regions: the key space split into ranges, each replicated by its own raft
//! group (region id = raft group id) on the same nodes, as in RheaKV.

use bytes::Bytes;

pub type RegionId = u64;

/// Most regions one node hosts with `--regions N` (the even split works on
/// the first key byte).
pub const MAX_REGIONS: u32 = 256;

/// A region's configuration version: `conf_ver` grows with every membership
/// change applied, `version` with every change of the key range (split or
/// merge, not built yet). A request carrying an older epoch is refused with a
/// retryable error so the caller refreshes its route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionEpoch {
    pub conf_ver: u64,
    pub version: u64,
}

/// One region's key range, `[start_key, end_key)`; an empty `end_key` means
/// "to the end of the key space".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionRange {
    pub id: RegionId,
    pub start_key: Bytes,
    pub end_key: Bytes,
}

impl RegionRange {
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start_key[..] && (self.end_key.is_empty() || key < &self.end_key[..])
    }

    /// The part of `[start, end)` (empty `end`: unbounded) inside this region,
    /// or `None` when they do not overlap.
    pub fn clamp(&self, start: &[u8], end: &[u8]) -> Option<(Bytes, Bytes)> {
        let lo: &[u8] = if start > &self.start_key[..] {
            start
        } else {
            &self.start_key
        };
        let hi: &[u8] = match (end.is_empty(), self.end_key.is_empty()) {
            (true, _) => &self.end_key,
            (false, true) => end,
            (false, false) => {
                if end < &self.end_key[..] {
                    end
                } else {
                    &self.end_key
                }
            }
        };
        if !hi.is_empty() && lo >= hi {
            return None;
        }
        Some((Bytes::copy_from_slice(lo), Bytes::copy_from_slice(hi)))
    }
}

/// The region layout of RheaKV's fake-PD mode: `n` regions splitting the key
/// space evenly on the first byte. Region ids are 1..=n.
pub fn even_split(n: u32) -> Result<Vec<RegionRange>, String> {
    if n == 0 || n > MAX_REGIONS {
        return Err(format!(
            "regions must be between 1 and {MAX_REGIONS}, got {n}"
        ));
    }
    let bound = |i: u32| -> Bytes {
        if i == 0 || i == n {
            Bytes::new()
        } else {
            // floor(i * 256 / n) is in 1..=255 for 0 < i < n <= 256.
            Bytes::copy_from_slice(&[((i * 256) / n) as u8])
        }
    };
    Ok((0..n)
        .map(|i| RegionRange {
            id: u64::from(i) + 1,
            start_key: bound(i),
            end_key: bound(i + 1),
        })
        .collect())
}

/// The region of `key` in a layout sorted by start key.
pub fn region_of<'a>(layout: &'a [RegionRange], key: &[u8]) -> Option<&'a RegionRange> {
    let i = layout.partition_point(|r| &r.start_key[..] <= key);
    i.checked_sub(1)
        .and_then(|i| layout.get(i))
        .filter(|r| r.contains(key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn even_split_covers_the_key_space_without_gaps() {
        for n in [1, 2, 3, 4, 7, 255, 256] {
            let l = even_split(n).unwrap();
            assert_eq!(l.len(), n as usize);
            assert!(l[0].start_key.is_empty());
            assert!(l[l.len() - 1].end_key.is_empty());
            for w in l.windows(2) {
                assert_eq!(w[0].end_key, w[1].start_key);
                assert!(w[0].start_key < w[1].start_key || w[0].start_key.is_empty());
            }
            for key in [
                &b""[..],
                b"\x00",
                b"a",
                b"key:1",
                b"\x7f\xff",
                b"\xff\xff\xff",
            ] {
                let r = region_of(&l, key).unwrap();
                assert!(r.contains(key));
                assert_eq!(l.iter().filter(|r| r.contains(key)).count(), 1);
            }
        }
        assert!(even_split(0).is_err());
        assert!(even_split(257).is_err());
    }

    #[test]
    fn clamp_intersects_ranges() {
        let l = even_split(2).unwrap();
        assert_eq!(
            l[0].clamp(b"a", b""),
            Some((Bytes::from_static(b"a"), Bytes::from_static(b"\x80")))
        );
        assert_eq!(
            l[1].clamp(b"a", b""),
            Some((Bytes::from_static(b"\x80"), Bytes::new()))
        );
        assert_eq!(l[1].clamp(b"a", b"b"), None);
        assert_eq!(l[0].clamp(b"b", b"b"), None);
    }
}
