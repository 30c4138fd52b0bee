//! Parsing SQL text into a plan AT mode can protect (sqlparser, one dialect
//! per database). Only the shape is decided here; table metadata is checked
//! by the executor.

use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, Ident, LockType, ObjectName, ObjectNamePart, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableObject, TableWithJoins, UnaryOperator, Value,
};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::{Parser, ParserOptions};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::backend::DbKind;
use crate::error::AtError;

/// A table as named by a statement, identifiers normalized the way the
/// database resolves them (PostgreSQL folds unquoted names to lower case).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TableName {
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    /// `schema.table` or `table`: the table part of lock keys and messages.
    pub fn display(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The quoted SQL name.
    pub fn sql(&self, kind: DbKind) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", kind.quote_ident(s), kind.quote_ident(&self.name)),
            None => kind.quote_ident(&self.name),
        }
    }
}

/// A table reference in a FROM clause: its name and the alias as written.
#[derive(Clone, Debug)]
pub(crate) struct TableRef {
    pub table: TableName,
    pub alias: Option<String>,
}

impl TableRef {
    /// `"schema"."table" AS alias`.
    pub fn table_sql(&self, kind: DbKind) -> String {
        match &self.alias {
            Some(a) => format!("{} AS {a}", self.table.sql(kind)),
            None => self.table.sql(kind),
        }
    }
}

/// UPDATE or DELETE statements of one table (one, or several of a batch).
#[derive(Debug)]
pub(crate) struct DmlGroup {
    pub target: TableRef,
    /// WHERE clause of each statement as SQL text; `None`: all rows.
    pub wheres: Vec<Option<String>>,
    /// UPDATE: the assigned column names (normalized).
    pub set_columns: Vec<String>,
}

impl DmlGroup {
    /// The combined condition `(w1) OR (w2)`, or `None` for all rows.
    pub fn where_sql(&self) -> Option<String> {
        let mut parts = Vec::with_capacity(self.wheres.len());
        for w in &self.wheres {
            parts.push(format!("({})", w.as_ref()?));
        }
        Some(parts.join(" OR "))
    }
}

#[derive(Debug)]
pub(crate) struct InsertPlan {
    pub table: TableName,
    /// Insert column names (normalized); empty when the statement lists none.
    pub columns: Vec<String>,
    /// The VALUES rows: each value as SQL text, and whether it is a constant
    /// literal (safe to evaluate again to find the row).
    pub rows: Vec<Vec<InsertValue>>,
    /// The parsed statement (PostgreSQL appends `RETURNING` to it).
    pub statement: Box<Statement>,
}

#[derive(Debug)]
pub(crate) enum InsertValue {
    /// A number or string literal, as SQL text.
    Literal(String),
    /// `NULL` or `DEFAULT`: the database generates the value (auto increment).
    Generated,
    /// Any other expression.
    Expression,
}

#[derive(Debug)]
pub(crate) enum Plan {
    /// A statement that changes nothing AT mode must track (a plain SELECT).
    ReadOnly,
    Update(Vec<DmlGroup>),
    Delete(Vec<DmlGroup>),
    Insert(InsertPlan),
    SelectForUpdate {
        from: TableRef,
        where_sql: Option<String>,
    },
}

fn dialect(kind: DbKind) -> Box<dyn Dialect> {
    match kind {
        DbKind::Postgres => Box::new(PostgreSqlDialect {}),
        DbKind::MySql => Box::new(MySqlDialect {}),
    }
}

/// Parse and classify `sql` for a branch (or global lock mode).
pub(crate) fn plan(kind: DbKind, sql: &str) -> Result<Plan, AtError> {
    let d = dialect(kind);
    let tokens = Tokenizer::new(d.as_ref(), sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| AtError::Parse {
            message: e.to_string(),
            sql: sql.to_owned(),
        })?;
    if tokens.iter().any(|t| matches!(t, Token::Placeholder(_))) {
        return Err(AtError::Placeholder(sql.to_owned()));
    }
    let statements = Parser::new(d.as_ref())
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| AtError::Parse {
            message: e.to_string(),
            sql: sql.to_owned(),
        })?;
    match statements.len() {
        0 => Err(AtError::unsupported("empty statement", sql)),
        1 => {
            let Some(stmt) = statements.into_iter().next() else {
                return Err(AtError::unsupported("empty statement", sql));
            };
            single(kind, stmt, sql)
        }
        _ => batch(kind, statements, sql),
    }
}

fn single(kind: DbKind, stmt: Statement, sql: &str) -> Result<Plan, AtError> {
    match stmt {
        Statement::Update(_) => Ok(Plan::Update(vec![update_group(kind, &stmt, sql)?])),
        Statement::Delete(_) => Ok(Plan::Delete(vec![delete_group(kind, &stmt, sql)?])),
        Statement::Insert(_) => insert_plan(kind, stmt, sql).map(Plan::Insert),
        Statement::Query(ref q) => {
            if modifies_data(q) {
                return Err(AtError::unsupported(
                    "data-modifying WITH clauses and SELECT ... INTO",
                    sql,
                ));
            }
            if !q.locks.iter().any(|l| l.lock_type == LockType::Update) {
                return Ok(Plan::ReadOnly);
            }
            let SetExpr::Select(select) = q.body.as_ref() else {
                return Err(AtError::unsupported(
                    "SELECT ... FOR UPDATE must be a simple SELECT",
                    sql,
                ));
            };
            let [from] = select.from.as_slice() else {
                return Err(AtError::unsupported(
                    "SELECT ... FOR UPDATE must read exactly one table",
                    sql,
                ));
            };
            Ok(Plan::SelectForUpdate {
                from: single_table(kind, from, sql)?,
                where_sql: select.selection.as_ref().map(|e| e.to_string()),
            })
        }
        _ => Err(AtError::unsupported(
            "only INSERT, UPDATE, DELETE and SELECT are supported",
            sql,
        )),
    }
}

/// Does a query change data itself (a DML common table expression, a DML
/// body, `SELECT ... INTO`)? Functions with side effects cannot be seen.
fn modifies_data(q: &Query) -> bool {
    let ctes = q
        .with
        .as_ref()
        .is_some_and(|w| w.cte_tables.iter().any(|c| modifies_data(&c.query)));
    ctes || set_expr_modifies(&q.body)
}

fn set_expr_modifies(e: &SetExpr) -> bool {
    match e {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => true,
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::Query(q) => modifies_data(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_modifies(left) || set_expr_modifies(right)
        }
        _ => false,
    }
}

/// Seata 1.2.0 multi-statement batch: all UPDATE or all DELETE, grouped by
/// table (statements of one table share one before image).
fn batch(kind: DbKind, statements: Vec<Statement>, sql: &str) -> Result<Plan, AtError> {
    let all_update = statements.iter().all(|s| matches!(s, Statement::Update(_)));
    let all_delete = statements.iter().all(|s| matches!(s, Statement::Delete(_)));
    if !all_update && !all_delete {
        return Err(AtError::MixedBatch(sql.to_owned()));
    }
    let mut groups: Vec<DmlGroup> = Vec::new();
    for stmt in &statements {
        let g = if all_update {
            update_group(kind, stmt, sql)?
        } else {
            delete_group(kind, stmt, sql)?
        };
        match groups
            .iter_mut()
            .find(|x| x.target.table == g.target.table && x.target.alias == g.target.alias)
        {
            Some(existing) => {
                existing.wheres.extend(g.wheres);
                for c in g.set_columns {
                    if !existing.set_columns.contains(&c) {
                        existing.set_columns.push(c);
                    }
                }
            }
            None => groups.push(g),
        }
    }
    Ok(if all_update {
        Plan::Update(groups)
    } else {
        Plan::Delete(groups)
    })
}

fn update_group(kind: DbKind, stmt: &Statement, sql: &str) -> Result<DmlGroup, AtError> {
    let Statement::Update(u) = stmt else {
        return Err(AtError::unsupported("not an UPDATE", sql));
    };
    if u.from.is_some() {
        return Err(AtError::unsupported("UPDATE ... FROM (a join)", sql));
    }
    if u.returning.is_some() {
        return Err(AtError::unsupported("UPDATE ... RETURNING", sql));
    }
    if !u.order_by.is_empty() || u.limit.is_some() {
        return Err(AtError::unsupported("UPDATE with ORDER BY / LIMIT", sql));
    }
    let target = single_table(kind, &u.table, sql)?;
    let mut set_columns = Vec::new();
    for a in &u.assignments {
        let names: Vec<&ObjectName> = match &a.target {
            AssignmentTarget::ColumnName(n) => vec![n],
            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
        };
        for n in names {
            let Some(ObjectNamePart::Identifier(id)) = n.0.last() else {
                return Err(AtError::unsupported(
                    "UPDATE of a computed column name",
                    sql,
                ));
            };
            set_columns.push(normalize(kind, id));
        }
    }
    Ok(DmlGroup {
        target,
        wheres: vec![u.selection.as_ref().map(|e| e.to_string())],
        set_columns,
    })
}

fn delete_group(kind: DbKind, stmt: &Statement, sql: &str) -> Result<DmlGroup, AtError> {
    let Statement::Delete(d) = stmt else {
        return Err(AtError::unsupported("not a DELETE", sql));
    };
    if !d.tables.is_empty() || d.using.is_some() {
        return Err(AtError::unsupported("multi-table DELETE (a join)", sql));
    }
    if d.returning.is_some() {
        return Err(AtError::unsupported("DELETE ... RETURNING", sql));
    }
    if !d.order_by.is_empty() || d.limit.is_some() {
        return Err(AtError::unsupported("DELETE with ORDER BY / LIMIT", sql));
    }
    let from = match &d.from {
        FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => v,
    };
    let [from] = from.as_slice() else {
        return Err(AtError::unsupported("DELETE from several tables", sql));
    };
    Ok(DmlGroup {
        target: single_table(kind, from, sql)?,
        wheres: vec![d.selection.as_ref().map(|e| e.to_string())],
        set_columns: Vec::new(),
    })
}

fn insert_plan(kind: DbKind, stmt: Statement, sql: &str) -> Result<InsertPlan, AtError> {
    let Statement::Insert(ins) = &stmt else {
        return Err(AtError::unsupported("not an INSERT", sql));
    };
    if ins.on.is_some() {
        return Err(AtError::unsupported(
            "INSERT ... ON CONFLICT / ON DUPLICATE KEY UPDATE",
            sql,
        ));
    }
    if ins.returning.is_some() {
        return Err(AtError::unsupported("INSERT ... RETURNING", sql));
    }
    if ins.ignore || ins.replace_into || ins.or.is_some() {
        return Err(AtError::unsupported(
            "INSERT IGNORE / REPLACE / OR ...",
            sql,
        ));
    }
    if !ins.assignments.is_empty() {
        return Err(AtError::unsupported("INSERT ... SET", sql));
    }
    let TableObject::TableName(name) = &ins.table else {
        return Err(AtError::unsupported("INSERT into a table function", sql));
    };
    let table = table_name(kind, name, sql)?;
    let mut columns = Vec::with_capacity(ins.columns.len());
    for c in &ins.columns {
        let Some(ObjectNamePart::Identifier(id)) = c.0.last() else {
            return Err(AtError::unsupported("INSERT column is not a name", sql));
        };
        columns.push(normalize(kind, id));
    }
    let Some(source) = &ins.source else {
        return Err(AtError::unsupported("INSERT without VALUES", sql));
    };
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Err(AtError::unsupported("INSERT ... SELECT", sql));
    };
    if source.with.is_some() {
        return Err(AtError::unsupported("INSERT with a WITH clause", sql));
    }
    let rows = values
        .rows
        .iter()
        .map(|r| r.content.iter().map(insert_value).collect())
        .collect();
    Ok(InsertPlan {
        table,
        columns,
        rows,
        statement: Box::new(stmt),
    })
}

fn insert_value(e: &Expr) -> InsertValue {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => InsertValue::Generated,
            Value::Number(..)
            | Value::SingleQuotedString(_)
            | Value::DoubleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::NationalStringLiteral(_) => InsertValue::Literal(e.to_string()),
            _ => InsertValue::Expression,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } if matches!(expr.as_ref(), Expr::Value(v) if matches!(v.value, Value::Number(..))) => {
            InsertValue::Literal(e.to_string())
        }
        Expr::Identifier(id)
            if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("DEFAULT") =>
        {
            InsertValue::Generated
        }
        _ => InsertValue::Expression,
    }
}

/// PostgreSQL: the INSERT with `RETURNING <pk columns>` appended.
pub(crate) fn with_returning(stmt: &Statement, pk: &[String]) -> Option<String> {
    let Statement::Insert(ins) = stmt else {
        return None;
    };
    let mut ins = ins.clone();
    ins.returning = Some(
        pk.iter()
            .map(|c| SelectItem::UnnamedExpr(Expr::Identifier(Ident::with_quote('"', c))))
            .collect(),
    );
    Some(Statement::Insert(ins).to_string())
}

fn single_table(kind: DbKind, t: &TableWithJoins, sql: &str) -> Result<TableRef, AtError> {
    if !t.joins.is_empty() {
        return Err(AtError::unsupported("joins", sql));
    }
    let TableFactor::Table {
        name, alias, args, ..
    } = &t.relation
    else {
        return Err(AtError::unsupported(
            "the target must be a plain table",
            sql,
        ));
    };
    if args.is_some() {
        return Err(AtError::unsupported("table functions", sql));
    }
    if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
        return Err(AtError::unsupported("column aliases on the table", sql));
    }
    Ok(TableRef {
        table: table_name(kind, name, sql)?,
        alias: alias.as_ref().map(|a| a.name.to_string()),
    })
}

fn table_name(kind: DbKind, name: &ObjectName, sql: &str) -> Result<TableName, AtError> {
    let mut parts = Vec::with_capacity(name.0.len());
    for p in &name.0 {
        match p {
            ObjectNamePart::Identifier(id) => parts.push(normalize(kind, id)),
            ObjectNamePart::Function(_) => {
                return Err(AtError::unsupported("computed table name", sql));
            }
        }
    }
    match parts.len() {
        1 => Ok(TableName {
            schema: None,
            name: parts.remove(0),
        }),
        2 => {
            let name = parts.remove(1);
            Ok(TableName {
                schema: Some(parts.remove(0)),
                name,
            })
        }
        _ => Err(AtError::unsupported(
            "table names with more than two parts",
            sql,
        )),
    }
}

/// The identifier as the database resolves it: PostgreSQL folds unquoted
/// names to lower case; MySQL keeps them (table names are case-sensitive on
/// Linux, column names are compared case-insensitively by the caller).
pub(crate) fn normalize(kind: DbKind, id: &Ident) -> String {
    match (kind, id.quote_style) {
        (DbKind::Postgres, None) => id.value.to_lowercase(),
        _ => id.value.clone(),
    }
}

/// Do two normalized column names name the same column?
pub(crate) fn same_column(kind: DbKind, a: &str, b: &str) -> bool {
    match kind {
        DbKind::Postgres => a == b,
        DbKind::MySql => a.eq_ignore_ascii_case(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_refused() {
        assert!(matches!(
            plan(DbKind::Postgres, "UPDATE t SET a = $1 WHERE id = 1"),
            Err(AtError::Placeholder(_))
        ));
        assert!(matches!(
            plan(DbKind::MySql, "UPDATE t SET a = ? WHERE id = 1"),
            Err(AtError::Placeholder(_))
        ));
    }

    #[test]
    fn batches_group_by_table() {
        let p = plan(
            DbKind::Postgres,
            "UPDATE a SET x = 1 WHERE id = 1; UPDATE b SET y = 2 WHERE id = 2; UPDATE a SET z = 3 WHERE id = 3",
        )
        .expect("plan");
        let Plan::Update(groups) = p else {
            panic!("not an update plan: {p:?}")
        };
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].where_sql().as_deref(),
            Some("(id = 1) OR (id = 3)")
        );
        assert_eq!(groups[0].set_columns, vec!["x", "z"]);
    }

    #[test]
    fn mixed_batches_are_refused() {
        assert!(matches!(
            plan(
                DbKind::MySql,
                "UPDATE a SET x = 1 WHERE id = 1; DELETE FROM a WHERE id = 2"
            ),
            Err(AtError::MixedBatch(_))
        ));
    }

    #[test]
    fn where_text_round_trips_escapes() {
        let p = plan(DbKind::MySql, r"DELETE FROM t WHERE name = 'a\'b\\c'").expect("plan");
        let Plan::Delete(groups) = p else {
            panic!("not a delete plan")
        };
        assert_eq!(
            groups[0].where_sql().as_deref(),
            Some(r"(name = 'a\'b\\c')")
        );
    }

    #[test]
    fn select_for_update_is_recognized() {
        for kind in [DbKind::Postgres, DbKind::MySql] {
            let p = plan(kind, "SELECT balance FROM acc WHERE id = 1 FOR UPDATE").expect("plan");
            assert!(matches!(p, Plan::SelectForUpdate { .. }), "{p:?}");
            let p = plan(kind, "SELECT balance FROM acc WHERE id = 1").expect("plan");
            assert!(matches!(p, Plan::ReadOnly));
        }
    }

    #[test]
    fn unsupported_statements_are_refused() {
        for sql in [
            "CREATE TABLE x (id INT)",
            "INSERT INTO t (id) SELECT id FROM u",
            "INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING",
            "UPDATE t SET a = 1 FROM u WHERE t.id = u.id",
            "DELETE FROM t USING u WHERE t.id = u.id",
            "WITH x AS (UPDATE t SET a = 1 RETURNING id) SELECT * FROM x",
            "SELECT * INTO new_table FROM t",
        ] {
            assert!(
                matches!(
                    plan(DbKind::Postgres, sql),
                    Err(AtError::Unsupported { .. })
                ),
                "{sql}"
            );
        }
    }
}
