//! The frame head map (Seata's `HeadMapSerializer`).
//!
//! The head map sits between the 16-byte header and the body; its length is
//! the header's head length minus 16. It is a sequence of entries, each a key
//! then a value, each string written as a signed short byte length followed
//! by UTF-8 bytes. Unlike in message bodies, null and empty differ here:
//! null is length -1 (`ff ff`), empty is length 0. Java never writes a null
//! key (it skips entries whose key is null).
//!
//! Java iterates a `HashMap` when encoding, so entry order on the wire is
//! arbitrary; this type keeps entries in wire order so that decoding and
//! re-encoding gives the same bytes.

use std::collections::HashSet;

use super::error::ProtocolError;
use super::frame::FrameLimits;
use super::wire::{Reader, put_i16, put_str16};

/// Ordered string map with nullable values; keys are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadMap {
    entries: Vec<(String, Option<String>)>,
}

impl HeadMap {
    pub fn new() -> Self {
        HeadMap::default()
    }

    /// Sets `key` (in place if present, else appended). Returns the old
    /// value, if the key was present.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: Option<String>,
    ) -> Option<Option<String>> {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// `None`: no such key; `Some(None)`: present with a null value.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    pub fn remove(&mut self, key: &str) -> Option<Option<String>> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Bytes the map takes on the wire.
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| 4 + k.len() + v.as_ref().map_or(0, String::len))
            .sum()
    }
}

impl<K: Into<String>> FromIterator<(K, Option<String>)> for HeadMap {
    fn from_iter<I: IntoIterator<Item = (K, Option<String>)>>(iter: I) -> Self {
        let mut map = HeadMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

/// Appends the map's entries. Fails if a key or value is over 32767 bytes.
pub(crate) fn encode_head_map(map: &HeadMap, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    for (key, value) in &map.entries {
        put_str16(out, "head map key", key)?;
        match value {
            Some(value) => put_str16(out, "head map value", value)?,
            None => put_i16(out, -1),
        }
    }
    Ok(())
}

/// Decodes exactly `buf`, the head map bytes of one frame. Entries must end
/// exactly at the end of `buf` (Java keeps reading past it into the body).
pub(crate) fn decode_head_map(buf: &[u8], limits: &FrameLimits) -> Result<HeadMap, ProtocolError> {
    if buf.len() > limits.max_head_map_bytes {
        return Err(ProtocolError::HeadMapTooLarge {
            bytes: buf.len(),
            limit: limits.max_head_map_bytes,
        });
    }
    let mut r = Reader::new(buf);
    let mut entries = Vec::new();
    while r.remaining() > 0 {
        if entries.len() >= limits.max_head_map_entries {
            return Err(ProtocolError::HeadMapTooManyEntries {
                limit: limits.max_head_map_entries,
            });
        }
        let key = match read_nullable(&mut r, "head map key")? {
            Some(key) => key,
            None => return Err(ProtocolError::BadHeadMap("null key")),
        };
        let value = read_nullable(&mut r, "head map value")?;
        entries.push((key, value));
    }
    let mut seen = HashSet::with_capacity(entries.len());
    if !entries.iter().all(|(k, _)| seen.insert(k.as_str())) {
        return Err(ProtocolError::BadHeadMap("repeated key"));
    }
    Ok(HeadMap { entries })
}

fn read_nullable(r: &mut Reader<'_>, field: &'static str) -> Result<Option<String>, ProtocolError> {
    let len = r.i16(field)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| ProtocolError::NegativeLength {
        field,
        length: i32::from(len),
    })?;
    r.utf8(len, field).map(Some)
}
