//! The replication slot: created when missing (if allowed), checked at every start. A slot
//! that is gone after Freshet has used it is never silently recreated: everything written
//! while it was missing would be skipped. Whether Freshet has used it is recorded in its own
//! state ([`SlotIdentity`]), not inferred from whether the output holds records.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::SourceError;
use crate::config::Source;
use crate::lsn::Lsn;

/// Polls (200 ms apart) for a slot held by a dead session to be released.
const SLOT_RELEASE_WAIT_STEPS: u32 = 50;

/// Where the slot stands when capture starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// Everything before this is acknowledged; streaming resumes after it.
    pub confirmed_flush: Lsn,
    pub created: bool,
}

/// The slot this pipeline streams from, as recorded in its state the first time Freshet saw
/// it (before anything was read through it): from then on its absence means it was lost.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlotIdentity {
    pub slot: String,
    pub database: String,
    /// Where the slot started: its consistent point when Freshet created it, else its
    /// confirmed position when Freshet first found it.
    pub first_lsn: Lsn,
}

/// What [`find`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The slot, checked, and its identity (to record when none was).
    Existing(SlotState, SlotIdentity),
    /// No slot, and Freshet may create one (it never used one of this name): on the
    /// replication session, so the database can be read as of its start
    /// ([`crate::source::replication::Opening::create_slot`]).
    Missing { database: String },
}

/// Finds and checks the slot. `known` is the identity recorded in the state, and `resuming`
/// says that the output already holds data read through this slot: with either, a missing
/// slot is a lost one.
pub async fn find(
    client: &Client,
    source: &Source,
    known: Option<&SlotIdentity>,
    resuming: bool,
) -> Result<Found, SourceError> {
    let catalog = |what: &str| {
        let what = what.to_string();
        move |error| SourceError::Catalog { what, error }
    };
    let mut row = None;
    // A previous Freshet that died a moment ago may still hold the slot until the server
    // notices its connection is gone.
    for _ in 0..SLOT_RELEASE_WAIT_STEPS {
        row = client
            .query_opt(
                "SELECT plugin, database::text, confirmed_flush_lsn::text, wal_status, active, active_pid,
                        current_database()::text
                 FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'logical'",
                &[&source.slot],
            )
            .await
            .map_err(catalog("reading pg_replication_slots"))?;
        if !row.as_ref().is_some_and(|r| r.get::<_, bool>(4)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let Some(row) = row else {
        if let Some(known) = known {
            return Err(SourceError::SlotLost {
                slot: source.slot.clone(),
                why: format!(
                    "it no longer exists, but Freshet has streamed from it since {} (in \
                     database {:?}; recorded in its state)",
                    known.first_lsn, known.database
                ),
            });
        }
        if resuming {
            return Err(SourceError::SlotLost {
                slot: source.slot.clone(),
                why: "it no longer exists, but the output already holds changes read through it"
                    .into(),
            });
        }
        if !source.create_slot {
            return Err(SourceError::Slot(format!(
                "replication slot {:?} does not exist and source.create_slot is false: create it with \
                 SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
                source.slot, source.slot
            )));
        }
        let database = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(catalog("reading the database name"))?
            .get(0);
        return Ok(Found::Missing { database });
    };
    let plugin: String = row.get(0);
    let database: Option<String> = row.get(1);
    let confirmed: Option<String> = row.get(2);
    let wal_status: Option<String> = row.get(3);
    let active: bool = row.get(4);
    let pid: Option<i32> = row.get(5);
    let current: String = row.get(6);
    if plugin != "pgoutput" {
        return Err(SourceError::Slot(format!(
            "slot {:?} uses plugin {plugin:?}, not pgoutput",
            source.slot
        )));
    }
    if database.as_deref() != Some(current.as_str()) {
        return Err(SourceError::Slot(format!(
            "slot {:?} belongs to database {database:?}, not {current:?}",
            source.slot
        )));
    }
    if wal_status.as_deref() == Some("lost") {
        return Err(SourceError::SlotLost {
            slot: source.slot.clone(),
            why: "the server invalidated it (wal_status = lost: max_slot_wal_keep_size removed WAL it needed)".into(),
        });
    }
    if active {
        return Err(SourceError::Slot(format!(
            "slot {:?} is in use by server process {} (another Freshet, or a stale connection): \
             stop it, or SELECT pg_terminate_backend({})",
            source.slot,
            pid.unwrap_or_default(),
            pid.unwrap_or_default()
        )));
    }
    let confirmed_flush = parse_lsn(confirmed.unwrap_or_default())?;
    let identity = match known {
        Some(known) if known.database != current => {
            return Err(SourceError::Slot(format!(
                "the state records slot {:?} in database {:?}, but this pipeline connects to {:?}",
                source.slot, known.database, current
            )))
        }
        Some(known) => known.clone(),
        None => SlotIdentity {
            slot: source.slot.clone(),
            database: current,
            first_lsn: confirmed_flush,
        },
    };
    let state = SlotState {
        confirmed_flush,
        created: false,
    };
    Ok(Found::Existing(state, identity))
}

/// Moves the slot's confirmed position forward after the stream has ended: the final
/// confirmation of a graceful shutdown, which the last status update may not have carried.
pub async fn advance(client: &Client, slot: &str, to: Lsn) -> Result<(), SourceError> {
    let mut last = None;
    for _ in 0..50 {
        match client
            .query_one(
                "SELECT confirmed_flush_lsn < $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &to.to_string()],
            )
            .await
        {
            // NULL: the slot has no confirmed position yet; advancing gives it one.
            Ok(row) if row.get::<_, Option<bool>>(0) == Some(false) => return Ok(()),
            Ok(_) => {}
            Err(error) => return Err(SourceError::Catalog { what: "reading the slot position".into(), error }),
        }
        // The walsender may still hold the slot for a moment after the stream ends.
        match client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&slot, &to.to_string()],
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match last {
        Some(error) => Err(SourceError::Catalog {
            what: format!("advancing slot {slot:?} to {to}"),
            error,
        }),
        None => Ok(()),
    }
}

fn parse_lsn(text: String) -> Result<Lsn, SourceError> {
    text.parse()
        .map_err(|e| SourceError::Slot(format!("server returned a bad LSN: {e}")))
}

/// An existing slot's confirmed position (for benchmarks that read a prepared slot).
pub async fn confirmed(client: &Client, slot: &str) -> Result<Lsn, SourceError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|error| SourceError::Catalog {
            what: "reading the slot".into(),
            error,
        })?
        .ok_or_else(|| SourceError::Slot(format!("slot {slot:?} does not exist")))?;
    row.get::<_, Option<String>>(0)
        .unwrap_or_default()
        .parse()
        .map_err(|e| SourceError::Slot(format!("slot {slot:?}: {e}")))
}
