//! Transaction ids, XIDs and placement.

use super::*;

#[test]
fn transaction_ids_carry_the_node_in_the_high_bits() {
    let tid = make_transaction_id(3, 42);
    assert_eq!(tid, (3 << 47) | 42);
    assert_eq!(transaction_id_parts(tid), (3, 42));
    // Always a positive Java long.
    let max = make_transaction_id(u16::MAX, u64::MAX);
    assert!(max <= i64::MAX as u64);
    assert_eq!(
        transaction_id_parts(max),
        (u16::MAX, MAX_TRANSACTION_ID_COUNTER)
    );
    // Different nodes never collide.
    assert_ne!(make_transaction_id(1, 7), make_transaction_id(2, 7));
    // Counter bits above 47 are dropped.
    assert_eq!(
        make_transaction_id(1, (1 << 47) | 5),
        make_transaction_id(1, 5)
    );
}

#[test]
fn xids_parse_from_the_right() {
    let xid = make_xid("192.168.0.1", 8091, 2_000_000_123);
    assert_eq!(xid, "192.168.0.1:8091:2000000123");
    assert_eq!(parse_xid(&xid), Some(("192.168.0.1", 8091, 2_000_000_123)));
    // An IPv6 host keeps its colons.
    assert_eq!(parse_xid("fe80::1:8091:9"), Some(("fe80::1", 8091, 9)));
    assert_eq!(
        parse_xid(&format!("h:1:{}", i64::MAX)),
        Some(("h", 1, i64::MAX as u64))
    );
    for bad in [
        "",
        "h",
        "h:1",
        ":1:2",
        "h::2",
        "h:1:",
        "h:65536:2",
        "h:1:+2",
        "h:-1:2",
        "h:1:2 ",
        "h:1:9223372036854775808",
        "h:x:2",
    ] {
        assert_eq!(parse_xid(bad), None, "{bad:?}");
    }
}

#[test]
fn placement_is_stable_and_in_range() {
    // Fixed values: the hash is part of the on-disk contract.
    let row = "jdbc:mysql://db/orders^^^t^^^1";
    assert_eq!(lock_partition_of(row, 16), 14);
    assert_eq!(lock_partition_of(row, 1_000), 638);
    assert_eq!(session_partition_of(make_transaction_id(1, 1), 16), 12);
    assert_eq!(session_partition_of(make_transaction_id(1, 1), 1_000), 644);
    assert_eq!(lock_partition_of(row, 0), 0);
    assert_eq!(lock_partition_of(row, 1), 0);
    assert_eq!(session_partition_of(12345, 1), 0);
    // Spread: 3 partitions all used by a few hundred rows and ids.
    let mut rows = [0u32; 3];
    let mut sessions = [0u32; 3];
    for i in 0..300u64 {
        rows[lock_partition_of(&format!("r^^^t^^^{i}"), 3) as usize] += 1;
        sessions[session_partition_of(make_transaction_id(1, i), 3) as usize] += 1;
    }
    assert!(rows.iter().all(|&n| n > 60), "{rows:?}");
    assert!(sessions.iter().all(|&n| n > 60), "{sessions:?}");
}
