//! The attribute catalog as the transform sees it: updated from the catalog table's own
//! changes in WAL order, so each value change carries the name valid at its commit.
//!
//! The catalog is state, kept in Kafka (a compacted topic, one record per attribute with its
//! whole history) and written before any position that depends on it is acknowledged. A
//! restart takes, per attribute, the version valid at the slot's confirmed position, whatever
//! the retention of the catalog table's own topic and whatever the snapshot mode.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::change::{Change, Datum, Op, Row, Table, Value};
use crate::config::Eav;
use crate::lsn::{ChangeId, Lsn};

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

/// The compacted topic that keeps the attribute catalog's state: `{prefix}._attributes`.
pub fn state_topic(prefix: &str) -> String {
    format!("{prefix}._attributes")
}

/// The state topic's last record of a complete write of the whole catalog (key, value); a
/// topic without it holds a write that was cut short.
pub const COMPLETE_KEY: &[u8] = b"complete";
pub const COMPLETE_VALUE: &[u8] = br#"{"complete":true}"#;

/// One attribute's versions, oldest first: the state topic's record for it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct History {
    pub id: i64,
    pub versions: Vec<Version>,
}

/// An attribute as a catalog change left it. `lsn`/`seq` are that change's identity; the
/// versions of the catalog as loaded at the slot's start carry 0/0, valid for every change
/// the slot streams.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    pub lsn: Lsn,
    pub seq: u32,
    pub name: String,
    pub data_type: String,
}

pub struct Catalog {
    values: (String, String),
    pub catalog: (String, String),
    attribute_column: String,
    name_column: String,
    type_column: String,
    key: Vec<String>,
    by_id: HashMap<i64, Attribute>,
    history: HashMap<i64, Vec<Version>>,
}

impl Catalog {
    /// Starts from `initial`: the catalog as read at the slot's start (see [`Catalog::loaded`])
    /// or as restored from the state topic (see [`Catalog::restored`]).
    fn new(eav: &Eav, history: HashMap<i64, Vec<Version>>) -> Catalog {
        let pair = |t: &crate::config::TableName| (t.schema.clone(), t.table.clone());
        let by_id = history
            .iter()
            .filter_map(|(id, versions)| {
                let v = versions.last()?;
                Some((
                    *id,
                    Attribute {
                        name: v.name.clone(),
                        data_type: v.data_type.clone(),
                    },
                ))
            })
            .collect();
        Catalog {
            values: pair(&eav.values.value),
            catalog: pair(&eav.catalog.value),
            attribute_column: eav.attribute_column.clone(),
            name_column: eav.name_column.clone(),
            type_column: eav.type_column.clone(),
            key: eav.key.clone(),
            by_id,
            history,
        }
    }

    /// The catalog as read from the database at the slot's start: every attribute's first
    /// version, valid for everything the slot streams.
    pub fn loaded(eav: &Eav, initial: HashMap<i64, Attribute>) -> Catalog {
        let history = initial
            .into_iter()
            .map(|(id, a)| {
                let first = Version {
                    lsn: Lsn(0),
                    seq: 0,
                    name: a.name,
                    data_type: a.data_type,
                };
                (id, vec![first])
            })
            .collect();
        Catalog::new(eav, history)
    }

    /// The catalog as of the slot's confirmed position, from the state topic's histories (in
    /// offset order; a later record of an attribute replaces an earlier one). Versions at or
    /// after `confirmed` are left out: the slot streams their changes again.
    pub fn restored(
        eav: &Eav,
        records: impl IntoIterator<Item = History>,
        confirmed: Lsn,
    ) -> Catalog {
        let mut history: HashMap<i64, Vec<Version>> = HashMap::new();
        for record in records {
            history.insert(record.id, record.versions);
        }
        for versions in history.values_mut() {
            versions.retain(|v| v.lsn < confirmed);
        }
        history.retain(|_, versions| !versions.is_empty());
        Catalog::new(eav, history)
    }

    /// Every attribute's history, for a state topic that holds none yet.
    pub fn histories(&self) -> impl Iterator<Item = History> + '_ {
        self.history.iter().map(|(id, versions)| History {
            id: *id,
            versions: versions.clone(),
        })
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

    /// Applies a change of the catalog table; returns the attribute's new history for the
    /// state topic. A deleted attribute keeps its last name, so value deletes that follow it
    /// still say what they were.
    pub fn apply(&mut self, change: &Change, columns: CatalogColumns) -> Option<History> {
        if !matches!(change.op, Op::Insert | Op::Update | Op::Read) {
            return None;
        }
        let after = change.after.as_ref()?;
        let id = integer(&after[columns.id])?;
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
        if self.by_id.get(&id) == Some(&attribute) {
            return None;
        }
        let ChangeId { commit_lsn, seq } = change.id;
        let versions = self.history.entry(id).or_default();
        versions.push(Version {
            lsn: commit_lsn,
            seq,
            name: attribute.name.clone(),
            data_type: attribute.data_type.clone(),
        });
        self.by_id.insert(id, attribute);
        Some(History {
            id,
            versions: versions.clone(),
        })
    }

    /// The attribute a value change refers to; `attribute` is the id column's position.
    pub fn lookup(&self, row: &Row, attribute: usize) -> Option<(i64, &Attribute)> {
        integer(&row[attribute]).and_then(|id| self.by_id.get(&id).map(|a| (id, a)))
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
        let initial = HashMap::from([(
            2,
            Attribute {
                name: "temperature".into(),
                data_type: "float".into(),
            },
        )]);
        Catalog::loaded(&eav_config(), initial)
    }

    fn eav_config() -> Eav {
        let yaml = "name: t\nsource:\n  url: postgresql://x@127.0.0.1/db\n  tables: [atlasco.attributes, atlasco.entity_values]\ntransform:\n  eav:\n    values: atlasco.entity_values\n    catalog: atlasco.attributes\n";
        let p = crate::config::parse(std::path::Path::new("t.yaml"), yaml, Default::default())
            .expect("pipeline");
        p.transform.eav.expect("eav")
    }

    fn attributes() -> Arc<Table> {
        let col = |name: &str, oid: u32, kind: TypeKind| Column {
            name: name.into(),
            type_oid: oid,
            type_modifier: -1,
            ty: TypeInfo { oid, kind },
            key: name == "attribute_id",
            nullable: name != "attribute_id",
        };
        Arc::new(Table {
            oid: 7,
            schema: "atlasco".into(),
            name: "attributes".into(),
            replica_identity: b'f',
            columns: vec![
                col("attribute_id", 23, TypeKind::Scalar),
                col("name", 25, TypeKind::Scalar),
                col("data_type", 90000, TypeKind::Enum(Default::default())),
            ],
        })
    }

    fn change(op: Op, after: Option<Row>) -> Change {
        Change {
            id: ChangeId {
                commit_lsn: Lsn(1),
                seq: 0,
            },
            lsn: Lsn(1),
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
    fn histories_restore_the_version_valid_at_the_confirmed_position() {
        let mut c = eav();
        let t = attributes();
        let Role::Catalog(cols) = c.role(&t).unwrap() else {
            panic!("the catalog table has the catalog role")
        };
        let at = |lsn: u64, name: &str| Change {
            id: ChangeId {
                commit_lsn: Lsn(lsn),
                seq: 0,
            },
            ..change(
                Op::Update,
                Some(row(2, Datum::Value(Value::Text(name.into())), "float")),
            )
        };
        assert!(c.apply(&at(0x20, "temp_c"), cols).is_some());
        let last = c.apply(&at(0x30, "temp_k"), cols).expect("a new version");
        let names: Vec<(Lsn, &str)> = last
            .versions
            .iter()
            .map(|v| (v.lsn, v.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (Lsn(0), "temperature"),
                (Lsn(0x20), "temp_c"),
                (Lsn(0x30), "temp_k")
            ]
        );
        // The same name again (a snapshot read of the row) is no new version.
        assert!(c.apply(&at(0x40, "temp_k"), cols).is_none());

        // The state topic holds an older record of the attribute, then the latest; confirmed
        // 0/25: the rename at 0/30 is streamed again, so it is not restored.
        let older = History {
            id: 2,
            versions: last.versions[..2].to_vec(),
        };
        let name = |c: &Catalog| {
            c.lookup(&row(2, Datum::Null, "x"), 0)
                .map(|(_, a)| a.name.clone())
        };
        let restored = Catalog::restored(&eav_config(), [older.clone(), last.clone()], Lsn(0x25));
        assert_eq!(name(&restored).as_deref(), Some("temp_c"));
        let restored = Catalog::restored(&eav_config(), [older, last.clone()], Lsn(0x31));
        assert_eq!(name(&restored).as_deref(), Some("temp_k"));
        // Confirmed before the attribute existed (its first version at 0/20): unknown.
        let created = History {
            id: 2,
            versions: last.versions[1..].to_vec(),
        };
        let restored = Catalog::restored(&eav_config(), [created], Lsn(0x10));
        assert_eq!(name(&restored), None);
        assert!(restored.is_empty());
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
