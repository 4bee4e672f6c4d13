//! The relation cache: what each relation OID in the stream means, as of the last Relation
//! message for it, with every column's type resolved for decoding.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Client;

use super::pgoutput::{self, Tuple, TupleValue};
use super::value::{self, oid, TypeInfo, TypeKind};
use super::SourceError;
use crate::change::{Column, Datum, Row, Table};

/// Built-in scalar types the value decoder knows by OID (the fuzz target feeds it each).
pub const SCALARS: &[u32] = &[
    oid::BOOL,
    oid::BYTEA,
    oid::CHAR,
    oid::NAME,
    oid::INT8,
    oid::INT2,
    oid::INT4,
    oid::TEXT,
    oid::OID,
    oid::JSON,
    oid::FLOAT4,
    oid::FLOAT8,
    oid::BPCHAR,
    oid::VARCHAR,
    oid::DATE,
    oid::TIME,
    oid::TIMESTAMP,
    oid::TIMESTAMPTZ,
    oid::NUMERIC,
    oid::UUID,
    oid::JSONB,
];

/// Built-in array types (`pg_type.typarray`) and their elements, so the common arrays need
/// no catalog query.
const ARRAYS: &[(u32, u32)] = &[
    (1000, oid::BOOL),
    (1001, oid::BYTEA),
    (1002, oid::CHAR),
    (1003, oid::NAME),
    (1016, oid::INT8),
    (1005, oid::INT2),
    (1007, oid::INT4),
    (1009, oid::TEXT),
    (1028, oid::OID),
    (199, oid::JSON),
    (1021, oid::FLOAT4),
    (1022, oid::FLOAT8),
    (1014, oid::BPCHAR),
    (1015, oid::VARCHAR),
    (1182, oid::DATE),
    (1183, oid::TIME),
    (1115, oid::TIMESTAMP),
    (1185, oid::TIMESTAMPTZ),
    (1231, oid::NUMERIC),
    (2951, oid::UUID),
    (3807, oid::JSONB),
];

#[derive(Default)]
pub struct Relations {
    relations: HashMap<u32, Arc<Table>>,
    types: HashMap<u32, TypeInfo>,
}

impl Relations {
    /// Records a Relation message, resolving user-defined types (enums, domains, their
    /// arrays) through the catalog connection.
    pub async fn apply(
        &mut self,
        rel: pgoutput::Relation,
        catalog: &Client,
    ) -> Result<Arc<Table>, SourceError> {
        let table = self.build(rel, catalog).await?;
        self.relations.insert(table.oid, table.clone());
        Ok(table)
    }

    async fn build(
        &mut self,
        rel: pgoutput::Relation,
        catalog: &Client,
    ) -> Result<Arc<Table>, SourceError> {
        let mut types = Vec::with_capacity(rel.columns.len());
        for c in &rel.columns {
            types.push(self.resolve(c.type_oid, catalog, 0).await?);
        }
        // The catalog as of now, not as of the Relation message: a column made NOT NULL
        // since may still stream older NULLs, which the transform takes in its stride.
        let not_null: Vec<String> = catalog
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped AND attnotnull",
                &[&i64::from(rel.oid)],
            )
            .await
            .map_err(|error| SourceError::Catalog {
                what: format!("reading the NOT NULL columns of {}.{}", rel.namespace, rel.name),
                error,
            })?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Arc::new(Table {
            oid: rel.oid,
            schema: rel.namespace,
            name: rel.name,
            replica_identity: rel.replica_identity,
            columns: rel
                .columns
                .into_iter()
                .zip(types)
                .map(|(c, ty)| Column {
                    ty,
                    type_oid: c.type_oid,
                    type_modifier: c.type_modifier,
                    key: c.flags & 1 == 1,
                    nullable: !not_null.contains(&c.name),
                    name: c.name,
                })
                .collect(),
        }))
    }

    pub fn table(&self, oid: u32) -> Result<&Arc<Table>, SourceError> {
        self.relations
            .get(&oid)
            .ok_or(SourceError::UnknownRelation(oid))
    }

    /// Decodes a tuple of relation `oid` into typed datums.
    pub fn row(&self, oid: u32, tuple: &Tuple) -> Result<Row, SourceError> {
        decode(self.table(oid)?, tuple)
    }

    /// The table a snapshot chunk was read with (from the catalog, in the chunk's own
    /// transaction): the cached one when the stream described the same columns. Otherwise a
    /// table of the chunk's own, which the stream's cache never takes: an ADD or DROP COLUMN
    /// that no change has carried yet reaches the chunk's rows, and a chunk read before a DDL
    /// that the stream has already seen cannot put the older shape back.
    pub async fn for_snapshot(
        &mut self,
        relation: pgoutput::Relation,
        catalog: &Client,
    ) -> Result<Arc<Table>, SourceError> {
        if let Some(cached) = self.relations.get(&relation.oid) {
            let same = cached.columns.len() == relation.columns.len()
                && cached.columns.iter().zip(&relation.columns).all(|(a, b)| {
                    a.name == b.name
                        && a.type_oid == b.type_oid
                        && a.type_modifier == b.type_modifier
                });
            if same {
                return Ok(cached.clone());
            }
        }
        self.build(relation, catalog).await
    }

    /// Decodes column texts (None: NULL) of `table`, as a snapshot selected them.
    pub fn row_from_texts(table: &Table, texts: &[Option<String>]) -> Result<Row, SourceError> {
        let tuple: Tuple = texts
            .iter()
            .map(|t| match t {
                Some(s) => TupleValue::Text(bytes::Bytes::from(s.clone())),
                None => TupleValue::Null,
            })
            .collect();
        decode(table, &tuple)
    }

    async fn resolve(
        &mut self,
        oid: u32,
        catalog: &Client,
        depth: u8,
    ) -> Result<TypeInfo, SourceError> {
        if SCALARS.contains(&oid) {
            return Ok(TypeInfo {
                oid,
                kind: TypeKind::Scalar,
            });
        }
        if let Some(&(_, elem)) = ARRAYS.iter().find(|(a, _)| *a == oid) {
            return Ok(TypeInfo {
                oid,
                kind: TypeKind::Array(Box::new(TypeInfo {
                    oid: elem,
                    kind: TypeKind::Scalar,
                })),
            });
        }
        if let Some(t) = self.types.get(&oid) {
            return Ok(t.clone());
        }
        let row = catalog
            .query_opt("SELECT typtype::text, typelem::int8, typbasetype::int8, typcategory::text FROM pg_type WHERE oid = $1::int8::oid", &[&(oid as i64)])
            .await
            .map_err(|error| SourceError::Catalog { what: format!("looking up type {oid}"), error })?;
        let info = match row {
            None => TypeInfo {
                oid,
                kind: TypeKind::Other,
            },
            Some(r) => {
                let (typtype, elem, base, category): (String, i64, i64, String) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                if typtype == "e" {
                    let labels: Vec<String> = catalog
                        .query("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::int8::oid ORDER BY enumsortorder", &[&(oid as i64)])
                        .await
                        .map_err(|error| SourceError::Catalog { what: format!("reading the labels of enum type {oid}"), error })?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    TypeInfo {
                        oid,
                        kind: TypeKind::Enum(labels.into()),
                    }
                } else if typtype == "d" && base != 0 && depth < 8 {
                    // A domain's text is its base type's text.
                    Box::pin(self.resolve(base as u32, catalog, depth + 1)).await?
                } else if category == "A" && elem != 0 && depth < 8 {
                    let elem = Box::pin(self.resolve(elem as u32, catalog, depth + 1)).await?;
                    TypeInfo {
                        oid,
                        kind: TypeKind::Array(Box::new(elem)),
                    }
                } else {
                    TypeInfo {
                        oid,
                        kind: TypeKind::Other,
                    }
                }
            }
        };
        // An enum's labels grow (ALTER TYPE ... ADD VALUE): read again with each Relation.
        if !has_enum(&info) {
            self.types.insert(oid, info.clone());
        }
        Ok(info)
    }
}

fn has_enum(t: &TypeInfo) -> bool {
    match &t.kind {
        TypeKind::Enum(_) => true,
        TypeKind::Array(e) => has_enum(e),
        _ => false,
    }
}

fn decode(table: &Table, tuple: &Tuple) -> Result<Row, SourceError> {
    if tuple.len() != table.columns.len() {
        return Err(SourceError::Shape {
            table: format!("{}.{}", table.schema, table.name),
            expected: table.columns.len(),
            got: tuple.len(),
        });
    }
    tuple
        .iter()
        .zip(&table.columns)
        .map(|(v, c)| match v {
            TupleValue::Null => Ok(Datum::Null),
            TupleValue::Unchanged => Ok(Datum::Unchanged),
            TupleValue::Text(bytes) | TupleValue::Binary(bytes) => {
                let column = || format!("{}.{}.{}", table.schema, table.name, c.name);
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| SourceError::NotUtf8 { column: column() })?;
                value::parse_text(&c.ty, text)
                    .map(Datum::Value)
                    .map_err(|error| SourceError::Value {
                        column: column(),
                        error,
                    })
            }
        })
        .collect()
}
