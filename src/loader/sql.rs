//! The warehouse's SQL, written once for both drivers.
//!
//! Redshift rules the text (its MERGE has one `WHEN MATCHED THEN UPDATE` and one `WHEN NOT
//! MATCHED THEN INSERT`, no `AND` conditions, a table as source with one row per key; keys
//! are not enforced; TRUNCATE commits; COPY maps Parquet columns by position), and the same
//! statements run on PostgreSQL 15. The dialects differ only in type names, table options,
//! reading a JSON field, and how a view repeats a row of a multiset.
//!
//! Per table the warehouse holds, in the schema `{schema}_freshet`:
//! - the change table (`{table}`): a keyed table's newest change per key, deletes kept as
//!   tombstones (`_freshet_deleted`) so an older change replayed later never brings a row
//!   back; a table without a key as signed row deltas (`_freshet_delta`), one per change and
//!   image, so the source's duplicate rows count as often as they occur;
//! - its row in `_freshet_tables`: the TRUNCATE barrier (the identity of the last TRUNCATE:
//!   rows changed before it are gone) and what is loaded;
//! - its rows in `_freshet_ledger`: the (partition, offsets) of every object loaded, written
//!   in the load's own transaction;
//! - for a keyed table with TOASTable columns, `_freshet_moved_{table}`: per key change
//!   (identity), the old row's TOASTable values, which the create by the new key may have
//!   left unchanged. The two halves of a key change travel on different Kafka partitions
//!   and may load in either order, far apart, the old key reused meanwhile: this table, not
//!   the old key's row, is where the create finds them.
//!
//! and in `{schema}` a view named as the source table holding exactly the source's rows.

use crate::kind::ColumnKind;

/// Which warehouse the text is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Redshift,
}

/// The staging table of one load (temporary: dropped with the session, and by the load).
pub const STAGE: &str = "freshet_stage";
/// One row per key: the newest staged change with its TOAST-unchanged columns filled in.
pub const NEWEST: &str = "freshet_newest";
pub const LEDGER: &str = "_freshet_ledger";
pub const TABLES: &str = "_freshet_tables";
/// Per table and sink share, the commit up to which the warehouse holds everything.
pub const WATERMARKS: &str = "_freshet_watermarks";

/// Redshift's widest VARCHAR, in bytes.
pub const REDSHIFT_VARCHAR_BYTES: usize = 65_535;

/// One table as the warehouse holds it.
#[derive(Clone, Debug)]
pub struct Table {
    /// `schema.table` at the source: the ledger's and `_freshet_tables`' key.
    pub source: String,
    /// The warehouse schema of the views; Freshet's own tables are in `{schema}_freshet`.
    pub schema: String,
    /// The view's and the change table's name: the source table's.
    pub name: String,
    /// The columns that identify a row; empty for a multiset.
    pub key: Vec<String>,
    pub eav: bool,
}

/// A column as the load knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

/// One object of a load.
#[derive(Clone, Debug)]
pub struct Object {
    pub key: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// A load's statements, in one transaction: `before_copy`, the driver's COPY into
/// [`STAGE`], then `after_copy`.
#[derive(Debug)]
pub struct Load {
    pub before_copy: Vec<String>,
    pub after_copy: Vec<String>,
}

pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Table {
    /// No table: the warehouse schema's own state (the ledger, the barriers, the watermarks).
    pub fn of_schema(schema: &str) -> Table {
        Table {
            source: String::new(),
            schema: schema.to_owned(),
            name: String::new(),
            key: Vec::new(),
            eav: false,
        }
    }

    pub fn state_schema(&self) -> String {
        ident(&format!("{}_freshet", self.schema))
    }

    /// The change table.
    pub fn changes(&self) -> String {
        format!("{}.{}", self.state_schema(), ident(&self.name))
    }

    pub fn view(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    pub fn ledger(&self) -> String {
        format!("{}.{LEDGER}", self.state_schema())
    }

    pub fn tables(&self) -> String {
        format!("{}.{TABLES}", self.state_schema())
    }

    pub fn watermarks(&self) -> String {
        format!("{}.{WATERMARKS}", self.state_schema())
    }

    /// The name, in the state schema, of the key changes' handed-over values.
    pub fn moved_name(&self) -> String {
        format!("_freshet_moved_{}", self.name)
    }

    pub fn moved(&self) -> String {
        format!("{}.{}", self.state_schema(), ident(&self.moved_name()))
    }

    fn keyed(&self) -> bool {
        !self.key.is_empty()
    }

    /// The EAV value table's attribute columns.
    fn attribute_columns(&self) -> &'static [&'static str] {
        if self.eav {
            &["_freshet_attribute_name", "_freshet_attribute_type"]
        } else {
            &[]
        }
    }
}

/// The SQL type a column of `kind` has in the warehouse, in the form the warehouse's own
/// catalog prints it (PostgreSQL's `format_type`), so a column's type is compared as text.
pub fn sql_type(kind: &ColumnKind, d: Dialect) -> String {
    use ColumnKind as K;
    let text = || match d {
        Dialect::Postgres => "text".to_owned(),
        Dialect::Redshift => format!("character varying({REDSHIFT_VARCHAR_BYTES})"),
    };
    // Redshift's time types take no precision: they hold microseconds.
    let fraction = |name: &str, precision: u8, zone: &str| match (precision, d) {
        (6, _) | (_, Dialect::Redshift) => format!("{name} {zone} time zone"),
        (p, Dialect::Postgres) => format!("{name}({p}) {zone} time zone"),
    };
    match (kind, d) {
        (K::Bool | K::Bit, _) => "boolean".into(),
        (K::Int16, _) => "smallint".into(),
        (K::Int32, _) => "integer".into(),
        (K::Int64, _) => "bigint".into(),
        (K::Float32, _) => "real".into(),
        (K::Float64, _) => "double precision".into(),
        (K::Decimal { precision, scale }, Dialect::Postgres) => {
            format!("numeric({precision},{scale})")
        }
        (K::Decimal { precision, scale }, Dialect::Redshift) if *precision <= 38 => {
            format!("numeric({precision},{scale})")
        }
        (K::Numeric, Dialect::Postgres) => "numeric".into(),
        (K::Money, _) => "numeric(19,2)".into(),
        (K::Bytes, Dialect::Postgres) => "bytea".into(),
        (K::Bytes, Dialect::Redshift) => "varbyte(1024000)".into(),
        (K::Date, _) => "date".into(),
        (K::Time { precision }, _) => fraction("time", *precision, "without"),
        (K::Timestamp { precision }, _) => fraction("timestamp", *precision, "without"),
        (K::TimestampTz { precision }, _) => fraction("timestamp", *precision, "with"),
        (K::TimeTz, Dialect::Postgres) => "time with time zone".into(),
        (K::Interval, Dialect::Postgres) => "interval".into(),
        (K::Uuid, Dialect::Postgres) => "uuid".into(),
        (K::Json, Dialect::Postgres) => "jsonb".into(),
        (K::Bits { .. }, Dialect::Postgres) => "bit varying".into(),
        (K::Array(inner), Dialect::Postgres) => format!("{}[]", sql_type(inner, d)),
        (K::Array(_), Dialect::Redshift) => "super".into(),
        // Exact as text: what Redshift has no type for, wider numerics, and text itself.
        (K::Decimal { .. } | K::Numeric, Dialect::Redshift)
        | (K::TimeTz | K::Interval | K::Uuid | K::Json | K::Bits { .. }, Dialect::Redshift)
        | (K::Xml | K::Enum(_) | K::Text, _) => text(),
    }
}

/// Kinds whose values PostgreSQL may store out of line (TOAST), so that an update can leave
/// them unchanged.
fn toastable(kind: &ColumnKind) -> bool {
    use ColumnKind as K;
    matches!(
        kind,
        K::Decimal { .. }
            | K::Numeric
            | K::Bytes
            | K::Json
            | K::Xml
            | K::Bits { .. }
            | K::Array(_)
            | K::Text
    )
}

/// The columns a key change hands from the old key's row to the new one's: the TOASTable
/// ones outside the key (a keyed table's only).
pub fn handed<'a>(t: &Table, columns: &'a [Column]) -> Vec<&'a Column> {
    if !t.keyed() {
        return Vec::new();
    }
    columns
        .iter()
        .filter(|c| toastable(&c.kind) && !t.key.contains(&c.name))
        .collect()
}

fn text_type(d: Dialect) -> String {
    sql_type(&ColumnKind::Text, d)
}

/// Freshet's state tables, made once per warehouse schema.
pub fn setup(schema: &str, d: Dialect) -> Vec<String> {
    let t = Table::of_schema(schema);
    let name = match d {
        Dialect::Postgres => "text".to_owned(),
        Dialect::Redshift => "character varying(1024)".to_owned(),
    };
    let mut statements = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)),
        format!("CREATE SCHEMA IF NOT EXISTS {}", t.state_schema()),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name {name} NOT NULL, kafka_partition integer \
             NOT NULL, first_offset bigint NOT NULL, last_offset bigint NOT NULL, object_key \
             {name} NOT NULL, loaded_at timestamp with time zone NOT NULL)",
            t.ledger()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name {name} NOT NULL, barrier_lsn bigint NOT \
             NULL, barrier_sequence bigint NOT NULL)",
            t.tables()
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (table_name {name} NOT NULL, sink_share {name} NOT NULL, \
             loaded_lsn bigint NOT NULL, loaded_commit_time timestamp with time zone NOT NULL, \
             updated_at timestamp with time zone NOT NULL)",
            t.watermarks()
        ),
    ];
    if d == Dialect::Redshift {
        // Redshift has no generate_series on its compute nodes: the views of tables without
        // a key repeat a row by joining these numbers (a row repeated more often than
        // NUMBERS times at the source shows NUMBERS times).
        let numbers = format!("{}._freshet_numbers", t.state_schema());
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {numbers} (n integer NOT NULL) DISTSTYLE ALL SORTKEY(n)"
        ));
        statements.push(format!(
            "INSERT INTO {numbers} WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r \
             WHERE n < {NUMBERS}) SELECT n FROM r WHERE NOT EXISTS (SELECT 1 FROM {numbers})"
        ));
    }
    statements
}

/// How many copies of one row a Redshift view of a table without a key can show.
pub const NUMBERS: u32 = 65_536;

/// The change table, made on the first load of `columns`, and the table's state row.
pub fn create(t: &Table, columns: &[Column], d: Dialect) -> Vec<String> {
    let mut defs: Vec<String> = columns
        .iter()
        .map(|c| {
            let not_null = if t.key.contains(&c.name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{} {}{not_null}", ident(&c.name), sql_type(&c.kind, d))
        })
        .collect();
    for a in t.attribute_columns() {
        defs.push(format!("{a} {}", text_type(d)));
    }
    if t.keyed() {
        defs.push("_freshet_deleted boolean NOT NULL".into());
        // The TOASTed columns a key change left unchanged whose old row was not loaded yet,
        // and that key change's identity: filled when its delete arrives.
        defs.push(format!("_freshet_pending {}", text_type(d)));
        defs.push("_freshet_pending_lsn bigint".into());
        defs.push("_freshet_pending_sequence bigint".into());
    } else {
        defs.push("_freshet_delta integer NOT NULL".into());
    }
    defs.extend([
        "_freshet_commit_lsn bigint NOT NULL".to_owned(),
        "_freshet_sequence bigint NOT NULL".to_owned(),
        "_freshet_commit_ts timestamp with time zone NOT NULL".to_owned(),
    ]);
    let keys = t
        .key
        .iter()
        .map(|k| ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let options = match (d, t.keyed()) {
        (Dialect::Postgres, true) => {
            defs.push(format!("PRIMARY KEY ({keys})"));
            String::new()
        }
        (Dialect::Postgres, false) => String::new(),
        // Rows spread by the key's first bigint column, else its last: for AtlasCo the
        // entity, so an entity's row and all its attribute values share a slice and join
        // without redistribution (the tenant, first in every key, has too few values to
        // spread on). The sort key is the whole key, which the merge joins on.
        (Dialect::Redshift, true) => {
            let spread = t
                .key
                .iter()
                .find(|k| {
                    columns
                        .iter()
                        .any(|c| &c.name == *k && c.kind == ColumnKind::Int64)
                })
                .or(t.key.last())
                .map_or("", String::as_str);
            format!(" DISTKEY({}) SORTKEY({keys})", ident(spread))
        }
        (Dialect::Redshift, false) => {
            " DISTSTYLE AUTO SORTKEY(_freshet_commit_lsn, _freshet_sequence)".to_owned()
        }
    };
    let mut statements = vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}){options}",
            t.changes(),
            defs.join(", ")
        ),
        format!(
            "INSERT INTO {tables} (table_name, barrier_lsn, barrier_sequence) SELECT {name}, 0, 0 \
             WHERE NOT EXISTS (SELECT 1 FROM {tables} WHERE table_name = {name})",
            tables = t.tables(),
            name = literal(&t.source)
        ),
    ];
    if d == Dialect::Postgres && t.keyed() {
        // A key change's delete finds the rows waiting for it by identity.
        statements.push(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {} (_freshet_pending_lsn, _freshet_pending_sequence) \
             WHERE _freshet_pending_lsn IS NOT NULL",
            ident(&format!("{}_freshet_pending", t.name)),
            t.changes()
        ));
    }
    statements
}

/// The key changes' handed-over values (`handed` columns), by identity.
pub fn create_moved(t: &Table, handed: &[&Column], d: Dialect) -> String {
    let mut defs = vec![
        "_freshet_commit_lsn bigint NOT NULL".to_owned(),
        "_freshet_sequence bigint NOT NULL".to_owned(),
        "_freshet_commit_ts timestamp with time zone NOT NULL".to_owned(),
    ];
    defs.extend(
        handed
            .iter()
            .map(|c| format!("{} {}", ident(&c.name), sql_type(&c.kind, d))),
    );
    let options = match d {
        Dialect::Postgres => {
            defs.push("PRIMARY KEY (_freshet_commit_lsn, _freshet_sequence)".into());
            ""
        }
        Dialect::Redshift => {
            " DISTKEY(_freshet_commit_lsn) SORTKEY(_freshet_commit_lsn, _freshet_sequence)"
        }
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){options}",
        t.moved(),
        defs.join(", ")
    )
}

/// A column the source added to `table` (the change table, or the handed-over values):
/// old rows hold NULL. Outside any load's transaction (Redshift refuses ALTER TABLE ADD
/// COLUMN inside one).
pub fn add_column(table: &str, c: &Column, d: Dialect) -> String {
    format!(
        "ALTER TABLE {table} ADD COLUMN {} {}",
        ident(&c.name),
        sql_type(&c.kind, d)
    )
}

/// The rows changed after the table's last TRUNCATE, `r` being the change table's alias
/// and `b` its `_freshet_tables` row's.
fn after_barrier(r: &str) -> String {
    format!(
        "({r}._freshet_commit_lsn > b.barrier_lsn OR ({r}._freshet_commit_lsn = b.barrier_lsn \
         AND {r}._freshet_sequence > b.barrier_sequence))"
    )
}

/// The view analysts query: exactly the source's rows, by the source's column names
/// (`columns`, in the change table's order, so a column added later comes last, as
/// `CREATE OR REPLACE VIEW` requires).
pub fn view(t: &Table, columns: &[String], d: Dialect) -> Vec<String> {
    let list = |alias: &str| {
        columns
            .iter()
            .map(|c| format!("{alias}{}", ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let state = format!(
        "{} b WHERE b.table_name = {}",
        t.tables(),
        literal(&t.source)
    );
    let body = if t.keyed() {
        format!(
            "SELECT {} FROM {} r CROSS JOIN {state} AND NOT r._freshet_deleted AND {}",
            list("r."),
            t.changes(),
            after_barrier("r")
        )
    } else {
        // A multiset: each row as often as its deltas sum to.
        let counted = format!(
            "SELECT {}, SUM(r._freshet_delta) AS _freshet_count FROM {} r CROSS JOIN {state} \
             AND {} GROUP BY {}",
            list("r."),
            t.changes(),
            after_barrier("r"),
            list("r.")
        );
        match d {
            Dialect::Postgres => format!(
                "SELECT {} FROM ({counted}) g CROSS JOIN LATERAL generate_series(1, \
                 g._freshet_count) AS n",
                list("g.")
            ),
            Dialect::Redshift => format!(
                "SELECT {} FROM ({counted}) g JOIN {}._freshet_numbers n ON n.n <= \
                 g._freshet_count",
                list("g."),
                t.state_schema()
            ),
        }
    };
    if t.keyed() {
        // Columns only ever join at the end: the view is replaced in place.
        vec![format!("CREATE OR REPLACE VIEW {} AS {body}", t.view())]
    } else {
        // The multiset's columns are the source's of now: one may leave.
        vec![
            format!("DROP VIEW IF EXISTS {}", t.view()),
            format!("CREATE VIEW {} AS {body}", t.view()),
        ]
    }
}

/// `expr`, a JSON object's text, read at field `name` as PostgreSQL text.
fn json_field(expr: &str, name: &str, d: Dialect) -> String {
    match d {
        Dialect::Postgres => format!("(CAST({expr} AS json) ->> {})", literal(name)),
        Dialect::Redshift => format!("JSON_EXTRACT_PATH_TEXT({expr}, {})", literal(name)),
    }
}

/// Whether the staged row `alias` left column `name` unchanged (TOAST).
fn unchanged(alias: &str, name: &str) -> String {
    let needle = serde_json::Value::from(name).to_string();
    format!(
        "POSITION({} IN COALESCE({alias}._freshet_unchanged, '')) > 0",
        literal(&needle)
    )
}

/// The staging table for objects holding `columns`, in the objects' column order.
pub fn stage(t: &Table, columns: &[Column], d: Dialect) -> String {
    let text = text_type(d);
    let mut defs: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", ident(&c.name), sql_type(&c.kind, d)))
        .collect();
    defs.extend([
        "_freshet_op character varying(1)".to_owned(),
        "_freshet_commit_lsn bigint".to_owned(),
        "_freshet_sequence bigint".to_owned(),
        "_freshet_commit_ts timestamp with time zone".to_owned(),
        "_freshet_kafka_partition integer".to_owned(),
        "_freshet_kafka_offset bigint".to_owned(),
        format!("_freshet_unchanged {text}"),
        format!("_freshet_exact {text}"),
        format!("_freshet_before {text}"),
    ]);
    for a in t.attribute_columns() {
        defs.push(format!("{a} {text}"));
    }
    defs.push("_freshet_key_change boolean".into());
    format!("CREATE TEMP TABLE {STAGE} ({})", defs.join(", "))
}

/// Records, for the sink share `share` (`all`, or `I/N`), the commits up to which the
/// warehouse holds each table's changes (`(table, end LSN, commit time in Unix ms)`) at
/// `now_ms`: one transaction, so a reader sees either the old rows or the new. (Times are
/// literals: Redshift's CURRENT_TIMESTAMP runs on the leader node only.)
pub fn save_watermarks(
    schema: &str,
    share: &str,
    marks: &[(String, u64, i64)],
    now_ms: i64,
) -> Vec<String> {
    if marks.is_empty() {
        return Vec::new();
    }
    let t = Table::of_schema(schema);
    let timestamp = |ms: i64| {
        let at = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S%.3f+00");
        format!("CAST('{at}' AS timestamp with time zone)")
    };
    let now = timestamp(now_ms);
    let names: Vec<String> = marks.iter().map(|(n, _, _)| literal(n)).collect();
    let rows: Vec<String> = marks
        .iter()
        .map(|(n, lsn, commit_ms)| {
            format!(
                "({}, {}, {}, {}, {now})",
                literal(n),
                literal(share),
                i64::try_from(*lsn).unwrap_or(i64::MAX),
                timestamp(*commit_ms)
            )
        })
        .collect();
    vec![
        format!(
            "DELETE FROM {} WHERE sink_share = {} AND table_name IN ({})",
            t.watermarks(),
            literal(share),
            names.join(", ")
        ),
        format!(
            "INSERT INTO {} (table_name, sink_share, loaded_lsn, loaded_commit_time, updated_at) VALUES {}",
            t.watermarks(),
            rows.join(", ")
        ),
    ]
}

/// The recorded loaded watermarks, as text: table, sink share, end LSN, commit time in Unix ms.
pub fn read_watermarks(schema: &str) -> String {
    let t = Table::of_schema(schema);
    format!(
        "SELECT table_name, sink_share, CAST(loaded_lsn AS varchar(20)), CAST(CAST(EXTRACT(EPOCH \
         FROM loaded_commit_time) * 1000 AS bigint) AS varchar(20)) FROM {}",
        t.watermarks()
    )
}

/// Every statement of one load of `objects`, holding `columns`, into a change table that
/// has `table_columns` (a superset: a column the source dropped stays, NULL from now on).
pub fn load(
    t: &Table,
    columns: &[Column],
    table_columns: &[String],
    objects: &[Object],
    loaded_at: &str,
    d: Dialect,
) -> Load {
    let source = literal(&t.source);
    let mut after = vec![
        // Rows an earlier load took (a reloaded object, or one overlapping a loaded one).
        format!(
            "DELETE FROM {STAGE} USING {} l WHERE l.table_name = {source} AND \
             {STAGE}._freshet_kafka_partition = l.kafka_partition AND {STAGE}._freshet_kafka_offset \
             BETWEEN l.first_offset AND l.last_offset",
            t.ledger()
        ),
        // A TRUNCATE moves the barrier: what changed before it is gone.
        format!(
            "UPDATE {} SET barrier_lsn = n.lsn, barrier_sequence = n.seq FROM (SELECT \
             _freshet_commit_lsn AS lsn, _freshet_sequence AS seq FROM {STAGE} WHERE _freshet_op \
             = 't' ORDER BY _freshet_commit_lsn DESC, _freshet_sequence DESC LIMIT 1) n WHERE \
             table_name = {source} AND (n.lsn > barrier_lsn OR (n.lsn = barrier_lsn AND n.seq > \
             barrier_sequence))",
            t.tables()
        ),
        format!(
            "DELETE FROM {STAGE} USING {} b WHERE b.table_name = {source} AND \
             ({STAGE}._freshet_op = 't' OR NOT {})",
            t.tables(),
            after_barrier(STAGE)
        ),
    ];
    if t.keyed() {
        after.extend(merge(t, columns, table_columns, d));
    } else {
        after.extend(deltas(t, columns, d));
    }
    let values: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "({source}, {}, {}, {}, {}, CAST({} AS timestamp with time zone))",
                o.partition,
                o.first,
                o.last,
                literal(&o.key),
                literal(loaded_at)
            )
        })
        .collect();
    after.push(format!(
        "INSERT INTO {} (table_name, kafka_partition, first_offset, last_offset, object_key, \
         loaded_at) VALUES {}",
        t.ledger(),
        values.join(", ")
    ));
    after.push(format!("DROP TABLE {STAGE}"));
    Load {
        before_copy: vec![stage(t, columns, d)],
        after_copy: after,
    }
}

/// A keyed table: key changes' old values handed over, the newest staged change per key
/// (TOAST-unchanged columns filled from the newest earlier change in the batch that set
/// them, else kept from the change table), the ones not newer than the change table's
/// dropped, then one MERGE. The statement count does not grow with the columns: Redshift
/// takes 40 in a batch.
fn merge(t: &Table, columns: &[Column], table_columns: &[String], d: Dialect) -> Vec<String> {
    let keys: Vec<String> = t.key.iter().map(|k| ident(k)).collect();
    let by_key = format!("PARTITION BY {}", keys.join(", "));
    let newest_first = "_freshet_commit_lsn DESC, _freshet_sequence DESC";
    let whole = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING";
    let on = |a: &str, b: &str| {
        keys.iter()
            .map(|k| format!("{a}.{k} = {b}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let same_change = |a: &str, b: &str| {
        format!(
            "{a}._freshet_commit_lsn = {b}._freshet_commit_lsn AND {a}._freshet_sequence = \
             {b}._freshet_sequence"
        )
    };
    let key_columns: Vec<&Column> = t
        .key
        .iter()
        .filter_map(|k| columns.iter().find(|c| &c.name == k))
        .collect();
    let handed = handed(t, columns);
    let marker = |c: &Column| literal(&serde_json::Value::from(c.name.as_str()).to_string());
    let old_key = |c: &Column| {
        format!(
            "CAST({} AS {})",
            json_field(&format!("{STAGE}._freshet_before"), &c.name, d),
            sql_type(&c.kind, d)
        )
    };
    let mut statements = vec![
        // An update that moved the row to another key without Kafka's key changing (the EAV
        // value table's attribute; Kafka keys it by entity): the old key is deleted too, the
        // delete half of a key change.
        format!(
            "INSERT INTO {STAGE} ({}, _freshet_op, _freshet_commit_lsn, _freshet_sequence, \
             _freshet_commit_ts, _freshet_kafka_partition, _freshet_kafka_offset, \
             _freshet_key_change) SELECT {}, 'd', _freshet_commit_lsn, _freshet_sequence, \
             _freshet_commit_ts, _freshet_kafka_partition, _freshet_kafka_offset, TRUE FROM \
             {STAGE} WHERE _freshet_op = 'u' AND _freshet_before IS NOT NULL AND {} AND ({})",
            keys.join(", "),
            key_columns
                .iter()
                .map(|c| old_key(c))
                .collect::<Vec<_>>()
                .join(", "),
            key_columns
                .iter()
                .map(|c| format!("{} IS NOT NULL", old_key(c)))
                .collect::<Vec<_>>()
                .join(" AND "),
            key_columns
                .iter()
                .map(|c| format!("{STAGE}.{} <> {}", ident(&c.name), old_key(c)))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    ];
    if !handed.is_empty() {
        // Each key change's delete hands over the old row's values: per column, the newest
        // earlier change of the load that set it, else the change table's row.
        let mut values = Vec::new();
        for c in &handed {
            let name = ident(&c.name);
            let unset = format!(
                "CASE WHEN s._freshet_op IS NULL OR {} THEN 1 ELSE 0 END",
                unchanged("s", &c.name)
            );
            values.push(format!(
                "CASE WHEN MIN({unset}) OVER (PARTITION BY k._freshet_commit_lsn, \
                 k._freshet_sequence) = 0 THEN FIRST_VALUE(s.{name}) OVER (PARTITION BY \
                 k._freshet_commit_lsn, k._freshet_sequence ORDER BY {unset}, \
                 s._freshet_commit_lsn DESC, s._freshet_sequence DESC {whole}) ELSE o.{name} \
                 END AS {name}"
            ));
        }
        let names: Vec<String> = handed.iter().map(|c| ident(&c.name)).collect();
        statements.push(format!(
            "INSERT INTO {moved} (_freshet_commit_lsn, _freshet_sequence, _freshet_commit_ts, \
             {names}) SELECT lsn, seq, ts, {names} FROM (SELECT k._freshet_commit_lsn AS lsn, \
             k._freshet_sequence AS seq, k._freshet_commit_ts AS ts, {values}, ROW_NUMBER() OVER \
             (PARTITION BY k._freshet_commit_lsn, k._freshet_sequence ORDER BY \
             k._freshet_commit_lsn) AS n FROM {STAGE} k LEFT JOIN {STAGE} s ON {} AND \
             s._freshet_op <> 'd' AND (s._freshet_commit_lsn < k._freshet_commit_lsn OR \
             (s._freshet_commit_lsn = k._freshet_commit_lsn AND s._freshet_sequence < \
             k._freshet_sequence)) LEFT JOIN {changes} o ON {} AND NOT o._freshet_deleted WHERE \
             k._freshet_op = 'd' AND k._freshet_key_change AND NOT EXISTS (SELECT 1 FROM {moved} \
             x WHERE {})) m WHERE n = 1",
            on("s", "k"),
            on("o", "k"),
            same_change("x", "k"),
            moved = t.moved(),
            changes = t.changes(),
            names = names.join(", "),
            values = values.join(", "),
        ));
        // A change that left a column unchanged while moving its row to this key takes the
        // value handed over, whenever that delete was loaded (now or before).
        let fill: Vec<String> = handed
            .iter()
            .map(|c| {
                let name = ident(&c.name);
                format!(
                    "{name} = CASE WHEN {} THEN m.{name} ELSE {STAGE}.{name} END",
                    unchanged(STAGE, &c.name)
                )
            })
            .collect();
        statements.push(format!(
            "UPDATE {STAGE} SET {}, _freshet_unchanged = NULL FROM {} m WHERE {} AND \
             {STAGE}._freshet_op <> 'd' AND {STAGE}._freshet_unchanged IS NOT NULL",
            fill.join(", "),
            t.moved(),
            same_change("m", STAGE)
        ));
    }
    // A create still holding an unchanged column waits for its key change's delete (on
    // another partition, not loaded yet): it sets the column, to a value to come.
    let mut select = Vec::new();
    let mut waiting = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let name = ident(&c.name);
        if handed.iter().any(|h| h.name == c.name) {
            // A delete sets nothing a later change could keep.
            let setters_first = format!(
                "CASE WHEN _freshet_op = 'd' OR (_freshet_op <> 'c' AND {}) THEN 1 ELSE 0 END",
                unchanged(STAGE, &c.name)
            );
            let first = |expr: &str, alias: &str| {
                format!(
                    "FIRST_VALUE({expr}) OVER ({by_key} ORDER BY {setters_first}, {newest_first} \
                     {whole}) AS {alias}"
                )
            };
            select.push(first(&name, &name));
            select.push(format!(
                "MIN({setters_first}) OVER ({by_key}) AS _freshet_keep_{i}"
            ));
            select.push(first(
                &format!(
                    "CASE WHEN _freshet_op = 'c' AND {} THEN 1 ELSE 0 END",
                    unchanged(STAGE, &c.name)
                ),
                &format!("_freshet_wait_{i}"),
            ));
            waiting.push(format!(
                "CASE WHEN _freshet_wait_{i} = 1 THEN {} ELSE '' END",
                marker(c)
            ));
        } else {
            select.push(name);
        }
    }
    let meta = [
        "_freshet_commit_lsn",
        "_freshet_sequence",
        "_freshet_commit_ts",
    ];
    select.push("_freshet_op = 'd' AS _freshet_deleted".into());
    select.extend(meta.iter().map(|m| (*m).to_owned()));
    select.extend(t.attribute_columns().iter().map(|a| (*a).to_owned()));
    if !handed.is_empty() {
        // The batch's newest create of the key: a new life, whose waits replace the old.
        for (column, alias) in [
            ("_freshet_commit_lsn", "_freshet_created_lsn"),
            ("_freshet_sequence", "_freshet_created_sequence"),
        ] {
            select.push(format!(
                "FIRST_VALUE(CASE WHEN _freshet_op = 'c' THEN {column} END) OVER ({by_key} ORDER \
                 BY CASE WHEN _freshet_op = 'c' THEN 0 ELSE 1 END, {newest_first} {whole}) AS \
                 {alias}"
            ));
        }
    }
    select.push(format!(
        "ROW_NUMBER() OVER ({by_key} ORDER BY {newest_first}) AS _freshet_rank"
    ));
    let pending = if handed.is_empty() {
        String::new()
    } else {
        format!(
            ", CASE WHEN NOT _freshet_deleted THEN NULLIF({}, '') END AS _freshet_pending",
            waiting.join(" || ")
        )
    };
    let newest = format!(
        "CREATE TEMP TABLE {NEWEST} AS SELECT ranked.*{pending} FROM (SELECT {} FROM {STAGE}) \
         ranked WHERE _freshet_rank = 1",
        select.join(", ")
    );
    let not_newer = format!(
        "DELETE FROM {NEWEST} USING {} t WHERE {} AND (t._freshet_commit_lsn > \
         {NEWEST}._freshet_commit_lsn OR (t._freshet_commit_lsn = {NEWEST}._freshet_commit_lsn \
         AND t._freshet_sequence >= {NEWEST}._freshet_sequence))",
        t.changes(),
        on("t", NEWEST)
    );
    let mut set = Vec::new();
    let mut insert_columns = Vec::new();
    let mut insert_values = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let name = ident(&c.name);
        if t.key.contains(&c.name) {
            // The key matched: nothing to set.
        } else if handed.iter().any(|h| h.name == c.name) {
            set.push(format!(
                "{name} = CASE WHEN s._freshet_keep_{i} = 1 THEN t.{name} ELSE s.{name} END"
            ));
        } else {
            set.push(format!("{name} = s.{name}"));
        }
        insert_columns.push(name.clone());
        insert_values.push(format!("s.{name}"));
    }
    // Columns the source dropped: NULL in every row changed from now on.
    for gone in table_columns
        .iter()
        .filter(|n| !columns.iter().any(|c| &c.name == *n))
    {
        set.push(format!("{} = NULL", ident(gone)));
    }
    let extra: Vec<&str> = ["_freshet_deleted"]
        .into_iter()
        .chain(meta)
        .chain(t.attribute_columns().iter().copied())
        .collect();
    for m in &extra {
        set.push(format!("{m} = s.{m}"));
        insert_columns.push((*m).to_owned());
        insert_values.push(format!("s.{m}"));
    }
    if !handed.is_empty() {
        // A wait outlives later changes of the key that keep the column; a change that sets
        // it, or a new life of the key, ends it.
        let carried: Vec<String> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| handed.iter().any(|h| h.name == c.name))
            .map(|(i, c)| {
                format!(
                    "CASE WHEN s._freshet_keep_{i} = 1 AND POSITION({m} IN \
                     COALESCE(t._freshet_pending, '')) > 0 THEN {m} ELSE '' END",
                    m = marker(c)
                )
            })
            .collect();
        let renewed = "s._freshet_deleted OR s._freshet_created_lsn IS NOT NULL";
        set.push(format!(
            "_freshet_pending = CASE WHEN {renewed} THEN s._freshet_pending ELSE NULLIF({}, '') \
             END",
            carried.join(" || ")
        ));
        for (column, created) in [
            ("_freshet_pending_lsn", "_freshet_created_lsn"),
            ("_freshet_pending_sequence", "_freshet_created_sequence"),
        ] {
            let new = format!("CASE WHEN s._freshet_pending IS NOT NULL THEN s.{created} END");
            set.push(format!(
                "{column} = CASE WHEN {renewed} THEN {new} ELSE t.{column} END"
            ));
            insert_columns.push(column.to_owned());
            insert_values.push(new);
        }
        insert_columns.push("_freshet_pending".into());
        insert_values.push("s._freshet_pending".into());
    }
    let merge = format!(
        "MERGE INTO {} t USING {NEWEST} s ON {} WHEN MATCHED THEN UPDATE SET {} WHEN NOT MATCHED \
         THEN INSERT ({}) VALUES ({})",
        t.changes(),
        on("t", "s"),
        set.join(", "),
        insert_columns.join(", "),
        insert_values.join(", ")
    );
    statements.extend([newest, not_newer, merge]);
    if !handed.is_empty() {
        // Rows waiting for a key change whose delete is in this load: its values are in.
        let set: Vec<String> = handed
            .iter()
            .map(|c| {
                format!(
                    "{name} = CASE WHEN POSITION({} IN {changes}._freshet_pending) > 0 THEN \
                     m.{name} ELSE {changes}.{name} END",
                    marker(c),
                    name = ident(&c.name),
                    changes = t.changes()
                )
            })
            .collect();
        statements.push(format!(
            "UPDATE {changes} SET {}, _freshet_pending = NULL, _freshet_pending_lsn = NULL, \
             _freshet_pending_sequence = NULL FROM {STAGE} k JOIN {} m ON {} WHERE k._freshet_op \
             = 'd' AND k._freshet_key_change AND {changes}._freshet_pending_lsn = \
             k._freshet_commit_lsn AND {changes}._freshet_pending_sequence = k._freshet_sequence \
             AND {changes}._freshet_pending IS NOT NULL",
            set.join(", "),
            t.moved(),
            same_change("m", "k"),
            changes = t.changes()
        ));
    }
    statements.push(format!("DROP TABLE {NEWEST}"));
    statements
}

/// A table without a key: each change once (by identity, whatever Kafka repeated) as signed
/// deltas of its images: +1 the new row, -1 the old one (an update's `_freshet_before`, a
/// delete's image).
fn deltas(t: &Table, columns: &[Column], d: Dialect) -> Vec<String> {
    let before = |c: &Column| {
        format!(
            "CAST({} AS {})",
            json_field("o._freshet_before", &c.name, d),
            sql_type(&c.kind, d)
        )
    };
    let new_image: Vec<String> = columns
        .iter()
        .map(|c| {
            let name = ident(&c.name);
            if toastable(&c.kind) {
                format!(
                    "CASE WHEN {} THEN {} ELSE o.{name} END",
                    unchanged("o", &c.name),
                    before(c)
                )
            } else {
                format!("o.{name}")
            }
        })
        .collect();
    let old_image: Vec<String> = columns.iter().map(before).collect();
    let attributes: String = t
        .attribute_columns()
        .iter()
        .map(|a| format!(", o.{a}"))
        .collect();
    let meta = "o._freshet_commit_lsn, o._freshet_sequence, o._freshet_commit_ts";
    let once = format!(
        "(SELECT * FROM (SELECT {STAGE}.*, ROW_NUMBER() OVER (PARTITION BY _freshet_commit_lsn, \
         _freshet_sequence ORDER BY _freshet_kafka_offset) AS _freshet_rank FROM {STAGE}) r \
         WHERE _freshet_rank = 1)"
    );
    let mut target: Vec<String> = columns.iter().map(|c| ident(&c.name)).collect();
    target.extend(t.attribute_columns().iter().map(|a| (*a).to_owned()));
    target.extend(
        [
            "_freshet_commit_lsn",
            "_freshet_sequence",
            "_freshet_commit_ts",
            "_freshet_delta",
        ]
        .map(str::to_owned),
    );
    vec![
        // Changes applied before (Kafka holds a change twice after a capture restart).
        format!(
            "DELETE FROM {STAGE} USING {} a WHERE a._freshet_commit_lsn = \
             {STAGE}._freshet_commit_lsn AND a._freshet_sequence = {STAGE}._freshet_sequence",
            t.changes()
        ),
        format!(
            "INSERT INTO {} ({}) SELECT {}{attributes}, {meta}, CASE WHEN o._freshet_op = 'd' THEN \
             -1 ELSE 1 END FROM {once} o UNION ALL SELECT {}{attributes}, {meta}, -1 FROM {once} o \
             WHERE o._freshet_op = 'u'",
            t.changes(),
            target.join(", "),
            new_image.join(", "),
            old_image.join(", ")
        ),
    ]
}

/// What the warehouse holds of the table from offset `from` on, forgotten: from 0 the table,
/// its view and its state; else the ledger rows, so that those objects load again.
pub fn forget(t: &Table, from: i64) -> Vec<String> {
    let source = literal(&t.source);
    if from <= 0 {
        vec![
            format!("DROP VIEW IF EXISTS {}", t.view()),
            format!("DROP TABLE IF EXISTS {}", t.changes()),
            format!("DROP TABLE IF EXISTS {}", t.moved()),
            format!("DELETE FROM {} WHERE table_name = {source}", t.tables()),
            format!("DELETE FROM {} WHERE table_name = {source}", t.ledger()),
            // Dropped: no longer loaded up to anything.
            format!("DELETE FROM {} WHERE table_name = {source}", t.watermarks()),
        ]
    } else {
        vec![format!(
            "DELETE FROM {} WHERE table_name = {source} AND last_offset >= {from}",
            t.ledger()
        )]
    }
}

/// Tombstones and handed-over values older than the retention, and rows behind the TRUNCATE
/// barrier, removed outside any load. A change older than a purged tombstone, replayed after
/// it, would bring its row back: the retention outlasts any replay of Kafka's duplicates, and
/// any lag between a key change's two halves.
pub fn purge(t: &Table, columns: &[Column], older_than: &str) -> Vec<String> {
    let cutoff = format!("CAST({} AS timestamp with time zone)", literal(older_than));
    let mut statements = Vec::new();
    if !handed(t, columns).is_empty() {
        statements.push(format!(
            "DELETE FROM {} WHERE _freshet_commit_ts < {cutoff}",
            t.moved()
        ));
    }
    statements.push(if t.keyed() {
        format!(
            "DELETE FROM {} USING {} b WHERE b.table_name = {} AND (({c}._freshet_deleted AND \
             {c}._freshet_commit_ts < {cutoff}) OR NOT {})",
            t.changes(),
            t.tables(),
            literal(&t.source),
            after_barrier(&t.changes()),
            c = t.changes()
        )
    } else {
        format!(
            "DELETE FROM {} USING {} b WHERE b.table_name = {} AND NOT {}",
            t.changes(),
            t.tables(),
            literal(&t.source),
            after_barrier(&t.changes())
        )
    });
    statements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities() -> (Table, Vec<Column>) {
        let t = Table {
            source: "atlasco.entities".into(),
            schema: "analytics".into(),
            name: "entities".into(),
            key: vec!["tenant_id".into(), "entity_id".into()],
            eav: false,
        };
        let columns = vec![
            Column {
                name: "tenant_id".into(),
                kind: ColumnKind::Int32,
            },
            Column {
                name: "entity_id".into(),
                kind: ColumnKind::Int64,
            },
            Column {
                name: "entity_type".into(),
                kind: ColumnKind::Text,
            },
            Column {
                name: "created_at".into(),
                kind: ColumnKind::TimestampTz { precision: 6 },
            },
        ];
        (t, columns)
    }

    #[test]
    fn types_print_as_the_catalog_does() {
        let d = Dialect::Postgres;
        assert_eq!(
            sql_type(&ColumnKind::Time { precision: 3 }, d),
            "time(3) without time zone"
        );
        assert_eq!(
            sql_type(&ColumnKind::TimestampTz { precision: 6 }, d),
            "timestamp with time zone"
        );
        assert_eq!(
            sql_type(&ColumnKind::Array(Box::new(ColumnKind::Int32)), d),
            "integer[]"
        );
        assert_eq!(
            sql_type(&ColumnKind::Numeric, Dialect::Redshift),
            "character varying(65535)"
        );
        assert_eq!(
            sql_type(
                &ColumnKind::Decimal {
                    precision: 40,
                    scale: 2
                },
                Dialect::Redshift
            ),
            "character varying(65535)"
        );
    }

    #[test]
    fn the_merge_is_one_redshift_accepts() {
        let (t, columns) = entities();
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let load = load(
            &t,
            &columns,
            &names,
            &[Object {
                key: "atlasco.entities/dt=2026-11-30/0-0-9.parquet".into(),
                partition: 0,
                first: 0,
                last: 9,
            }],
            "2026-11-30T18:00:00Z",
            Dialect::Redshift,
        );
        let merge = load
            .after_copy
            .iter()
            .find(|s| s.starts_with("MERGE"))
            .expect("a MERGE");
        assert_eq!(merge.matches("WHEN MATCHED THEN UPDATE").count(), 1);
        assert_eq!(merge.matches("WHEN NOT MATCHED THEN INSERT").count(), 1);
        assert!(!merge.contains("MATCHED AND"), "{merge}");
        // The TOASTable column keeps the change table's value when no change set it.
        assert!(
            merge.contains(
                "\"entity_type\" = CASE WHEN s._freshet_keep_2 = 1 THEN t.\"entity_type\" ELSE \
                 s.\"entity_type\" END"
            ),
            "{merge}"
        );
        assert!(load.after_copy.iter().all(|s| !s.contains("TRUNCATE")));
        // Key changes hand their TOASTable values over through the table made for them.
        assert!(
            load.after_copy
                .iter()
                .any(|s| s.starts_with(&format!("INSERT INTO {}", t.moved()))),
            "{load:#?}"
        );
        assert!(load
            .after_copy
            .last()
            .is_some_and(|s| s == "DROP TABLE freshet_stage"));
    }

    #[test]
    fn a_dropped_column_is_null_in_rows_changed_after() {
        let (t, columns) = entities();
        let mut names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        names.push("legacy".into());
        let load = load(
            &t,
            &columns,
            &names,
            &[],
            "2026-11-30T18:00:00Z",
            Dialect::Postgres,
        );
        let merge = load
            .after_copy
            .iter()
            .find(|s| s.starts_with("MERGE"))
            .expect("a MERGE");
        assert!(merge.contains("\"legacy\" = NULL"), "{merge}");
        assert!(!merge.contains(
            "INSERT (\"tenant_id\", \"entity_id\", \"entity_type\", \"created_at\", \"legacy\""
        ));
    }

    /// Redshift runs at most 40 statements in a batch, COPYs included: a load's own count
    /// must not grow with the table's columns.
    #[test]
    fn a_load_takes_as_many_statements_however_wide_the_table() {
        let (t, mut columns) = entities();
        let count = |columns: &[Column]| {
            let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            let l = load(
                &t,
                columns,
                &names,
                &[],
                "2026-11-30T18:00:00Z",
                Dialect::Redshift,
            );
            l.before_copy.len() + l.after_copy.len()
        };
        let narrow = count(&columns);
        for i in 0..60 {
            columns.push(Column {
                name: format!("text_{i}"),
                kind: ColumnKind::Text,
            });
        }
        assert_eq!(count(&columns), narrow);
        assert!(narrow <= 14, "{narrow} statements");
    }

    /// The Redshift SQL, pinned: the setup, the EAV value table's and a multiset's DDL and
    /// views, one load of each (COPY, MERGE, deltas, ledger) and a purge. A change to the text
    /// shows here as a diff; `FRESHET_BLESS=1 cargo test --lib golden` writes it anew.
    #[test]
    fn golden_redshift_sql() {
        let d = Dialect::Redshift;
        let values = Table {
            source: "atlasco.entity_values".into(),
            schema: "analytics".into(),
            name: "entity_values".into(),
            key: vec![
                "tenant_id".into(),
                "entity_id".into(),
                "attribute_id".into(),
            ],
            eav: true,
        };
        let value_columns: Vec<Column> = [
            ("tenant_id", ColumnKind::Int32),
            ("entity_id", ColumnKind::Int64),
            ("attribute_id", ColumnKind::Int32),
            ("string_value", ColumnKind::Text),
            ("integer_value", ColumnKind::Int64),
            ("float_value", ColumnKind::Float64),
            ("boolean_value", ColumnKind::Bool),
            ("timestamp_value", ColumnKind::TimestampTz { precision: 6 }),
            ("updated_at", ColumnKind::TimestampTz { precision: 6 }),
        ]
        .into_iter()
        .map(|(name, kind)| Column {
            name: name.into(),
            kind,
        })
        .collect();
        let notes = Table {
            source: "public.notes".into(),
            schema: "analytics".into(),
            name: "notes".into(),
            key: Vec::new(),
            eav: false,
        };
        let note_columns = vec![
            Column {
                name: "n".into(),
                kind: ColumnKind::Int32,
            },
            Column {
                name: "body".into(),
                kind: ColumnKind::Text,
            },
        ];
        let names = |c: &[Column]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        let object = |table: &str| Object {
            key: format!("{table}/dt=2026-11-30/3-1200-1399.parquet"),
            partition: 3,
            first: 1200,
            last: 1399,
        };
        let at = "2026-11-30T18:00:00+00:00";
        let mut out: Vec<String> = setup("analytics", d);
        for (t, columns) in [(&values, &value_columns), (&notes, &note_columns)] {
            out.extend(create(t, columns, d));
            let handed = handed(t, columns);
            if !handed.is_empty() {
                out.push(create_moved(t, &handed, d));
            }
            out.extend(view(t, &names(columns), d));
            let load = load(t, columns, &names(columns), &[object(&t.source)], at, d);
            out.extend(load.before_copy);
            out.push(crate::loader::redshift::copy(
                &format!(
                    "s3://lake/cdc/{}/dt=2026-11-30/_3-1200-1399.manifest",
                    t.source
                ),
                "arn:aws:iam::123456789012:role/freshet-copy",
                false,
            ));
            out.extend(load.after_copy);
            out.extend(purge(t, columns, at));
        }
        out.push(add_column(
            &values.changes(),
            &Column {
                name: "unit".into(),
                kind: ColumnKind::Text,
            },
            d,
        ));
        out.extend(save_watermarks(
            "analytics",
            "0/2",
            &[
                (
                    "atlasco.entity_values".into(),
                    0x16B_3748,
                    1_796_097_630_686,
                ),
                ("public.notes".into(), 0x16B_3748, 1_796_097_630_686),
            ],
            1_796_097_631_000,
        ));
        let text: String = out.iter().map(|s| format!("{s};\n\n")).collect();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/loader/golden/redshift.sql"
        );
        if std::env::var_os("FRESHET_BLESS").is_some() {
            std::fs::write(path, &text).expect("bless");
        }
        let golden = std::fs::read_to_string(path).expect("the golden file");
        assert!(
            golden == text,
            "the Redshift SQL changed; if on purpose, FRESHET_BLESS=1 writes it:\n{text}"
        );
    }

    #[test]
    fn names_are_quoted_and_literals_escaped() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("o'clock"), "'o''clock'");
        assert_eq!(
            unchanged("s", "a\"b"),
            "POSITION('\"a\\\"b\"' IN COALESCE(s._freshet_unchanged, '')) > 0"
        );
    }
}
