//! `freshet check`'s live half: does the server let this pipeline capture what it is told to?

use tokio_postgres::Client;

use super::publication;
use crate::config::{SnapshotMode, Source, TableName};
use crate::pg;

/// One prerequisite: met, or not with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    /// Met, but with a caveat the operator must know about (`fix` says what to do).
    pub warn: bool,
    pub what: String,
    /// What to do when not ok, or about the caveat.
    pub fix: String,
}

impl Finding {
    pub fn ok(what: impl Into<String>) -> Finding {
        Finding {
            ok: true,
            warn: false,
            what: what.into(),
            fix: String::new(),
        }
    }
    pub fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            ok: true,
            warn: true,
            what: what.into(),
            fix: fix.into(),
        }
    }
    pub fn bad(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            ok: false,
            warn: false,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

/// Runs every check; a failing query is itself a finding, so one problem hides no other.
pub async fn run(source: &Source) -> Vec<Finding> {
    let config = source.url.to_config();
    let client = match pg::connect(&config).await {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::bad(
                e.to_string(),
                "check source.url, the server and pg_hba.conf",
            )]
        }
    };
    let mut found = Vec::new();
    server_settings(&client, source, &mut found).await;
    privileges(&client, &mut found).await;
    publication(&client, source, &mut found).await;
    identities(&client, source, &mut found).await;
    existing_slot(&client, source, &mut found).await;
    found
}

async fn query_one(
    client: &Client,
    sql: &str,
    found: &mut Vec<Finding>,
) -> Option<tokio_postgres::Row> {
    match client.query_one(sql, &[]).await {
        Ok(r) => Some(r),
        Err(e) => {
            found.push(Finding::bad(
                format!("query failed: {}", pg::describe(&e)),
                "see the server log",
            ));
            None
        }
    }
}

async fn server_settings(client: &Client, source: &Source, found: &mut Vec<Finding>) {
    let Some(r) = query_one(
        client,
        "SELECT current_setting('wal_level'),
                current_setting('max_replication_slots')::int,
                (SELECT count(*) FROM pg_replication_slots)::int,
                current_setting('max_wal_senders')::int,
                (SELECT count(*) FROM pg_stat_replication)::int,
                current_setting('server_version_num')::int",
        found,
    )
    .await
    else {
        return;
    };
    let (wal_level, max_slots, slots, max_senders, senders, version): (
        String,
        i32,
        i32,
        i32,
        i32,
        i32,
    ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
    found.push(if wal_level == "logical" {
        Finding::ok("wal_level = logical")
    } else {
        Finding::bad(
            format!("wal_level = {wal_level}: logical decoding is off"),
            "set wal_level = logical (RDS: rds.logical_replication = 1) and restart the server",
        )
    });
    found.push(if version >= 150000 {
        Finding::ok(format!("server version {version}"))
    } else {
        Finding::bad(
            format!("server version {version}"),
            "Freshet needs PostgreSQL 15 or later",
        )
    });
    let slot_exists = client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&source.slot],
        )
        .await
        .map(|r| r.is_some())
        .unwrap_or(false);
    found.push(if slot_exists || slots < max_slots {
        Finding::ok(format!("replication slots: {slots} of {max_slots} used"))
    } else {
        Finding::bad(
            format!(
                "replication slots: all {max_slots} are used and {:?} is not one of them",
                source.slot
            ),
            "drop an unused slot (pg_drop_replication_slot) or raise max_replication_slots",
        )
    });
    found.push(if senders < max_senders {
        Finding::ok(format!("WAL senders: {senders} of {max_senders} busy"))
    } else {
        Finding::bad(
            format!("WAL senders: all {max_senders} are busy"),
            "raise max_wal_senders",
        )
    });
}

async fn privileges(client: &Client, found: &mut Vec<Finding>) {
    let Some(r) = query_one(
        client,
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
        found,
    )
    .await
    else {
        return;
    };
    let replication: bool = r.get(0);
    found.push(if replication {
        Finding::ok("role may replicate")
    } else {
        Finding::bad(
            "the role lacks the REPLICATION attribute",
            "ALTER ROLE <user> REPLICATION (RDS: GRANT rds_replication TO <user>)",
        )
    });
}

async fn publication(client: &Client, source: &Source, found: &mut Vec<Finding>) {
    let exists = match publication::exists(client, &source.publication).await {
        Ok(exists) => exists,
        Err(e) => return found.push(Finding::bad(e.to_string(), "see the server log")),
    };
    if !exists {
        found.push(if source.create_publication {
            Finding::ok(format!("publication {:?} is missing; run will create it", source.publication))
        } else {
            Finding::bad(
                format!("publication {:?} does not exist", source.publication),
                format!(
                    "CREATE PUBLICATION {} FOR TABLE ... WITH (publish_via_partition_root = true), or set source.create_publication: true",
                    pg::quote_ident(&source.publication)
                ),
            )
        });
        return;
    }
    let gaps = match publication::gaps(client, source).await {
        Ok(gaps) => gaps,
        Err(e) => return found.push(Finding::bad(e.to_string(), "see the server log")),
    };
    let p = &source.publication;
    found.extend(gaps.iter().map(|g| Finding::bad(g.what(p), g.fix(p))));
    if gaps.is_empty() {
        found.push(Finding::ok(format!(
            "publication {p:?} covers all {} tables",
            source.tables.len()
        )));
    }
    match publication::root_blind_spots(client, source).await {
        Ok(tables) => found.extend(tables.iter().map(|t| {
            Finding::warn(
                format!("{t} is published via its partition root"),
                publication::BLIND_SPOT,
            )
        })),
        Err(e) => found.push(Finding::bad(e.to_string(), "see the server log")),
    }
}

async fn identities(client: &Client, source: &Source, found: &mut Vec<Finding>) {
    for t in &source.tables {
        let t = &t.value;
        // A partitioned table's identity lives on its leaves: every leaf must qualify.
        let rows = client
            .query(
                "WITH RECURSIVE tree AS (
                   SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = $1 AND c.relname = $2
                   UNION ALL
                   SELECT i.inhrelid, c.relkind FROM tree JOIN pg_inherits i ON i.inhparent = tree.oid
                   JOIN pg_class c ON c.oid = i.inhrelid)
                 SELECT c.oid::regclass::text, c.relreplident::text, tree.relkind::text,
                        EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary),
                        EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisreplident)
                 FROM tree JOIN pg_class c ON c.oid = tree.oid WHERE tree.relkind IN ('r', 'p')",
                &[&t.schema, &t.table],
            )
            .await;
        let rows = match rows {
            Ok(rows) if rows.is_empty() => {
                found.push(Finding::bad(
                    format!("table {t} does not exist"),
                    "create it, or remove it from source.tables",
                ));
                continue;
            }
            Ok(rows) => rows,
            Err(e) => {
                found.push(Finding::bad(
                    format!("reading {t}: {}", pg::describe(&e)),
                    "see the server log",
                ));
                continue;
            }
        };
        let mut blocked = Vec::new();
        for r in &rows {
            let (name, ident, kind, pk, ident_index): (String, String, String, bool, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let ok = match ident.as_str() {
                "f" => true,
                "d" => pk,
                "i" => ident_index,
                _ => false,
            };
            // A partitioned parent holds no rows; only its leaves need an identity.
            if !ok && kind != "p" {
                blocked.push(name);
            }
        }
        if source.snapshot.mode == SnapshotMode::Initial && !has_primary_key(client, t).await {
            found.push(Finding::bad(
                format!(
                    "{t}: no primary key, so the initial snapshot cannot read it in key chunks"
                ),
                "add a primary key, or set source.snapshot.mode: never",
            ));
        }
        found.push(if blocked.is_empty() {
            Finding::ok(format!("{t}: updates and deletes can be captured"))
        } else {
            Finding::bad(
                format!("{t}: updates and deletes of {} cannot be captured (no primary key, REPLICA IDENTITY DEFAULT or NOTHING)", blocked.join(", ")),
                format!("add a primary key, or ALTER TABLE {} REPLICA IDENTITY FULL", blocked[0]),
            )
        });
    }
}

async fn has_primary_key(client: &Client, t: &TableName) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary",
            &[&t.schema, &t.table],
        )
        .await
        .is_ok_and(|r| r.is_some())
}

async fn existing_slot(client: &Client, source: &Source, found: &mut Vec<Finding>) {
    let row = client
        .query_opt(
            "SELECT wal_status, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, plugin
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&source.slot],
        )
        .await;
    match row {
        Ok(None) => found.push(if source.create_slot {
            Finding::ok(format!(
                "slot {:?} is missing; run will create it",
                source.slot
            ))
        } else {
            Finding::bad(
                format!("slot {:?} does not exist", source.slot),
                "set source.create_slot: true or create it",
            )
        }),
        Ok(Some(r)) => {
            let (status, active, retained, plugin): (
                Option<String>,
                bool,
                Option<i64>,
                Option<String>,
            ) = (r.get(0), r.get(1), r.get(2), r.get(3));
            let retained = retained.unwrap_or(0);
            let mib = retained as f64 / (1 << 20) as f64;
            if status.as_deref() == Some("lost") {
                found.push(Finding::bad(
                    format!("slot {:?} is invalidated (wal_status = lost)", source.slot),
                    "its changes are gone: drop the slot and the output's data, then run to re-snapshot",
                ));
            } else if plugin.as_deref() != Some("pgoutput") {
                found.push(Finding::bad(
                    format!("slot {:?} uses plugin {plugin:?}", source.slot),
                    "drop it; Freshet needs pgoutput",
                ));
            } else {
                found.push(Finding::ok(format!(
                    "slot {:?}: wal_status {}, {}, retains {mib:.1} MiB of WAL",
                    source.slot,
                    status.unwrap_or_default(),
                    if active { "in use" } else { "idle" }
                )));
            }
        }
        Err(e) => found.push(Finding::bad(
            format!("reading the slot: {}", pg::describe(&e)),
            "see the server log",
        )),
    }
}
