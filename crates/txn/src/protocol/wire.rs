//! Big-endian primitives shared by the frame, head-map and body codecs.
//!
//! [`Reader`] is a cursor over a complete, already delimited slice: running
//! out of bytes is an error ([`ProtocolError::Truncated`]), never "wait for
//! more". Every read is bounds-checked, so no declared length can make it
//! read (or allocate) past the input.

use super::error::ProtocolError;

/// Largest byte length of a string with a short (i16) length prefix: Java
/// reads the prefix as a signed short.
pub(crate) const MAX_STR16_BYTES: usize = i16::MAX as usize;
/// Largest byte length of a string with an int (i32) length prefix.
pub(crate) const MAX_STR32_BYTES: usize = i32::MAX as usize;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The unread bytes.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest().len()
    }

    pub(crate) fn take(
        &mut self,
        n: usize,
        field: &'static str,
    ) -> Result<&'a [u8], ProtocolError> {
        let rest = self.rest();
        let bytes = rest.get(..n).ok_or(ProtocolError::Truncated {
            field,
            needed: n,
            remaining: rest.len(),
        })?;
        self.pos = self.pos.saturating_add(n);
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| ProtocolError::Truncated {
            field,
            needed: N,
            remaining: bytes.len(),
        })
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, ProtocolError> {
        self.array(field).map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        self.array(field).map(u32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, ProtocolError> {
        self.array(field).map(i64::from_be_bytes)
    }

    /// A string with a signed short length prefix. Length 0 is Java's null
    /// or empty string (Seata writes both as 0), read as `""`.
    pub(crate) fn str16(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.i16(field)?;
        let len = usize::try_from(len).map_err(|_| ProtocolError::NegativeLength {
            field,
            length: i32::from(len),
        })?;
        self.utf8(len, field)
    }

    /// A string with a signed int length prefix (lock keys, application
    /// data, resource id lists).
    pub(crate) fn str32(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.i32(field)?;
        let len = usize::try_from(len)
            .map_err(|_| ProtocolError::NegativeLength { field, length: len })?;
        self.utf8(len, field)
    }

    /// `len` bytes decoded as UTF-8 the way Java's `new String(bytes, UTF_8)`
    /// does: malformed sequences become U+FFFD instead of failing.
    pub(crate) fn utf8(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<String, ProtocolError> {
        let bytes = self.take(len, field)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self, context: &'static str) -> Result<(), ProtocolError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(ProtocolError::TrailingBytes { context, count }),
        }
    }
}

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A string with a short length prefix; `""` is written as length 0, which
/// is also how Seata writes null.
pub(crate) fn put_str16(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
) -> Result<(), ProtocolError> {
    let len = i16::try_from(s.len()).map_err(|_| ProtocolError::FieldTooLong {
        field,
        len: s.len(),
        max: MAX_STR16_BYTES,
    })?;
    put_i16(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A string with an int length prefix.
pub(crate) fn put_str32(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
) -> Result<(), ProtocolError> {
    let len = i32::try_from(s.len()).map_err(|_| ProtocolError::FieldTooLong {
        field,
        len: s.len(),
        max: MAX_STR32_BYTES,
    })?;
    put_i32(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Overwrites `out[at..at + bytes.len()]` (a placeholder written earlier).
/// Out-of-range positions are ignored; callers only patch what they wrote.
pub(crate) fn patch(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(slot) = out.get_mut(at..) {
        for (dst, src) in slot.iter_mut().zip(bytes) {
            *dst = *src;
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or("")
}
