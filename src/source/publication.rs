//! The publication: created when missing (if allowed), and verified at every start before the
//! slot streams. A publication that does not send a configured table under that table's own
//! name would let its changes pass unrecognised while their commits are confirmed, so every
//! gap here stops the start, and `freshet check` reports the same gaps with their fixes.

use tokio_postgres::Client;
use tracing::{info, warn};

use super::SourceError;
use crate::config::{Source, TableName};
use crate::pg::quote_ident;

/// Why a configured table's changes would not arrive as that table's changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gap {
    /// The table does not exist (renamed or dropped since it was configured).
    NoTable(TableName),
    /// The publication does not include the table.
    NotPublished(TableName),
    /// A partitioned table whose partitions are published under their own names: pgoutput
    /// would name every change after its leaf partition.
    NotViaRoot(TableName),
    /// A partition whose root the publication publishes via the root: its changes arrive
    /// under the root's name, never under its own.
    UnderRoot { table: TableName, root: String },
    /// A PostgreSQL 15 column list or row filter: the stream would carry part of the table
    /// while the snapshot reads all of it.
    Filtered { table: TableName, what: String },
}

impl Gap {
    /// What is wrong, in one line.
    pub fn what(&self, publication: &str) -> String {
        match self {
            Gap::NoTable(t) => format!("table {t} does not exist (renamed or dropped?)"),
            Gap::NotPublished(t) => format!("publication {publication:?} does not cover {t}"),
            Gap::NotViaRoot(t) => format!(
                "publication {publication:?} publishes the partitions of {t} under their own \
                 names (publish_via_partition_root is off), so its changes would not be \
                 recognised as {t}'s"
            ),
            Gap::UnderRoot { table, root } => format!(
                "{table} is a partition of {root}, which publication {publication:?} publishes \
                 via the root: its changes arrive as {root}'s"
            ),
            Gap::Filtered { table, what } => {
                format!("publication {publication:?} sends only part of {table}: {what}")
            }
        }
    }

    /// The statement or step that closes the gap.
    pub fn fix(&self, publication: &str) -> String {
        let p = quote_ident(publication);
        match self {
            Gap::NoTable(_) => {
                "create it, or remove it from source.tables (a renamed table is a new table)".into()
            }
            Gap::NotPublished(t) => format!("ALTER PUBLICATION {p} ADD TABLE {t}"),
            Gap::UnderRoot { root, .. } => {
                format!("capture {root} instead: put it in source.tables in place of the partition")
            }
            Gap::NotViaRoot(_) => {
                format!("ALTER PUBLICATION {p} SET (publish_via_partition_root = true)")
            }
            Gap::Filtered { table, .. } => format!(
                "ALTER PUBLICATION {p} SET TABLE {table} (without a column list or WHERE), or \
                 capture it through a publication of its own"
            ),
        }
    }
}

/// Creates the publication when it is missing and allowed to.
pub async fn ensure(client: &Client, source: &Source) -> Result<(), SourceError> {
    if exists(client, &source.publication).await? {
        return Ok(());
    }
    if !source.create_publication {
        return Err(SourceError::Publication(format!(
            "publication {:?} does not exist and source.create_publication is false: \
             CREATE PUBLICATION {} FOR TABLE ... WITH (publish_via_partition_root = true)",
            source.publication,
            quote_ident(&source.publication)
        )));
    }
    let tables: Vec<String> = source.tables.iter().map(|t| t.value.to_string()).collect();
    let sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)",
        quote_ident(&source.publication),
        tables.join(", ")
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|error| SourceError::Catalog {
            what: format!("creating publication {:?}", source.publication),
            error,
        })?;
    info!(publication = %source.publication, tables = tables.len(), "publication created");
    Ok(())
}

/// Ensures the publication, then refuses to go on while any configured table has a gap.
/// Warns about what a correct publication still cannot send (see [`root_blind_spots`]).
pub async fn verify(client: &Client, source: &Source) -> Result<(), SourceError> {
    ensure(client, source).await?;
    let gaps = gaps(client, source).await?;
    if !gaps.is_empty() {
        let lines: Vec<String> = gaps
            .iter()
            .map(|g| {
                format!(
                    "  {}\n    -> {}",
                    g.what(&source.publication),
                    g.fix(&source.publication)
                )
            })
            .collect();
        return Err(SourceError::Publication(format!(
            "nothing was read from the slot; fix the publication, then start again:\n{}",
            lines.join("\n")
        )));
    }
    for table in root_blind_spots(client, source).await? {
        warn!(%table, "{}", BLIND_SPOT);
    }
    Ok(())
}

/// What PostgreSQL does not replicate for a table published via its partition root.
pub const BLIND_SPOT: &str = "TRUNCATE of a single partition and ATTACH PARTITION of a \
    populated table are not replicated when publishing via the root: truncate the root \
    instead, and after an ATTACH run `freshet snapshot --table` on the root";

pub async fn exists(client: &Client, publication: &str) -> Result<bool, SourceError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: "reading pg_publication".into(),
            error,
        })?
        .is_some())
}

/// Every configured table's gap, in configuration order. The publication must exist.
pub async fn gaps(client: &Client, source: &Source) -> Result<Vec<Gap>, SourceError> {
    let catalog = |error| SourceError::Catalog {
        what: format!("reading publication {:?}", source.publication),
        error,
    };
    let mut gaps = Vec::new();
    for t in &source.tables {
        let t = &t.value;
        // pg_publication_tables lists what the stream will name: the root when published via
        // the root, else each leaf. Column lists and row filters are PostgreSQL 15's.
        let row = client
            .query_opt(
                "SELECT c.relkind::text,
                        pt.tablename IS NOT NULL,
                        pt.rowfilter,
                        (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attgenerated = '' AND NOT (a.attname = ANY (pt.attnames))),
                        EXISTS (SELECT 1 FROM pg_partition_tree(c.oid) leaf
                                JOIN pg_class lc ON lc.oid = leaf.relid
                                JOIN pg_namespace ln ON ln.oid = lc.relnamespace
                                JOIN pg_publication_tables lp ON lp.pubname = $3
                                  AND lp.schemaname = ln.nspname AND lp.tablename = lc.relname
                                WHERE leaf.relid <> c.oid),
                        (SELECT format('%I.%I', rn.nspname, rc.relname)
                         FROM pg_partition_ancestors(c.oid) up
                         JOIN pg_class rc ON rc.oid = up.relid
                         JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                         JOIN pg_publication_tables rp ON rp.pubname = $3
                           AND rp.schemaname = rn.nspname AND rp.tablename = rc.relname
                         WHERE up.relid <> c.oid LIMIT 1)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_publication_tables pt ON pt.pubname = $3
                   AND pt.schemaname = n.nspname AND pt.tablename = c.relname
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&t.schema, &t.table, &source.publication],
            )
            .await
            .map_err(catalog)?;
        let Some(row) = row else {
            gaps.push(Gap::NoTable(t.clone()));
            continue;
        };
        let kind: String = row.get(0);
        let published: bool = row.get(1);
        let rowfilter: Option<String> = row.get(2);
        let left_out: Option<Vec<String>> = row.get(3);
        let leaves_published: bool = row.get(4);
        let published_root: Option<String> = row.get(5);
        if !published {
            gaps.push(match published_root {
                Some(root) => Gap::UnderRoot {
                    table: t.clone(),
                    root,
                },
                None if kind == "p" && leaves_published => Gap::NotViaRoot(t.clone()),
                None => Gap::NotPublished(t.clone()),
            });
            continue;
        }
        if let Some(filter) = rowfilter {
            gaps.push(Gap::Filtered {
                table: t.clone(),
                what: format!("row filter WHERE {filter}"),
            });
        }
        if let Some(columns) = left_out.filter(|c| !c.is_empty()) {
            gaps.push(Gap::Filtered {
                table: t.clone(),
                what: format!("its column list leaves out {}", columns.join(", ")),
            });
        }
    }
    Ok(gaps)
}

/// The configured partitioned tables that the publication publishes via their root.
pub async fn root_blind_spots(
    client: &Client,
    source: &Source,
) -> Result<Vec<TableName>, SourceError> {
    let mut out = Vec::new();
    for t in &source.tables {
        let t = &t.value;
        let row = client
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_publication p ON p.pubname = $3
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'p' AND p.pubviaroot",
                &[&t.schema, &t.table, &source.publication],
            )
            .await
            .map_err(|error| SourceError::Catalog {
                what: format!("reading publication {:?}", source.publication),
                error,
            })?;
        if row.is_some() {
            out.push(t.clone());
        }
    }
    Ok(out)
}

/// The configured table that `oid` is a partition of, if any: its changes arriving under the
/// partition's own name would otherwise pass as an unknown table's.
pub async fn configured_root(
    client: &Client,
    oid: u32,
    configured: &[TableName],
) -> Result<Option<TableName>, SourceError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
             FROM pg_partition_ancestors($1::int8::oid::regclass) a
             JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE a.relid <> $1::int8::oid",
            &[&(oid as i64)],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: format!("reading the partition ancestors of relation {oid}"),
            error,
        })?;
    Ok(rows
        .iter()
        .map(|r| TableName {
            schema: r.get(0),
            table: r.get(1),
        })
        .find(|t| configured.contains(t)))
}
