//! Transaction ids, XIDs, and which partition owns what.
//!
//! **Transaction ids** are made by the (future) async layer, not by the state
//! machine: a TC node numbers its transactions with a counter and puts its
//! node id in the high bits ([`make_transaction_id`]), so ids from different
//! TC nodes never collide (Seata's `UUIDGenerator` is a snowflake with a
//! 10-bit worker id; colliding worker ids across TCs caused Seata #2186).
//! Layout, most significant bit first:
//!
//! ```text
//! 0 | node_id: 16 bits | counter: 47 bits
//! ```
//!
//! The top bit stays 0 so every id is a positive Java `long`, which is what
//! Seata's clients parse out of an XID. 2^47 ids per node is 4.5 years at a
//! million transactions per second; the counter must not wrap (the async
//! layer persists or derives it, e.g. from the raft log index or the clock).
//!
//! **XID** = `ip:port:transactionId`, Seata's format (`XID.generateXID`). The
//! host may itself contain `:` (an IPv6 address), so parsing works from the
//! right, as Seata's `XID.getTransactionId` does with `lastIndexOf(':')`.
//!
//! **Placement.** Global sessions live in session partition
//! [`session_partition_of`]`(transaction_id)`; a row lock lives in lock
//! partition [`lock_partition_of`]`(row_key)`. Both hash functions are part
//! of the on-disk contract (changing them moves sessions and locks to other
//! raft groups) and are fixed here: FNV-1a 64 over the row key's bytes, then
//! the SplitMix64 finaliser, then modulo the partition count.

/// Bits of the per-node counter in a transaction id.
pub const TRANSACTION_ID_COUNTER_BITS: u32 = 47;

/// The largest counter value [`make_transaction_id`] keeps; higher bits of
/// the counter are dropped.
pub const MAX_TRANSACTION_ID_COUNTER: u64 = (1 << TRANSACTION_ID_COUNTER_BITS) - 1;

/// The transaction id of the `counter`-th transaction begun by TC node
/// `node_id`: `node_id << 47 | counter`. Only the low 47 bits of `counter`
/// are used (see the module docs: the counter must not exceed
/// [`MAX_TRANSACTION_ID_COUNTER`]). The result is always below 2^63, a
/// positive Java `long`.
pub const fn make_transaction_id(node_id: u16, counter: u64) -> u64 {
    ((node_id as u64) << TRANSACTION_ID_COUNTER_BITS) | (counter & MAX_TRANSACTION_ID_COUNTER)
}

/// The node id and counter a transaction id was made from (the inverse of
/// [`make_transaction_id`] for ids below 2^63).
pub const fn transaction_id_parts(transaction_id: u64) -> (u16, u64) {
    (
        ((transaction_id >> TRANSACTION_ID_COUNTER_BITS) & 0xffff) as u16,
        transaction_id & MAX_TRANSACTION_ID_COUNTER,
    )
}

/// `host:port:transaction_id`, Seata's XID.
pub fn make_xid(host: &str, port: u16, transaction_id: u64) -> String {
    format!("{host}:{port}:{transaction_id}")
}

/// Splits an XID into `(host, port, transaction_id)`.
///
/// `None` unless the XID is `host:port:transaction_id` with a non-empty host
/// (which may contain `:`), a port of decimal digits that fits a `u16`, and
/// a transaction id of decimal digits that fits a Java `long` (at most
/// 2^63 - 1). No sign, no spaces.
pub fn parse_xid(xid: &str) -> Option<(&str, u16, u64)> {
    let (rest, tid) = xid.rsplit_once(':')?;
    let (host, port) = rest.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    let port: u16 = parse_digits(port)?.try_into().ok()?;
    let tid = parse_digits(tid)?;
    if tid > i64::MAX as u64 {
        return None;
    }
    Some((host, port, tid))
}

/// A non-empty run of ASCII digits as a `u64` (`str::parse` would also take
/// a leading `+`).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash: u64, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The SplitMix64 finaliser: spreads every input bit over the low bits that
/// the modulo keeps.
const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The lock partition of a row key (`resourceId^^^table^^^pk`) among
/// `partitions` (0 is treated as 1).
pub fn lock_partition_of(row_key: &str, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    // The remainder is below `partitions`, so it fits.
    u32::try_from(mix64(fnv1a64(row_key.as_bytes())) % n).unwrap_or(0)
}

/// The session partition of a transaction id among `partitions` (0 is
/// treated as 1).
pub fn session_partition_of(transaction_id: u64, partitions: u32) -> u32 {
    let n = u64::from(partitions.max(1));
    u32::try_from(mix64(transaction_id) % n).unwrap_or(0)
}
