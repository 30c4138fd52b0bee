//! Row images: the SQL that reads them, their primary keys, the lock keys
//! they give, and their comparison (dirty check).

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::{DbKind, Rows};
use crate::error::AtError;

/// `"a", "b", "c"`.
pub(crate) fn column_list(kind: DbKind, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| kind.quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The primary key values of every row of `image`, in row order. A NULL in
/// a key column is an error.
pub(crate) fn pk_values(image: &Rows, pk: &[String]) -> Result<Vec<Vec<String>>, AtError> {
    let idx = pk
        .iter()
        .map(|c| {
            image.column_index(c).ok_or_else(|| {
                AtError::Image(format!("primary key column {c} missing from an image"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    image
        .rows
        .iter()
        .map(|r| {
            idx.iter()
                .map(|&i| {
                    r.get(i)
                        .cloned()
                        .flatten()
                        .ok_or_else(|| AtError::Image("NULL in a primary key column".into()))
                })
                .collect()
        })
        .collect()
}

/// A condition selecting exactly the rows with these key values:
/// `"id" IN ('1', '2')` or `("a" = '1' AND "b" = 'x') OR (...)`.
pub(crate) fn pk_condition(kind: DbKind, pk: &[String], keys: &[Vec<String>]) -> String {
    if keys.is_empty() {
        return "1 = 0".to_owned();
    }
    if let [col] = pk {
        let list = keys
            .iter()
            .filter_map(|k| k.first())
            .map(|v| kind.literal(Some(v)))
            .collect::<Vec<_>>()
            .join(", ");
        return format!("{} IN ({list})", kind.quote_ident(col));
    }
    keys.iter()
        .map(|k| {
            let parts = pk
                .iter()
                .zip(k)
                .map(|(c, v)| format!("{} = {}", kind.quote_ident(c), kind.literal(Some(v))))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!("({parts})")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Lock keys of one local transaction, Seata's format:
/// `table:pk1,pk2;table2:pk3`, composite key values joined with `_`.
#[derive(Debug, Default, Clone)]
pub(crate) struct LockKeys {
    tables: BTreeMap<String, BTreeSet<String>>,
}

impl LockKeys {
    pub fn add(&mut self, table: &str, image: &Rows, pk: &[String]) -> Result<(), AtError> {
        let keys = pk_values(image, pk)?;
        if keys.is_empty() {
            return Ok(());
        }
        let set = self.tables.entry(table.to_owned()).or_default();
        for k in keys {
            set.insert(k.join("_"));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn render(&self) -> String {
        self.tables
            .iter()
            .map(|(t, pks)| format!("{t}:{}", pks.iter().cloned().collect::<Vec<_>>().join(",")))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Same rows (same columns, same values), whatever their order.
pub(crate) fn same_rows(a: &Rows, b: &Rows) -> bool {
    if a.columns.len() != b.columns.len() || a.rows.len() != b.rows.len() {
        return false;
    }
    // Align b's columns on a's by name.
    let mut map = Vec::with_capacity(a.columns.len());
    for c in &a.columns {
        match b.column_index(c) {
            Some(i) => map.push(i),
            None => return false,
        }
    }
    let mut ra: Vec<&Vec<Option<String>>> = a.rows.iter().collect();
    let mut rb: Vec<Vec<Option<String>>> = b
        .rows
        .iter()
        .map(|r| map.iter().map(|&i| r.get(i).cloned().flatten()).collect())
        .collect();
    ra.sort();
    rb.sort();
    ra.iter().zip(rb.iter()).all(|(x, y)| *x == y)
}

/// Short description of the difference, for logs.
pub(crate) fn describe(rows: &Rows) -> String {
    let mut s = format!("{:?}", rows.rows);
    if s.len() > 512 {
        let mut cut = 512;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cols: &[&str], data: &[&[Option<&str>]]) -> Rows {
        Rows {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: data
                .iter()
                .map(|r| r.iter().map(|v| v.map(str::to_owned)).collect())
                .collect(),
        }
    }

    #[test]
    fn lock_keys_use_seata_format() {
        let mut k = LockKeys::default();
        let img = rows(
            &["a", "b", "v"],
            &[&[Some("1"), Some("x"), None], &[Some("2"), Some("y"), None]],
        );
        k.add("t1", &img, &["a".into(), "b".into()]).expect("add");
        k.add("t0", &rows(&["id"], &[&[Some("7")]]), &["id".into()])
            .expect("add");
        assert_eq!(k.render(), "t0:7;t1:1_x,2_y");
    }

    #[test]
    fn literals_cannot_escape() {
        assert_eq!(DbKind::Postgres.literal(Some("a'b\\")), "'a''b\\'");
        assert_eq!(DbKind::MySql.literal(Some("a'")), "_utf8mb4 X'6127'");
        assert_eq!(DbKind::MySql.quote_ident("a`b"), "`a``b`");
        assert_eq!(DbKind::Postgres.quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn comparison_ignores_order() {
        let a = rows(&["id", "v"], &[&[Some("1"), Some("x")], &[Some("2"), None]]);
        let b = rows(&["v", "id"], &[&[None, Some("2")], &[Some("x"), Some("1")]]);
        assert!(same_rows(&a, &b));
        let c = rows(&["id", "v"], &[&[Some("1"), Some("y")], &[Some("2"), None]]);
        assert!(!same_rows(&a, &c));
    }
}
