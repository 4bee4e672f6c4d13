//! The attribute catalog as the transform sees it: updated from the catalog table's own
//! changes in WAL order, so each value change carries the name valid at its commit.

use std::collections::HashMap;

use crate::change::{Change, Datum, Op, Row, Table, Value};
use crate::config::Eav;
use crate::lsn::Lsn;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub data_type: String,
}

/// What a table is to the EAV mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Other,
    Values { attribute: usize },
    Catalog(CatalogColumns),
}

/// Positions of the catalog's columns in its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogColumns {
    pub id: usize,
    pub name: usize,
    pub data_type: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("transform.eav: {table} has no column {column:?}")]
pub struct MissingColumn {
    pub table: String,
    pub column: String,
}

pub struct Catalog {
    values: (String, String),
    pub catalog: (String, String),
    attribute_column: String,
    name_column: String,
    type_column: String,
    key: Vec<String>,
    by_id: HashMap<i64, Attribute>,
}

impl Catalog {
    /// Starts from `initial` (the catalog as read at start-up).
    pub fn new(eav: &Eav, initial: HashMap<i64, Attribute>) -> Catalog {
        let pair = |t: &crate::config::TableName| (t.schema.clone(), t.table.clone());
        Catalog {
            values: pair(&eav.values.value),
            catalog: pair(&eav.catalog.value),
            attribute_column: eav.attribute_column.clone(),
            name_column: eav.name_column.clone(),
            type_column: eav.type_column.clone(),
            key: eav.key.clone(),
            by_id: initial,
        }
    }

    /// What `t` is to the mapping, with its columns resolved: once per table version, not
    /// per change.
    pub fn role(&self, t: &Table) -> Result<Role, MissingColumn> {
        let is = |(schema, name): &(String, String)| t.schema == *schema && t.name == *name;
        Ok(if is(&self.catalog) {
            Role::Catalog(CatalogColumns {
                id: column(t, &self.attribute_column)?,
                name: column(t, &self.name_column)?,
                data_type: column(t, &self.type_column)?,
            })
        } else if is(&self.values) {
            Role::Values {
                attribute: column(t, &self.attribute_column)?,
            }
        } else {
            Role::Other
        })
    }

    /// The key columns of the value table (a prefix of its primary key).
    pub fn key_columns(&self, t: &Table) -> Result<Vec<usize>, MissingColumn> {
        self.key.iter().map(|k| column(t, k)).collect()
    }

    /// Applies a change of the catalog table. A deleted attribute keeps its last name, so
    /// value deletes that follow it still say what they were.
    pub fn apply(&mut self, change: &Change, columns: CatalogColumns) {
        if !matches!(change.op, Op::Insert | Op::Update | Op::Read) {
            return;
        }
        let Some(after) = &change.after else {
            return;
        };
        let Some(id) = integer(&after[columns.id]) else {
            return;
        };
        // An unchanged (TOASTed) name keeps the one the row had, under its old id if the
        // update changed that.
        let old_id = change.before.as_ref().and_then(|b| integer(&b[columns.id]));
        let previous = self.by_id.get(&old_id.unwrap_or(id)).cloned();
        let text = |d: &Datum, old: Option<&String>| match d {
            Datum::Value(Value::Text(s) | Value::Enum(s)) => Some(s.clone()),
            Datum::Value(v) => Some(v.to_pg_text()),
            Datum::Unchanged => old.cloned(),
            Datum::Null => None,
        };
        let attribute = Attribute {
            name: text(&after[columns.name], previous.as_ref().map(|p| &p.name))
                .unwrap_or_default(),
            data_type: text(
                &after[columns.data_type],
                previous.as_ref().map(|p| &p.data_type),
            )
            .unwrap_or_default(),
        };
        self.by_id.insert(id, attribute);
    }

    /// The attribute a value change refers to; `attribute` is the id column's position.
    pub fn lookup(&self, row: &Row, attribute: usize) -> Option<(i64, &Attribute)> {
        integer(&row[attribute]).and_then(|id| self.by_id.get(&id).map(|a| (id, a)))
    }

    /// Replays the catalog topic's records (decoded, in partition and offset order) that
    /// committed before `confirmed`: the slot never sends those again, so after a restart the
    /// names are the ones valid at the resume position rather than today's. Returns how many
    /// records were applied.
    pub fn restore(&mut self, records: &[serde_json::Value], confirmed: Lsn) -> usize {
        let mut applied = 0;
        // Identity order: one attribute's changes may span partitions when its id changed.
        let mut ordered: Vec<(Lsn, u64, &serde_json::Value)> = records
            .iter()
            .filter_map(|r| {
                let lsn = r["lsn"].as_str()?.parse::<Lsn>().ok()?;
                Some((lsn, r["seq"].as_u64().unwrap_or(0), r))
            })
            .collect();
        ordered.sort_by_key(|(lsn, seq, _)| (*lsn, *seq));
        for (lsn, _, r) in ordered {
            if lsn >= confirmed || !matches!(r["op"].as_str(), Some("c" | "u" | "r")) {
                continue;
            }
            let after = &r["after"];
            let Some(id) = after[&self.attribute_column].as_i64() else {
                continue;
            };
            let unchanged = |c: &str| {
                r["unchanged"]
                    .as_array()
                    .is_some_and(|u| u.iter().any(|x| x == c))
            };
            let previous = self.by_id.get(&id).cloned();
            let text = |column: &str, old: Option<String>| match after[column].as_str() {
                Some(s) => s.to_owned(),
                None if unchanged(column) => old.unwrap_or_default(),
                None => String::new(),
            };
            let attribute = Attribute {
                name: text(&self.name_column, previous.as_ref().map(|p| p.name.clone())),
                data_type: text(&self.type_column, previous.map(|p| p.data_type)),
            };
            self.by_id.insert(id, attribute);
            applied += 1;
        }
        applied
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn column(t: &Table, name: &str) -> Result<usize, MissingColumn> {
    t.columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| MissingColumn {
            table: format!("{}.{}", t.schema, t.name),
            column: name.to_owned(),
        })
}

fn integer(d: &Datum) -> Option<i64> {
    match d {
        Datum::Value(Value::Int2(i)) => Some(i64::from(*i)),
        Datum::Value(Value::Int4(i)) => Some(i64::from(*i)),
        Datum::Value(Value::Int8(i)) => Some(*i),
        _ => None,
    }
}

/// Reads the catalog as it is now: the starting state before the stream's own changes.
pub async fn load(
    client: &tokio_postgres::Client,
    eav: &Eav,
) -> Result<HashMap<i64, Attribute>, tokio_postgres::Error> {
    let q = crate::pg::quote_ident;
    let sql = format!(
        "SELECT {id}::int8, coalesce({}::text, ''), coalesce({}::text, '') FROM {}.{} WHERE {id} IS NOT NULL",
        q(&eav.name_column),
        q(&eav.type_column),
        q(&eav.catalog.value.schema),
        q(&eav.catalog.value.table),
        id = q(&eav.attribute_column),
    );
    let rows = client.query(&sql, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<_, i64>(0)?,
                Attribute {
                    name: r.try_get(1)?,
                    data_type: r.try_get(2)?,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::change::{Column, Table, TypeInfo, TypeKind};
    use crate::lsn::ChangeId;

    fn eav() -> Catalog {
        let yaml = "name: t\nsource:\n  url: postgresql://x@127.0.0.1/db\n  tables: [atlasco.attributes, atlasco.entity_values]\ntransform:\n  eav:\n    values: atlasco.entity_values\n    catalog: atlasco.attributes\n";
        let p = crate::config::parse(std::path::Path::new("t.yaml"), yaml, Default::default())
            .expect("pipeline");
        let initial = HashMap::from([(
            2,
            Attribute {
                name: "temperature".into(),
                data_type: "float".into(),
            },
        )]);
        Catalog::new(p.transform.eav.as_ref().expect("eav"), initial)
    }

    fn attributes() -> Arc<Table> {
        let col = |name: &str, oid: u32, kind: TypeKind| Column {
            name: name.into(),
            type_oid: oid,
            type_modifier: -1,
            ty: TypeInfo { oid, kind },
            key: name == "attribute_id",
        };
        Arc::new(Table {
            oid: 7,
            schema: "atlasco".into(),
            name: "attributes".into(),
            replica_identity: b'f',
            columns: vec![
                col("attribute_id", 23, TypeKind::Scalar),
                col("name", 25, TypeKind::Scalar),
                col("data_type", 90000, TypeKind::Enum),
            ],
        })
    }

    fn change(op: Op, after: Option<Row>) -> Change {
        Change {
            id: ChangeId {
                commit_lsn: Lsn(1),
                seq: 0,
            },
            op,
            table: attributes(),
            before: None,
            after,
        }
    }

    fn row(id: i32, name: Datum, ty: &str) -> Row {
        vec![
            Datum::Value(Value::Int4(id)),
            name,
            Datum::Value(Value::Enum(ty.into())),
        ]
    }

    #[test]
    fn catalog_changes_rename_add_and_keep_unchanged_names() {
        let mut c = eav();
        let t = attributes();
        let Role::Catalog(cols) = c.role(&t).unwrap() else {
            panic!("the catalog table has the catalog role")
        };
        let renamed = row(2, Datum::Value(Value::Text("temp_c".into())), "float");
        c.apply(&change(Op::Update, Some(renamed)), cols);
        c.apply(
            &change(
                Op::Insert,
                Some(row(5, Datum::Value(Value::Text("fw".into())), "string")),
            ),
            cols,
        );
        // A TOASTed name an update did not touch keeps the name it had.
        c.apply(
            &change(Op::Update, Some(row(5, Datum::Unchanged, "integer"))),
            cols,
        );
        // A delete keeps the last name, for the value deletes that follow it.
        c.apply(&change(Op::Delete, None), cols);
        let lookup = |id: i32| {
            c.lookup(&row(id, Datum::Null, "x"), cols.id)
                .map(|(i, a)| (i, a.name.clone(), a.data_type.clone()))
        };
        assert_eq!(lookup(2), Some((2, "temp_c".into(), "float".into())));
        assert_eq!(lookup(5), Some((5, "fw".into(), "integer".into())));
        assert_eq!(lookup(9), None);
    }

    #[test]
    fn restore_applies_only_what_the_slot_will_not_send_again() {
        let mut c = eav();
        let record = |lsn: &str, op: &str, id: i64, name: &str| {
            serde_json::json!({"lsn": lsn, "op": op, "unchanged": [],
                "after": {"attribute_id": id, "name": name, "data_type": "float"}})
        };
        let records = [
            record("0/10", "r", 2, "temperature"),
            record("0/20", "u", 2, "temp_c"),
            record("0/30", "u", 2, "temp_k"),
        ];
        // Confirmed 0/25: the rename at 0/30 is replayed from the slot, not restored.
        assert_eq!(c.restore(&records, Lsn(0x25)), 2);
        let got = c
            .lookup(&row(2, Datum::Null, "x"), 0)
            .map(|(_, a)| a.name.clone());
        assert_eq!(got.as_deref(), Some("temp_c"));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_catalog_without_the_configured_column_is_an_error_naming_it() {
        let c = eav();
        let mut t = (*attributes()).clone();
        t.columns.remove(1);
        let err = c.role(&t).unwrap_err();
        assert_eq!(
            (err.table.as_str(), err.column.as_str()),
            ("atlasco.attributes", "name")
        );
    }
}
