//! `RESP2` (Redis serialization protocol, version 2) codec.
//!
//! The server side reads client commands with [`parse_command`] and writes replies with
//! [`Value::encode`]; the client side writes commands with [`encode_command`] and reads replies
//! with [`parse_value`].
//!
//! # Wire format
//!
//! * Client commands are either a multibulk array of bulk strings
//!   (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or an inline line (`PING\r\n`, `SET a b\n`). As in Redis,
//!   the first byte decides: `*` means multibulk, anything else inline.
//! * Replies are `+simple`, `-error`, `:integer`, `$len` bulk strings (`$-1` is nil) and `*n`
//!   arrays (`*-1` is the nil array).
//!
//! # Safety against hostile peers
//!
//! The parsers are stateless: they are handed the bytes read so far, return `Ok(None)` while the
//! input is a prefix of a valid message and re-parse from the start on the next call. A
//! prefix of a message that parses successfully never produces an error. Declared lengths and
//! counts are checked against [`RespLimits`] as soon as they are read, before their data arrives,
//! and nothing is preallocated from a declared count until the whole message is known to be
//! present, so memory use is bounded by the input size. Incomplete input is only scanned, never
//! copied; bulk strings are copied once, when the message is complete. The parsers never panic
//! and never recurse (nesting is handled with an explicit stack).
//!
//! # Differences from Redis
//!
//! Redis is lenient in a few places where this codec is strict: it requires `\r\n` (not just `\r`
//! followed by any byte) after every length line, `\r\n` after every bulk string, rejects
//! negative multibulk counts other than `-1` (Redis treats every count `<= 0` as an empty
//! command), and reports an over-long length line as soon as it is longer than any valid number
//! (20 bytes) or contains a byte that cannot appear in one. Inline lines are split exactly like
//! Redis's `sdssplitargs`, which works on C strings: a NUL byte ends the line's content (the
//! rest of the line up to the newline is consumed and ignored).

use bytes::Bytes;

/// Limits on what a peer may send, each named with its unit.
#[derive(Clone, Copy, Debug)]
pub struct RespLimits {
    /// Size in bytes of one whole command (all arguments plus framing), and the largest bulk
    /// string or status line accepted in a reply. Default 8 MiB.
    pub max_request_bytes: usize,
    /// Number of elements in one command array or reply array. Default 1 048 576 (2^20).
    pub max_args: usize,
    /// Size in bytes of one inline command line, terminator included. Default 64 KiB.
    pub max_inline_bytes: usize,
    /// Nesting depth of arrays when parsing replies (a top-level array has depth 1). Default 8.
    pub max_depth: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            max_request_bytes: 8 * 1024 * 1024,
            max_args: 1_048_576,
            max_inline_bytes: 64 * 1024,
            max_depth: 8,
        }
    }
}

/// What a [`RespError::TooLarge`] is about: a whole multibulk command (bytes).
const WHAT_REQUEST: &str = "request";
/// A single bulk string (bytes).
const WHAT_BULK: &str = "bulk string";
/// A single inline command line (bytes).
const WHAT_INLINE: &str = "inline request";
/// A `+` or `-` reply line (bytes).
const WHAT_STATUS: &str = "status line";
/// The arguments of one command (arguments).
const WHAT_COMMAND: &str = "command";
/// The elements of one reply array (elements).
const WHAT_ARRAY: &str = "array";
/// Nested reply arrays (levels).
const WHAT_NESTING: &str = "nesting";

/// The unit in which the limit named by `what` is counted.
fn limit_unit(what: &str) -> &'static str {
    match what {
        WHAT_COMMAND => "arguments",
        WHAT_ARRAY => "elements",
        WHAT_NESTING => "levels",
        _ => "bytes",
    }
}

/// Why input could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RespError {
    /// Malformed input: the connection must be closed after replying with this message.
    #[error("Protocol error: {0}")]
    Protocol(String),
    /// A limit was exceeded; names the limit and the sizes. `what` is one of `"request"`,
    /// `"bulk string"`, `"inline request"`, `"status line"` (counted in bytes), `"command"`
    /// (arguments), `"array"` (elements) or `"nesting"` (levels). The connection must be closed
    /// after replying with this message.
    #[error(
        "Protocol error: {what} of {got} {unit} exceeds the limit of {limit} {unit}",
        unit = limit_unit(.what)
    )]
    TooLarge {
        what: &'static str,
        got: usize,
        limit: usize,
    },
}

fn protocol(msg: &str) -> RespError {
    RespError::Protocol(msg.to_owned())
}

fn too_large(what: &'static str, got: usize, limit: usize) -> RespError {
    RespError::TooLarge { what, got, limit }
}

const INVALID_MULTIBULK_LEN: &str = "invalid multibulk length";
const INVALID_BULK_LEN: &str = "invalid bulk length";
const INVALID_INTEGER: &str = "invalid integer";
const UNBALANCED_QUOTES: &str = "unbalanced quotes in request";
const EXPECTED_CRLF_AFTER_BULK: &str = "expected CRLF after bulk string";

/// Longest valid number line: `-9223372036854775808`.
const MAX_NUM_LEN: usize = 20;

/// Parses a decimal `i64` exactly like Redis's `string2ll`: optional `-`, no `+`, no leading
/// zeros, no `-0`, no surrounding spaces, overflow is an error.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'0') => return (digits.len() == 1 && !negative).then_some(0),
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// Reads a number line starting at `start` (just after the type byte) and terminated by
/// `\r\n`. Returns the number and the offset just past the `\r\n`. Fails with `err` as soon as
/// the line cannot become a valid number.
fn read_num_line(
    buf: &[u8],
    start: usize,
    err: &'static str,
) -> Result<Option<(i64, usize)>, RespError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = rest.get(..=MAX_NUM_LEN).unwrap_or(rest);
    let cr = window.iter().position(|&b| b == b'\r');
    let digits = match cr {
        Some(cr) => window.get(..cr).unwrap_or_default(),
        None => window,
    };
    if digits.iter().any(|&b| !(b.is_ascii_digit() || b == b'-')) {
        return Err(protocol(err));
    }
    let Some(cr) = cr else {
        return if rest.len() > MAX_NUM_LEN {
            Err(protocol(err))
        } else {
            Ok(None)
        };
    };
    match rest.get(cr.saturating_add(1)) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(protocol(err)),
    }
    let n = parse_i64(digits).ok_or_else(|| protocol(err))?;
    Ok(Some((n, start.saturating_add(cr).saturating_add(2))))
}

/// Checks that the bulk data `start..start + len` is present and followed by `\r\n`.
/// Returns the data and the offset just past the `\r\n`, `None` if more input is needed.
fn read_bulk_data(
    buf: &[u8],
    start: usize,
    len: usize,
) -> Result<Option<(&[u8], usize)>, RespError> {
    let end = start.saturating_add(len);
    let Some(data) = buf.get(start..end) else {
        return Ok(None);
    };
    let after = buf.get(end..).unwrap_or_default();
    let trailer = after.get(..2).unwrap_or(after);
    if !b"\r\n".starts_with(trailer) {
        return Err(protocol(EXPECTED_CRLF_AFTER_BULK));
    }
    if trailer.len() < 2 {
        return Ok(None);
    }
    Ok(Some((data, end.saturating_add(2))))
}

/// Parse one client command from the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some((args, consumed)))`: one command of `consumed`
/// bytes (always at least 1). Accepts both RESP arrays of bulk strings and inline commands with
/// Redis's quoting rules. An empty inline line, `*0\r\n` and `*-1\r\n` yield an empty `args`
/// (the caller ignores it).
///
/// # Errors
///
/// [`RespError::Protocol`] for malformed input and [`RespError::TooLarge`] when a limit is
/// exceeded. Either is fatal: reply with the error's message and close the connection.
pub fn parse_command(
    buf: &[u8],
    limits: &RespLimits,
) -> Result<Option<(Vec<Bytes>, usize)>, RespError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => {
            // First pass: validate and find the end without copying anything.
            let Some((count, consumed)) = parse_multibulk(buf, limits, None)? else {
                return Ok(None);
            };
            if count == 0 {
                return Ok(Some((Vec::new(), consumed)));
            }
            // Second pass: the whole command is present, so `count` is backed by real bytes.
            let mut args = Vec::with_capacity(count);
            match parse_multibulk(buf, limits, Some(&mut args))? {
                Some((_, consumed)) => Ok(Some((args, consumed))),
                None => Ok(None),
            }
        }
        Some(_) => parse_inline(buf, limits),
    }
}

/// Walks a multibulk command; pushes the arguments into `out` when given.
/// Returns the argument count and the bytes consumed.
fn parse_multibulk(
    buf: &[u8],
    limits: &RespLimits,
    mut out: Option<&mut Vec<Bytes>>,
) -> Result<Option<(usize, usize)>, RespError> {
    let Some((n, mut pos)) = read_num_line(buf, 1, INVALID_MULTIBULK_LEN)? else {
        return Ok(None);
    };
    if n == 0 || n == -1 {
        return Ok(Some((0, pos)));
    }
    let count = usize::try_from(n).map_err(|_| protocol(INVALID_MULTIBULK_LEN))?;
    if count > limits.max_args {
        return Err(too_large(WHAT_COMMAND, count, limits.max_args));
    }
    for _ in 0..count {
        let Some(&tag) = buf.get(pos) else {
            return Ok(None);
        };
        if tag != b'$' {
            return Err(RespError::Protocol(format!(
                "expected '$', got '{}'",
                tag.escape_ascii()
            )));
        }
        let Some((len, start)) = read_num_line(buf, pos.saturating_add(1), INVALID_BULK_LEN)?
        else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| protocol(INVALID_BULK_LEN))?;
        if len > limits.max_request_bytes {
            return Err(too_large(WHAT_BULK, len, limits.max_request_bytes));
        }
        let declared_end = start.saturating_add(len).saturating_add(2);
        if declared_end > limits.max_request_bytes {
            return Err(too_large(
                WHAT_REQUEST,
                declared_end,
                limits.max_request_bytes,
            ));
        }
        let Some((data, next)) = read_bulk_data(buf, start, len)? else {
            return Ok(None);
        };
        if let Some(args) = out.as_deref_mut() {
            args.push(Bytes::copy_from_slice(data));
        }
        pos = next;
    }
    Ok(Some((count, pos)))
}

/// Parses one inline command line (terminated by `\n`, optionally preceded by `\r`).
fn parse_inline(buf: &[u8], limits: &RespLimits) -> Result<Option<(Vec<Bytes>, usize)>, RespError> {
    let window = buf.get(..limits.max_inline_bytes).unwrap_or(buf);
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() < limits.max_inline_bytes {
            return Ok(None);
        }
        // The line is certainly too long; report its length as far as it is known.
        let got = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i.saturating_add(1));
        return Err(too_large(WHAT_INLINE, got, limits.max_inline_bytes));
    };
    let mut line = window.get(..newline).unwrap_or_default();
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_inline(line)?;
    if args.len() > limits.max_args {
        return Err(too_large(WHAT_COMMAND, args.len(), limits.max_args));
    }
    Ok(Some((args, newline.saturating_add(1))))
}

/// C's `isspace`.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b.wrapping_sub(b'0')),
        b'a'..=b'f' => Some(b.wrapping_sub(b'a').wrapping_add(10)),
        b'A'..=b'F' => Some(b.wrapping_sub(b'A').wrapping_add(10)),
        _ => None,
    }
}

/// Splits an inline line into arguments like Redis's `sdssplitargs`.
///
/// Arguments are separated by whitespace. `"..."` supports `\n \r \t \b \a \xHH` and `\<any>`
/// (the character itself); `'...'` supports only `\'`. A closing quote must be followed by
/// whitespace or the end of the line. The line ends at the first NUL byte.
fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, RespError> {
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => line.get(..nul).unwrap_or_default(),
        None => line,
    };
    // The byte at `i`, or NUL past the end, like reading a C string.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0usize;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p = p.saturating_add(1);
        }
        if at(p) == 0 {
            return Ok(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        let mut done = false;
        while !done {
            let c = at(p);
            if in_double {
                let escaped = at(p.saturating_add(1));
                let hex = (
                    hex_value(at(p.saturating_add(2))),
                    hex_value(at(p.saturating_add(3))),
                );
                if let (b'\\', b'x', (Some(hi), Some(lo))) = (c, escaped, hex) {
                    current.push(hi.wrapping_mul(16).wrapping_add(lo));
                    p = p.saturating_add(3);
                } else if c == b'\\' && escaped != 0 {
                    p = p.saturating_add(1);
                    current.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if escaped != 0 && !is_c_space(escaped) {
                        return Err(protocol(UNBALANCED_QUOTES));
                    }
                    done = true;
                } else if c == 0 {
                    return Err(protocol(UNBALANCED_QUOTES));
                } else {
                    current.push(c);
                }
            } else if in_single {
                let next = at(p.saturating_add(1));
                if c == b'\\' && next == b'\'' {
                    p = p.saturating_add(1);
                    current.push(b'\'');
                } else if c == b'\'' {
                    if next != 0 && !is_c_space(next) {
                        return Err(protocol(UNBALANCED_QUOTES));
                    }
                    done = true;
                } else if c == 0 {
                    return Err(protocol(UNBALANCED_QUOTES));
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => current.push(c),
                }
            }
            if at(p) != 0 {
                p = p.saturating_add(1);
            }
        }
        args.push(Bytes::from(current));
    }
}

/// A RESP2 value (replies, and what a client parses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`. Encoding replaces `\r` and `\n` by spaces.
    Simple(String),
    /// `-ERR ...`; the string excludes the leading `-`. Encoding replaces `\r` and `\n` by
    /// spaces.
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Bytes),
    /// `$-1`
    Nil,
    /// `*n` followed by `n` values.
    Array(Vec<Value>),
    /// `*-1`
    NilArray,
}

impl Value {
    /// `+OK`
    #[must_use]
    pub fn ok() -> Value {
        Value::Simple("OK".to_owned())
    }

    /// An error reply with `msg` used verbatim after the `-`, so it should start with the error
    /// code: `Value::error("ERR unknown command")`.
    #[must_use]
    pub fn error(msg: impl Into<String>) -> Value {
        Value::Error(msg.into())
    }

    /// Appends the wire form of `self` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => encode_line(out, b'+', s),
            Value::Error(s) => encode_line(out, b'-', s),
            Value::Integer(n) => {
                out.push(b':');
                push_i64(out, *n);
                out.extend_from_slice(b"\r\n");
            }
            Value::Bulk(data) => encode_bulk(out, data),
            Value::Nil => out.extend_from_slice(b"$-1\r\n"),
            Value::Array(items) => {
                push_header(out, b'*', items.len());
                for item in items {
                    item.encode(out);
                }
            }
            Value::NilArray => out.extend_from_slice(b"*-1\r\n"),
        }
    }

    /// The wire form of `self`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn encode_line(out: &mut Vec<u8>, tag: u8, s: &str) {
    out.push(tag);
    out.extend(s.bytes().map(|b| match b {
        b'\r' | b'\n' => b' ',
        other => other,
    }));
    out.extend_from_slice(b"\r\n");
}

fn encode_bulk(out: &mut Vec<u8>, data: &[u8]) {
    push_header(out, b'$', data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `<tag><len>\r\n`
fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    push_u64(out, u64::try_from(len).unwrap_or(u64::MAX));
    out.extend_from_slice(b"\r\n");
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; MAX_NUM_LEN];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        // `n % 10 < 10`, so the cast cannot truncate.
        *slot = b'0'.wrapping_add((n % 10) as u8);
        n /= 10;
        start = start.saturating_sub(1);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Encode a command (client side) as an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    push_header(out, b'*', args.len());
    for arg in args {
        encode_bulk(out, arg);
    }
}

/// One reply element as found on the wire, borrowing from the input.
enum Item<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    Bulk(&'a [u8]),
    Nil,
    NilArray,
    /// Header of an array of this many elements.
    Array(usize),
}

/// Reads one reply element (for arrays, only the header) at `pos`.
fn read_item<'a>(
    buf: &'a [u8],
    pos: usize,
    limits: &RespLimits,
) -> Result<Option<(Item<'a>, usize)>, RespError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let body = pos.saturating_add(1);
    match tag {
        b'+' | b'-' => {
            let Some((line, next)) = read_status_line(buf, body, limits)? else {
                return Ok(None);
            };
            let item = if tag == b'+' {
                Item::Simple(line)
            } else {
                Item::Error(line)
            };
            Ok(Some((item, next)))
        }
        b':' => Ok(
            read_num_line(buf, body, INVALID_INTEGER)?.map(|(n, next)| (Item::Integer(n), next))
        ),
        b'$' => {
            let Some((len, start)) = read_num_line(buf, body, INVALID_BULK_LEN)? else {
                return Ok(None);
            };
            if len == -1 {
                return Ok(Some((Item::Nil, start)));
            }
            let len = usize::try_from(len).map_err(|_| protocol(INVALID_BULK_LEN))?;
            if len > limits.max_request_bytes {
                return Err(too_large(WHAT_BULK, len, limits.max_request_bytes));
            }
            Ok(read_bulk_data(buf, start, len)?.map(|(data, next)| (Item::Bulk(data), next)))
        }
        b'*' => {
            let Some((n, next)) = read_num_line(buf, body, INVALID_MULTIBULK_LEN)? else {
                return Ok(None);
            };
            if n == -1 {
                return Ok(Some((Item::NilArray, next)));
            }
            let n = usize::try_from(n).map_err(|_| protocol(INVALID_MULTIBULK_LEN))?;
            if n > limits.max_args {
                return Err(too_large(WHAT_ARRAY, n, limits.max_args));
            }
            Ok(Some((Item::Array(n), next)))
        }
        other => Err(RespError::Protocol(format!(
            "invalid reply type byte '{}'",
            other.escape_ascii()
        ))),
    }
}

/// Reads a `+`/`-` line body starting at `start`, up to the first `\r\n`.
fn read_status_line<'a>(
    buf: &'a [u8],
    start: usize,
    limits: &RespLimits,
) -> Result<Option<(&'a [u8], usize)>, RespError> {
    let limit = limits.max_request_bytes;
    let rest = buf.get(start..).unwrap_or_default();
    // A line of at most `limit` bytes has its `\r\n` within the first `limit + 2` bytes.
    let window = rest.get(..limit.saturating_add(2)).unwrap_or(rest);
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(len) => Ok(Some((
            window.get(..len).unwrap_or_default(),
            start.saturating_add(len).saturating_add(2),
        ))),
        None if window.len() < rest.len() || rest.len() > limit.saturating_add(1) => {
            // More than `limit` bytes without a line end (a final `\r` could still start one
            // only if the line is at most `limit + 1` bytes, which is already too long).
            Err(too_large(WHAT_STATUS, rest.len(), limit))
        }
        None => Ok(None),
    }
}

fn item_to_value(item: Item<'_>) -> Value {
    match item {
        Item::Simple(s) => Value::Simple(String::from_utf8_lossy(s).into_owned()),
        Item::Error(s) => Value::Error(String::from_utf8_lossy(s).into_owned()),
        Item::Integer(n) => Value::Integer(n),
        Item::Bulk(data) => Value::Bulk(Bytes::copy_from_slice(data)),
        Item::Nil => Value::Nil,
        Item::NilArray => Value::NilArray,
        Item::Array(_) => Value::Array(Vec::new()),
    }
}

/// Parse one reply value (client side).
///
/// `Ok(None)`: incomplete, read more. `Ok(Some((value, consumed)))`: one value of `consumed`
/// bytes. Bulk string lengths are limited by `max_request_bytes`, array lengths by `max_args`
/// and array nesting by `max_depth`.
///
/// # Errors
///
/// [`RespError::Protocol`] for malformed input and [`RespError::TooLarge`] when a limit is
/// exceeded. Either is fatal for the connection.
pub fn parse_value(buf: &[u8], limits: &RespLimits) -> Result<Option<(Value, usize)>, RespError> {
    // First pass validates without allocating; the second builds the value.
    if walk_value(buf, limits, false)?.is_none() {
        return Ok(None);
    }
    walk_value(buf, limits, true)
}

/// Walks one reply value iteratively. Builds it only if `build` (otherwise the returned value
/// is a placeholder).
fn walk_value(
    buf: &[u8],
    limits: &RespLimits,
    build: bool,
) -> Result<Option<(Value, usize)>, RespError> {
    // Open arrays: elements read so far and elements still expected (always > 0).
    let mut stack: Vec<(Vec<Value>, usize)> = Vec::new();
    let mut pos = 0;
    loop {
        let Some((item, next)) = read_item(buf, pos, limits)? else {
            return Ok(None);
        };
        pos = next;
        if let Item::Array(n) = item {
            let depth = stack.len().saturating_add(1);
            if depth > limits.max_depth {
                return Err(too_large(WHAT_NESTING, depth, limits.max_depth));
            }
            if n > 0 {
                // Only the building pass preallocates: by then all `n` elements are present.
                let items = if build {
                    Vec::with_capacity(n)
                } else {
                    Vec::new()
                };
                stack.push((items, n));
                continue;
            }
        }
        let mut value = if build {
            item_to_value(item)
        } else {
            Value::Nil
        };
        // Attach the finished value to its parent, closing every array it completes.
        loop {
            let Some((items, remaining)) = stack.last_mut() else {
                return Ok(Some((value, pos)));
            };
            if build {
                items.push(value);
            }
            *remaining = remaining.saturating_sub(1);
            if *remaining > 0 {
                break;
            }
            let Some((items, _)) = stack.pop() else {
                break;
            };
            value = Value::Array(items);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lim() -> RespLimits {
        RespLimits::default()
    }

    fn small() -> RespLimits {
        RespLimits {
            max_request_bytes: 32,
            max_args: 3,
            max_inline_bytes: 16,
            max_depth: 2,
        }
    }

    fn cmd(buf: &[u8]) -> Result<Option<(Vec<Bytes>, usize)>, RespError> {
        parse_command(buf, &lim())
    }

    fn args_of(buf: &[u8]) -> Vec<Vec<u8>> {
        let (args, n) = cmd(buf).unwrap().unwrap();
        assert_eq!(
            n,
            buf.len(),
            "consumed of {:?}",
            buf.escape_ascii().to_string()
        );
        args.into_iter().map(|a| a.to_vec()).collect()
    }

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn proto_err(buf: &[u8]) -> String {
        match cmd(buf) {
            Err(RespError::Protocol(msg)) => msg,
            other => panic!("expected protocol error for {buf:?}, got {other:?}"),
        }
    }

    fn value_err(buf: &[u8]) -> RespError {
        parse_value(buf, &lim()).unwrap_err()
    }

    fn sample_values() -> Vec<Value> {
        vec![
            Value::ok(),
            Value::Simple(String::new()),
            Value::Simple("héllo wörld".to_owned()),
            Value::error("ERR unknown command 'foo'"),
            Value::Error(String::new()),
            Value::Integer(0),
            Value::Integer(42),
            Value::Integer(-7),
            Value::Integer(i64::MAX),
            Value::Integer(i64::MIN),
            Value::Bulk(Bytes::new()),
            Value::Bulk(Bytes::from_static(b"abc")),
            Value::Bulk(Bytes::from_static(b"a\r\nb\0\xff$*\r\n")),
            Value::Nil,
            Value::NilArray,
            Value::Array(vec![]),
            Value::Array(vec![
                Value::Integer(1),
                Value::Nil,
                Value::Bulk(Bytes::from_static(b"x")),
                Value::Array(vec![Value::NilArray, Value::Array(vec![]), Value::ok()]),
                Value::error("WRONGTYPE nope"),
            ]),
        ]
    }

    #[test]
    fn encodes_exact_wire_forms() {
        assert_eq!(Value::ok().to_bytes(), b"+OK\r\n");
        assert_eq!(Value::error("ERR x").to_bytes(), b"-ERR x\r\n");
        assert_eq!(Value::Integer(-12).to_bytes(), b":-12\r\n");
        assert_eq!(
            Value::Integer(i64::MIN).to_bytes(),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(
            Value::Bulk(Bytes::from_static(b"abc")).to_bytes(),
            b"$3\r\nabc\r\n"
        );
        assert_eq!(Value::Bulk(Bytes::new()).to_bytes(), b"$0\r\n\r\n");
        assert_eq!(Value::Nil.to_bytes(), b"$-1\r\n");
        assert_eq!(Value::NilArray.to_bytes(), b"*-1\r\n");
        assert_eq!(Value::Array(vec![]).to_bytes(), b"*0\r\n");
        assert_eq!(
            Value::Array(vec![Value::Integer(1), Value::Nil]).to_bytes(),
            b"*2\r\n:1\r\n$-1\r\n"
        );
        let mut out = b"prefix".to_vec();
        Value::ok().encode(&mut out);
        assert_eq!(out, b"prefix+OK\r\n");
    }

    #[test]
    fn encode_sanitizes_line_breaks() {
        assert_eq!(Value::error("ERR a\r\nb\nc").to_bytes(), b"-ERR a  b c\r\n");
        assert_eq!(Value::Simple("a\rb".to_owned()).to_bytes(), b"+a b\r\n");
    }

    #[test]
    fn round_trips_every_variant() {
        for value in sample_values() {
            let wire = value.to_bytes();
            let (parsed, n) = parse_value(&wire, &lim()).unwrap().unwrap();
            assert_eq!(parsed, value);
            assert_eq!(n, wire.len());
        }
    }

    #[test]
    fn pipelined_values() {
        let mut wire = Vec::new();
        for value in sample_values() {
            value.encode(&mut wire);
        }
        let mut rest = &wire[..];
        for value in sample_values() {
            let (parsed, n) = parse_value(rest, &lim()).unwrap().unwrap();
            assert_eq!(parsed, value);
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        assert_eq!(parse_value(rest, &lim()), Ok(None));
    }

    #[test]
    fn encode_command_round_trips() {
        let args: [&[u8]; 3] = [b"SET", b"key", b"va\r\nl\0ue"];
        let mut wire = Vec::new();
        encode_command(&args, &mut wire);
        assert_eq!(
            wire,
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$8\r\nva\r\nl\0ue\r\n"
        );
        let parsed: Vec<Vec<u8>> = args_of(&wire);
        assert_eq!(parsed, args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
        let mut empty = Vec::new();
        encode_command(&[], &mut empty);
        assert_eq!(empty, b"*0\r\n");
        assert_eq!(cmd(&empty), Ok(Some((vec![], 4))));
    }

    #[test]
    fn multibulk_commands() {
        assert_eq!(args_of(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), v(&["GET", "k"]));
        assert_eq!(args_of(b"*1\r\n$0\r\n\r\n"), v(&[""]));
        assert_eq!(cmd(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(cmd(b"*-1\r\n"), Ok(Some((vec![], 5))));
        assert_eq!(cmd(b""), Ok(None));
    }

    #[test]
    fn pipelined_commands() {
        let buf = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nECHO hi\r\n\r\n*1\r\n$2";
        let (a, n1) = cmd(buf).unwrap().unwrap();
        assert_eq!(a, vec![Bytes::from_static(b"PING")]);
        assert_eq!(n1, 14);
        let (b, n2) = cmd(&buf[n1..]).unwrap().unwrap();
        assert_eq!(
            b,
            vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]
        );
        assert_eq!(n2, 20);
        let (c, n3) = cmd(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!(
            c,
            vec![Bytes::from_static(b"ECHO"), Bytes::from_static(b"hi")]
        );
        assert_eq!(n3, 9);
        let (d, n4) = cmd(&buf[n1 + n2 + n3..]).unwrap().unwrap();
        assert!(d.is_empty());
        assert_eq!(n4, 2);
        assert_eq!(cmd(&buf[n1 + n2 + n3 + n4..]), Ok(None));
    }

    #[test]
    fn inline_commands() {
        assert_eq!(args_of(b"PING\r\n"), v(&["PING"]));
        assert_eq!(args_of(b"SET a b\n"), v(&["SET", "a", "b"]));
        assert_eq!(args_of(b"  SET \t a   b  \r\n"), v(&["SET", "a", "b"]));
        assert_eq!(args_of(b"\r\n"), Vec::<Vec<u8>>::new());
        assert_eq!(args_of(b"\n"), Vec::<Vec<u8>>::new());
        assert_eq!(args_of(b"   \t\r\n"), Vec::<Vec<u8>>::new());
        assert_eq!(cmd(b"PING"), Ok(None));
        assert_eq!(cmd(b"PING\r"), Ok(None));
        // An inner '\r' separates arguments, as in Redis.
        assert_eq!(args_of(b"a\rb\n"), v(&["a", "b"]));
        // A NUL ends the line's content, as with Redis's C strings.
        assert_eq!(args_of(b"GET k\0junk \"\n"), v(&["GET", "k"]));
    }

    #[test]
    fn inline_quotes_and_escapes() {
        assert_eq!(args_of(b"SET \"a b\" 'c d'\r\n"), v(&["SET", "a b", "c d"]));
        assert_eq!(
            args_of(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\q\\x41\\x4a\\x4\"\n"),
            vec![b"\n\r\t\x08\x07\\\"qAJx4".to_vec()]
        );
        assert_eq!(args_of(b"\"\\xff\\x00\"\n"), vec![b"\xff\0".to_vec()]);
        assert_eq!(args_of(b"'it\\'s' '\\n\\\"'\n"), v(&["it's", "\\n\\\""]));
        assert_eq!(args_of(b"\"\" ''\n"), v(&["", ""]));
        // Quotes in the middle of an unquoted word start a quoted part.
        assert_eq!(args_of(b"ab\"c d\" e\n"), v(&["abc d", "e"]));
        assert_eq!(args_of(b"\"a\"\t'b'\r\n"), v(&["a", "b"]));
        for bad in [
            &b"SET \"abc\r\n"[..],
            b"SET 'abc\n",
            b"\"a\"b\n",
            b"'a'b\n",
            b"\"abc\\\"\n",
            b"\"ab\0c\"\n",
        ] {
            assert_eq!(proto_err(bad), "unbalanced quotes in request", "{bad:?}");
        }
        assert_eq!(
            cmd(b"\"x\n").unwrap_err().to_string(),
            "Protocol error: unbalanced quotes in request"
        );
    }

    fn assert_prefixes_incomplete(wire: &[u8], limits: &RespLimits) {
        for cut in 0..wire.len() {
            assert_eq!(
                parse_command(&wire[..cut], limits),
                Ok(None),
                "command prefix {cut} of {:?}",
                wire.escape_ascii().to_string()
            );
        }
        let (_, n) = parse_command(wire, limits).unwrap().unwrap();
        assert_eq!(n, wire.len());
    }

    #[test]
    fn every_command_prefix_is_incomplete() {
        let mut big = Vec::new();
        encode_command(&[b"SET", b"key", &[b'\r'; 300], b""], &mut big);
        let cases: Vec<Vec<u8>> = vec![
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec(),
            b"*0\r\n".to_vec(),
            b"*-1\r\n".to_vec(),
            b"*1\r\n$0\r\n\r\n".to_vec(),
            big,
            b"PING\r\n".to_vec(),
            b"SET \"a\\x41 b\" 'c\\'d'\r\n".to_vec(),
            b"\r\n".to_vec(),
        ];
        for wire in &cases {
            assert_prefixes_incomplete(wire, &lim());
        }
        // Right at the limits.
        let tight = RespLimits {
            max_request_bytes: 20,
            max_args: 2,
            max_inline_bytes: 6,
            max_depth: 1,
        };
        assert_prefixes_incomplete(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &tight);
        assert_prefixes_incomplete(b"PING\r\n", &tight);
    }

    #[test]
    fn every_value_prefix_is_incomplete() {
        let mut deep = Value::Integer(1);
        for _ in 0..8 {
            deep = Value::Array(vec![deep, Value::Nil]);
        }
        let mut values = sample_values();
        values.push(deep);
        for value in values {
            let wire = value.to_bytes();
            for cut in 0..wire.len() {
                assert_eq!(
                    parse_value(&wire[..cut], &lim()),
                    Ok(None),
                    "{value:?} cut {cut}"
                );
            }
            assert_eq!(parse_value(&wire, &lim()), Ok(Some((value, wire.len()))));
        }
    }

    #[test]
    fn malformed_commands() {
        assert_eq!(proto_err(b"*1\r\n+foo\r\n"), "expected '$', got '+'");
        assert_eq!(proto_err(b"*1\r\n:1\r\n"), "expected '$', got ':'");
        assert_eq!(proto_err(b"*1\r\n\r\n"), "expected '$', got '\\r'");
        assert_eq!(
            proto_err(b"*1\r\n$3\r\nfooXY"),
            "expected CRLF after bulk string"
        );
        assert_eq!(
            proto_err(b"*1\r\n$3\r\nfoo\rX"),
            "expected CRLF after bulk string"
        );
        assert_eq!(
            proto_err(b"*1\r\n$3\r\nfooo"),
            "expected CRLF after bulk string"
        );
        assert_eq!(
            proto_err(b"*1\r\n$3\r\nfoo\n\r"),
            "expected CRLF after bulk string"
        );
        for bad_len in [
            "-1",
            "-2",
            "x",
            "",
            "+3",
            "03",
            "-0",
            "3 ",
            " 3",
            "99999999999999999999",
        ] {
            let buf = format!("*1\r\n${bad_len}\r\nfoo\r\n");
            assert_eq!(
                proto_err(buf.as_bytes()),
                "invalid bulk length",
                "{bad_len:?}"
            );
        }
        for bad_count in ["-2", "x", "", "+1", "01", "-0", "1x", "9223372036854775808"] {
            let buf = format!("*{bad_count}\r\n$3\r\nfoo\r\n");
            assert_eq!(
                proto_err(buf.as_bytes()),
                "invalid multibulk length",
                "{bad_count:?}"
            );
        }
        // A length line must end with CRLF, not a bare CR or LF.
        assert_eq!(proto_err(b"*1\rX$3\r\nfoo\r\n"), "invalid multibulk length");
        assert_eq!(proto_err(b"*1\n$3\r\nfoo\r\n"), "invalid multibulk length");
        assert_eq!(proto_err(b"*1\r\n$3\n"), "invalid bulk length");
        // Errors are reported without waiting for more input.
        assert_eq!(proto_err(b"*a"), "invalid multibulk length");
        assert_eq!(proto_err(b"*1\r\n$x"), "invalid bulk length");
        assert_eq!(
            proto_err(b"*111111111111111111111"),
            "invalid multibulk length"
        );
        assert_eq!(
            cmd(b"*1\r\nX").unwrap_err().to_string(),
            "Protocol error: expected '$', got 'X'"
        );
    }

    #[test]
    fn limits_are_enforced_before_the_data_arrives() {
        assert_eq!(
            cmd(b"*1\r\n$8388609\r\n"),
            Err(RespError::TooLarge {
                what: "bulk string",
                got: 8_388_609,
                limit: 8 * 1024 * 1024
            })
        );
        // 4 + 10 + 8388592 + 2 bytes is exactly the limit.
        assert_eq!(cmd(b"*1\r\n$8388592\r\n"), Ok(None));
        assert_eq!(
            cmd(b"*1\r\n$8388593\r\n"),
            Err(RespError::TooLarge {
                what: "request",
                got: 8_388_609,
                limit: 8 * 1024 * 1024
            })
        );
        assert_eq!(
            cmd(b"*1\r\n$9223372036854775807\r\n"),
            Err(RespError::TooLarge {
                what: "bulk string",
                got: 9_223_372_036_854_775_807,
                limit: 8 * 1024 * 1024
            })
        );
        let err = cmd(b"*1048577\r\n").unwrap_err();
        assert_eq!(
            err,
            RespError::TooLarge {
                what: "command",
                got: 1_048_577,
                limit: 1_048_576
            }
        );
        assert_eq!(
            err.to_string(),
            "Protocol error: command of 1048577 arguments exceeds the limit of 1048576 arguments"
        );
        assert_eq!(cmd(b"*1048576\r\n"), Ok(None));
        let s = small();
        assert_eq!(
            parse_command(b"*4\r\n", &s),
            Err(RespError::TooLarge {
                what: "command",
                got: 4,
                limit: 3
            })
        );
        // Cumulative size: 4 + (5 + 10 + 2) + (5 + 10 + 2) = 38 > 32.
        let err = parse_command(b"*2\r\n$10\r\n0123456789\r\n$10\r\n", &s).unwrap_err();
        assert_eq!(
            err,
            RespError::TooLarge {
                what: "request",
                got: 38,
                limit: 32
            }
        );
        assert_eq!(
            err.to_string(),
            "Protocol error: request of 38 bytes exceeds the limit of 32 bytes"
        );
        assert_eq!(
            parse_command(b"a b c d\n", &s),
            Err(RespError::TooLarge {
                what: "command",
                got: 4,
                limit: 3
            })
        );
    }

    #[test]
    fn inline_length_limit() {
        let s = small();
        assert_eq!(
            parse_command(b"0123456789abcde\n", &s).unwrap().unwrap().1,
            16
        );
        assert_eq!(parse_command(b"0123456789abcde", &s), Ok(None));
        assert_eq!(
            parse_command(b"0123456789abcdef", &s),
            Err(RespError::TooLarge {
                what: "inline request",
                got: 16,
                limit: 16
            })
        );
        assert_eq!(
            parse_command(b"0123456789abcdef\nPING\n", &s),
            Err(RespError::TooLarge {
                what: "inline request",
                got: 17,
                limit: 16
            })
        );
        let long = vec![b'a'; 64 * 1024];
        let err = cmd(&long).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Protocol error: inline request of 65536 bytes exceeds the limit of 65536 bytes"
        );
        assert_eq!(cmd(&long[1..]), Ok(None));
    }

    #[test]
    fn malformed_values() {
        assert_eq!(
            value_err(b"?x\r\n"),
            RespError::Protocol("invalid reply type byte '?'".to_owned())
        );
        assert_eq!(
            value_err(b"\n"),
            RespError::Protocol("invalid reply type byte '\\n'".to_owned())
        );
        assert_eq!(
            value_err(b":9223372036854775808\r\n"),
            protocol("invalid integer")
        );
        assert_eq!(
            value_err(b":-9223372036854775809\r\n"),
            protocol("invalid integer")
        );
        assert_eq!(value_err(b":1.5\r\n"), protocol("invalid integer"));
        assert_eq!(value_err(b":\r\n"), protocol("invalid integer"));
        assert_eq!(
            parse_value(b":-9223372036854775808\r\n", &lim())
                .unwrap()
                .unwrap()
                .0,
            Value::Integer(i64::MIN)
        );
        assert_eq!(value_err(b"$-2\r\n"), protocol("invalid bulk length"));
        assert_eq!(
            value_err(b"$3\r\nabcd\r\n"),
            protocol("expected CRLF after bulk string")
        );
        assert_eq!(value_err(b"*-2\r\n"), protocol("invalid multibulk length"));
        assert_eq!(
            value_err(b"*1\r\n?"),
            protocol("invalid reply type byte '?'")
        );
        assert_eq!(
            value_err(b"$8388609\r\n"),
            RespError::TooLarge {
                what: "bulk string",
                got: 8_388_609,
                limit: 8_388_608
            }
        );
        assert_eq!(
            value_err(b"*1048577\r\n"),
            RespError::TooLarge {
                what: "array",
                got: 1_048_577,
                limit: 1_048_576
            }
        );
        // Status lines may contain a lone CR but are bounded.
        assert_eq!(
            parse_value(b"+a\rb\r\n", &lim()),
            Ok(Some((Value::Simple("a\rb".to_owned()), 6)))
        );
        let s = small();
        let mut long = b"+".to_vec();
        long.extend_from_slice(&[b'x'; 40]);
        assert_eq!(
            parse_value(&long, &s),
            Err(RespError::TooLarge {
                what: "status line",
                got: 40,
                limit: 32
            })
        );
        assert_eq!(parse_value(&long[..34], &s), Ok(None));
        long.truncate(33);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_value(&long, &s).unwrap().unwrap().1, 35);
    }

    #[test]
    fn nesting_depth_is_limited() {
        let nested = |depth: usize| {
            let mut wire = b"*1\r\n".repeat(depth);
            wire.extend_from_slice(b":1\r\n");
            wire
        };
        let ok = nested(8);
        assert_eq!(parse_value(&ok, &lim()).unwrap().unwrap().1, ok.len());
        let err = parse_value(&nested(9), &lim()).unwrap_err();
        assert_eq!(
            err,
            RespError::TooLarge {
                what: "nesting",
                got: 9,
                limit: 8
            }
        );
        assert_eq!(
            err.to_string(),
            "Protocol error: nesting of 9 levels exceeds the limit of 8 levels"
        );
        // Rejected as soon as the offending header is read.
        assert!(parse_value(&b"*1\r\n".repeat(9), &lim()).is_err());
        assert_eq!(parse_value(&b"*1\r\n".repeat(8), &lim()), Ok(None));
        // Empty arrays count as a level; nil arrays do not.
        let s = small();
        assert!(parse_value(b"*1\r\n*1\r\n*0\r\n", &s).is_err());
        assert!(parse_value(b"*1\r\n*1\r\n*-1\r\n", &s).unwrap().is_some());
        // Siblings do not add depth.
        let wide = Value::Array(vec![Value::Array(vec![]); 3]);
        assert!(parse_value(&wide.to_bytes(), &s).unwrap().is_some());
    }

    /// xorshift64: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn byte(&mut self) -> u8 {
            const ALPHABET: &[u8] = b"*$+-:\r\n\r\n0123456789-1 \"'\\xaA\0\t";
            if self.below(4) == 0 {
                self.next() as u8
            } else {
                ALPHABET[self.below(ALPHABET.len())]
            }
        }
    }

    /// Parses `buf` every way there is and checks the invariants.
    fn check_no_panic(buf: &[u8], check_prefixes: bool) {
        for limits in [lim(), small()] {
            if let Ok(Some((args, n))) = parse_command(buf, &limits) {
                assert!(n > 0 && n <= buf.len(), "{buf:?}");
                assert_eq!(parse_command(&buf[..n], &limits), Ok(Some((args, n))));
                if check_prefixes {
                    for cut in 0..n {
                        assert_eq!(parse_command(&buf[..cut], &limits), Ok(None), "{buf:?}");
                    }
                }
            }
            if let Ok(Some((value, n))) = parse_value(buf, &limits) {
                assert!(n > 0 && n <= buf.len(), "{buf:?}");
                assert_eq!(
                    parse_value(&buf[..n], &limits),
                    Ok(Some((value.clone(), n)))
                );
                if check_prefixes {
                    for cut in 0..n {
                        assert_eq!(parse_value(&buf[..cut], &limits), Ok(None), "{buf:?}");
                    }
                }
                // Re-encoding is stable after one round (the first may repair UTF-8 and
                // replace line breaks in status lines).
                let again = value.to_bytes();
                let (reparsed, n2) = parse_value(&again, &lim()).unwrap().unwrap();
                assert_eq!(n2, again.len());
                assert_eq!(reparsed.to_bytes(), again);
            }
        }
    }

    #[test]
    fn fuzz_random_bytes() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let len = rng.below(48);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if rng.below(2) == 0 {
                // Start with a type byte so the interesting paths are reached.
                buf.insert(0, b"*$+-:"[rng.below(5)]);
            }
            check_no_panic(&buf, false);
        }
    }

    #[test]
    fn fuzz_mutated_commands() {
        let mut seeds: Vec<Vec<u8>> = vec![
            b"PING\r\n".to_vec(),
            b"SET \"a\\x41 b\" 'c\\'d' e\r\n".to_vec(),
            b"*0\r\n".to_vec(),
            b"*-1\r\n".to_vec(),
        ];
        for args in [
            &[&b"GET"[..], b"k"][..],
            &[b"SET", b"key", b"va\r\nlue"],
            &[b""],
            &[b"a", b"b", b"c", b"d"],
        ] {
            let mut wire = Vec::new();
            encode_command(args, &mut wire);
            seeds.push(wire);
        }
        for value in sample_values() {
            seeds.push(value.to_bytes());
        }
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..20_000 {
            let mut buf = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(3) {
                let at = rng.below(buf.len() + 1);
                match rng.below(6) {
                    0 if at < buf.len() => buf[at] = rng.byte(),
                    1 => buf.insert(at, rng.byte()),
                    2 if at < buf.len() => {
                        buf.remove(at);
                    }
                    3 => buf.truncate(at),
                    4 => {
                        let other = &seeds[rng.below(seeds.len())];
                        buf.extend_from_slice(other);
                    }
                    _ if at < buf.len() => buf[at] = buf[at].wrapping_add(1),
                    _ => {}
                }
            }
            check_no_panic(&buf, true);
        }
    }
}
