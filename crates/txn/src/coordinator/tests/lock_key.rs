//! Seata lock key parsing.

use super::*;

fn parse(lock_key: &str) -> Result<Vec<String>, LockKeyError> {
    parse_lock_key("res", lock_key, &LockKeyLimits::default())
        .map(|rows| rows.iter().map(RowKey::row_key).collect())
}

#[test]
fn lock_keys_become_row_keys() {
    assert_eq!(
        parse("t_order:1,2;t_item:a_b").unwrap(),
        vec![
            "res^^^t_item^^^a_b",
            "res^^^t_order^^^1",
            "res^^^t_order^^^2"
        ]
    );
    // Blank lock keys lock nothing; blank primary keys are skipped;
    // duplicates merge; trailing ';' are ignored; the table ends at the
    // first ':'.
    assert!(parse("").unwrap().is_empty());
    assert!(parse(" \t").unwrap().is_empty());
    assert_eq!(parse("t:1, ,1,;").unwrap(), vec!["res^^^t^^^1"]);
    assert_eq!(parse("t:1;;;").unwrap(), vec!["res^^^t^^^1"]);
    assert_eq!(parse("t:a:b").unwrap(), vec!["res^^^t^^^a:b"]);
    let rows = parse_lock_key("res", "t:9,10", &LockKeyLimits::default()).unwrap();
    assert_eq!(rows[0], RowKey::new("res", "t", "10"));
}

#[test]
fn malformed_lock_keys_are_refused_naming_the_group() {
    assert_eq!(
        parse("t:1;;u:2"),
        Err(LockKeyError::EmptyGroup { group: 1 })
    );
    assert_eq!(parse("t:1;u"), Err(LockKeyError::MissingColon { group: 1 }));
    assert_eq!(parse(" :1"), Err(LockKeyError::EmptyTable { group: 0 }));
    assert_eq!(
        parse("t:1;u: , "),
        Err(LockKeyError::NoPrimaryKey { group: 1 })
    );
    assert_eq!(
        parse("t^^^x:1"),
        Err(LockKeyError::ReservedSeparator { group: 0 })
    );
    assert_eq!(
        parse("t:1^^^2"),
        Err(LockKeyError::ReservedSeparator { group: 0 })
    );
    assert_eq!(
        parse_lock_key("a^^^b", "t:1", &LockKeyLimits::default()),
        Err(LockKeyError::ResourceIdSeparator)
    );
}

#[test]
fn lock_key_limits() {
    let limits = LockKeyLimits {
        max_lock_keys_per_branch: 3,
        max_row_key_bytes: 16,
        max_lock_key_bytes: 64,
    };
    assert_eq!(parse_lock_key("r", "t:1,2,3", &limits).unwrap().len(), 3);
    assert_eq!(
        parse_lock_key("r", "t:1,2;u:3,4", &limits),
        Err(LockKeyError::TooManyKeys { limit: 3 })
    );
    // "r^^^t^^^" is 8 bytes: a 9-byte pk makes 17.
    assert_eq!(parse_lock_key("r", "t:12345678", &limits).unwrap().len(), 1);
    assert_eq!(
        parse_lock_key("r", "t:1;t:123456789", &limits),
        Err(LockKeyError::RowKeyTooLong {
            group: 1,
            bytes: 17,
            limit: 16
        })
    );
    assert_eq!(
        parse_lock_key("r", &"t:1,".repeat(20), &limits),
        Err(LockKeyError::LockKeyTooLong {
            bytes: 80,
            limit: 64
        })
    );
    // The default limit is Seata-sized: 10,000 keys.
    let many: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let key = format!("t:{}", many.join(","));
    assert_eq!(
        parse_lock_key("r", &key, &LockKeyLimits::default()),
        Err(LockKeyError::TooManyKeys { limit: 10_000 })
    );
}

#[test]
fn plans_group_rows_by_ascending_partition() {
    let rows = parse_lock_key("res", "t:1,2,3,4,5,6,7,8,9", &LockKeyLimits::default()).unwrap();
    let plan = plan_by_partition(rows, 3);
    assert!(plan.windows(2).all(|w| w[0].partition < w[1].partition));
    let mut total = 0;
    for part in &plan {
        assert!(!part.rows.is_empty());
        for row in &part.rows {
            assert_eq!(lock_partition_of(&row.row_key(), 3), part.partition);
        }
        assert!(
            part.rows
                .windows(2)
                .all(|w| w[0].row_key() < w[1].row_key())
        );
        total += part.rows.len();
    }
    assert_eq!(total, 9);
}
