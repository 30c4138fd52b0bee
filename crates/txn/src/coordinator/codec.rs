//! The binary encoding shared by commands, answers and snapshots.
//!
//! ```text
//! u8, bool        1 byte (bool: 0 or 1, anything else is refused)
//! u32, u64, i64   little endian, fixed width
//! string          len:u32 + UTF-8 bytes
//! list            count:u32 + items
//! option          0 (none) | 1 + value
//! enum            tag:u8 + fields
//! ```
//!
//! [`Reader`] works on a complete, delimited slice: every read is
//! bounds-checked, a declared count is checked against the bytes left before
//! anything is allocated for it, and trailing bytes are an error. Nothing in
//! here panics on any input.

use thiserror::Error;

use crate::protocol::{BranchStatus, BranchType, GlobalStatus};

/// Why bytes did not decode (a raft log entry, an answer or a snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The input ended inside a value.
    #[error("truncated input: {needed} more bytes needed at offset {offset}")]
    Truncated { offset: usize, needed: usize },

    /// An enum tag (or a Seata status code) that does not exist.
    #[error("unknown {what} tag {tag} at offset {offset}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        offset: usize,
    },

    /// A bool byte other than 0 or 1.
    #[error("bad bool byte {value} at offset {offset}")]
    BadBool { value: u8, offset: usize },

    /// A string that is not UTF-8.
    #[error("string at offset {offset} is not UTF-8")]
    BadUtf8 { offset: usize },

    /// A list count larger than the bytes left could hold.
    #[error("list of {count} items at offset {offset} cannot fit in the {remaining} bytes left")]
    CountTooLarge {
        count: u32,
        offset: usize,
        remaining: usize,
    },

    /// Bytes left over after the value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes { count: usize },

    /// A snapshot image that does not start with the expected magic.
    #[error("not a {what} snapshot image (bad magic)")]
    BadMagic { what: &'static str },

    /// A format version this build does not read.
    #[error("unsupported {what} format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        what: &'static str,
        found: u8,
        supported: u8,
    },

    /// Well-formed bytes describing an impossible state (a snapshot with a
    /// duplicate key, a lock partition index out of range, ...).
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// Appends values to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A length or count. Values never exceed `u32::MAX` in practice (every
    /// string and list is bounded far below by the limits); a larger one is
    /// saturated, which the decoder then refuses as truncated input.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.bytes(s.as_bytes());
    }

    pub(crate) fn put<T: Wire>(&mut self, v: &T) {
        v.put(self);
    }
}

/// Reads values from a complete slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let bytes = rest.get(..n).ok_or(CodecError::Truncated {
            offset: self.pos,
            needed: n.saturating_sub(rest.len()),
        })?;
        self.pos = self.pos.saturating_add(n);
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let offset = self.pos;
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| CodecError::Truncated { offset, needed: N })
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    pub(crate) fn bool(&mut self) -> Result<bool, CodecError> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(CodecError::BadBool { value, offset }),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        self.array().map(i64::from_le_bytes)
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        let len = self.u32()?;
        let offset = self.pos;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CodecError::BadUtf8 { offset })
    }

    /// A list count, checked against the bytes left: each item takes at least
    /// `min_item_bytes` (at least 1), so a count the input cannot hold is
    /// refused before anything is allocated.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, CodecError> {
        let offset = self.pos;
        let count = self.u32()?;
        let remaining = self.remaining();
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        if n > remaining / min_item_bytes.max(1) {
            return Err(CodecError::CountTooLarge {
                count,
                offset,
                remaining,
            });
        }
        Ok(n)
    }

    pub(crate) fn get<T: Wire>(&mut self) -> Result<T, CodecError> {
        T::get(self)
    }

    /// Refuses trailing bytes.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(CodecError::TrailingBytes { count }),
        }
    }

    pub(crate) fn unknown_tag(&self, what: &'static str, tag: u8) -> CodecError {
        CodecError::UnknownTag {
            what,
            tag,
            offset: self.pos.saturating_sub(1),
        }
    }
}

/// A value with a binary encoding.
pub(crate) trait Wire: Sized {
    /// The fewest bytes one encoded value takes (bounds list counts).
    const MIN_BYTES: usize;
    fn put(&self, w: &mut Writer);
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError>;
}

impl Wire for u32 {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.u32(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u32()
    }
}

impl Wire for u64 {
    const MIN_BYTES: usize = 8;
    fn put(&self, w: &mut Writer) {
        w.u64(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.u64()
    }
}

impl Wire for i64 {
    const MIN_BYTES: usize = 8;
    fn put(&self, w: &mut Writer) {
        w.i64(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.i64()
    }
}

impl Wire for String {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.str(self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        r.string()
    }
}

impl<T: Wire> Wire for Vec<T> {
    const MIN_BYTES: usize = 4;
    fn put(&self, w: &mut Writer) {
        w.len(self.len());
        for item in self {
            item.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let n = r.count(T::MIN_BYTES)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(T::get(r)?);
        }
        Ok(items)
    }
}

impl<T: Wire> Wire for Option<T> {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            None => w.u8(0),
            Some(v) => {
                w.u8(1);
                v.put(w);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            tag => Err(r.unknown_tag("option", tag)),
        }
    }
}

/// Seata's enums travel as their wire codes.
macro_rules! wire_code_enum {
    ($ty:ty, $what:literal) => {
        impl Wire for $ty {
            const MIN_BYTES: usize = 1;
            fn put(&self, w: &mut Writer) {
                w.u8(self.code());
            }
            fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
                let code = r.u8()?;
                <$ty>::from_code(code).ok_or_else(|| r.unknown_tag($what, code))
            }
        }
    };
}

wire_code_enum!(GlobalStatus, "GlobalStatus");
wire_code_enum!(BranchStatus, "BranchStatus");
wire_code_enum!(BranchType, "BranchType");

/// Decodes one value that must span the whole input.
pub(crate) fn decode_all<T: Wire>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut r = Reader::new(bytes);
    let v = T::get(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Encodes one value.
pub(crate) fn encode_one<T: Wire>(v: &T) -> Vec<u8> {
    let mut w = Writer::new();
    v.put(&mut w);
    w.into_vec()
}
