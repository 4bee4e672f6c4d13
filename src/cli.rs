//! The command line: `freshet run | tail | snapshot | check | loadgen | bench`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::pipeline::OutputSpec;

#[derive(Debug, Parser)]
#[command(
    name = "freshet",
    version,
    about = "Change-data-capture from PostgreSQL, honest about freshness"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline as a service until SIGTERM or SIGINT.
    Run {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// Send changes to jsonl:PATH (one JSON line per change, fsynced before
        /// acknowledging) instead of the pipeline's Kafka topics.
        #[arg(long)]
        output: Option<OutputSpec>,
        /// Where the Kafka pipeline keeps its snapshot progress.
        #[arg(long, env = "FRESHET_STATE_DIR", default_value = "/var/lib/freshet")]
        state_dir: PathBuf,
        /// Which halves to run: capture (source → kafka), sink (kafka → lake) or both.
        #[arg(long, value_enum, default_value = "all")]
        role: crate::pipeline::supervisor::Role,
        /// With several sink processes: this one batches the partitions numbered I modulo N
        /// (I/N, e.g. 0/2 and 1/2); all of them when absent.
        #[arg(long, env = "FRESHET_SINK_SHARE")]
        sink_share: Option<crate::batcher::Share>,
        /// The HTTP listener (/metrics) instead of router.listen; port 0 picks a free one.
        #[arg(long, env = "FRESHET_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// How long SIGTERM may take: past it the process exits (75) with what it has not
        /// confirmed left to be read again. Keep it below the supervisor's kill timeout
        /// (systemd's TimeoutStopSec, ECS's stopTimeout).
        #[arg(long, env = "FRESHET_STOP_TIMEOUT", default_value = "40s", value_parser = humantime::parse_duration)]
        stop_timeout: std::time::Duration,
    },
    /// Serve the read router alone (/v1/route, /v1/freshness, /metrics) on router.listen:
    /// it probes the primary, the replicas and the warehouse's recorded watermarks.
    Router {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// The HTTP listener instead of router.listen; port 0 picks a free one.
        #[arg(long, env = "FRESHET_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Every table's freshness per stage against its budget (OK / BREACH, lag, watermark),
    /// live from a running process's API; --once prints it once (exit 3 when a stage is in
    /// breach).
    Status {
        /// The process's HTTP address (its router.listen or --listen).
        #[arg(long, default_value = "http://127.0.0.1:8650", env = "FRESHET_URL")]
        url: String,
        #[arg(long)]
        once: bool,
        /// Ask /readyz instead: exit 0 when ready, 1 with each half's reason when not (the
        /// container health check of the Dockerfile and the ECS task).
        #[arg(long, conflicts_with = "once")]
        ready: bool,
    },
    /// Print a table's topic, decoded, as JSON lines (from the start to the current end).
    Tail {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// schema.table, one of source.tables.
        #[arg(long)]
        table: String,
    },
    /// Ask the running capture (or the next one) to snapshot a table again, from the start.
    Snapshot {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// schema.table, one of source.tables.
        #[arg(long)]
        table: String,
    },
    /// Rebuild a table in the warehouse from its topic: read it again from an offset into
    /// the lake and load it (from 0, the warehouse table is made anew). Stop the sink first.
    Replay {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// schema.table, one of source.tables.
        #[arg(long)]
        table: String,
        /// The topic offset (in every partition) to read from.
        #[arg(long, default_value_t = 0)]
        from_offset: i64,
    },
    /// Validate a pipeline file and the live prerequisites; print what to fix.
    Check {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// Validate the file only; skip the checks against the live server.
        #[arg(long)]
        offline: bool,
    },
    /// Write AtlasCo-shaped data: a bulk fill or a steady load.
    Loadgen {
        #[command(subcommand)]
        mode: Loadgen,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

/// Where loadgen and bench write: a libpq URL.
#[derive(Debug, Args)]
pub struct Target {
    #[arg(long, env = "FRESHET_SOURCE_URL", hide_env_values = true)]
    pub url: String,
    /// Seed for every random choice: the same seed writes the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct Shape {
    #[arg(long, default_value_t = 4)]
    pub tenants: u32,
    /// Entities per tenant.
    #[arg(long, default_value_t = 1000)]
    pub entities: u32,
    /// Attribute values per entity.
    #[arg(long, default_value_t = 20)]
    pub attributes: u32,
    /// Attributes in the catalog (AtlasCo: up to 10k).
    #[arg(long, default_value_t = 1000)]
    pub catalog: u32,
    /// Parallel COPY connections.
    #[arg(long, default_value_t = 2)]
    pub jobs: u32,
}

#[derive(Debug, Subcommand)]
pub enum Loadgen {
    /// Apply schema/schema.sql and bulk-load tenants × entities × attributes through COPY.
    Fill {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        shape: Shape,
    },
    /// Write small transactions (upserts, updates, deletes, new entities, TOASTed values) at a
    /// target rate until the duration ends or Ctrl-C.
    Run {
        #[command(flatten)]
        target: Target,
        /// Rows changed per second.
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        /// How long to run (e.g. 30s, 5m); runs until Ctrl-C when absent.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value_t = 4)]
        connections: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Stream an existing slot up to an LSN into a null output (or --jsonl) and print
    /// changes/s and peak RSS; scripts/bench-capture.sh runs it beside pg_recvlogical.
    Capture {
        #[arg(long, env = "FRESHET_SOURCE_URL", hide_env_values = true)]
        url: crate::config::PgUrl,
        #[arg(long)]
        slot: String,
        #[arg(long)]
        publication: String,
        /// Stop once the stream reaches this LSN (X/Y).
        #[arg(long)]
        until: crate::lsn::Lsn,
        /// Write into the jsonl output at this path instead of the null output.
        #[arg(long)]
        jsonl: Option<PathBuf>,
    },
    /// Stream an existing slot up to an LSN through the transform into the pipeline's Kafka
    /// topics and print records/s and peak RSS; scripts/bench-kafka.sh runs it beside
    /// pg_recvlogical.
    Kafka {
        #[arg(long, short)]
        pipeline: PathBuf,
        #[arg(long)]
        slot: String,
        /// Stop once the stream reaches this LSN (X/Y).
        #[arg(long)]
        until: crate::lsn::Lsn,
    },
    /// Read the pipeline's table topics from the start into a fresh local lake with the
    /// batcher and print records/s, MB/s, the objects' sizes and peak RSS;
    /// scripts/bench-lake.sh runs it after `bench kafka` filled the topics.
    Lake {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// An empty directory for the lake.
        #[arg(long)]
        lake: PathBuf,
    },
    /// Load a lake (as `bench lake` wrote it) into the pipeline's empty warehouse and time it.
    Warehouse {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// The lake's directory.
        #[arg(long)]
        lake: PathBuf,
    },
    /// Commit → visible in the warehouse, measured by probe rows written into a captured table
    /// (`id bigint PRIMARY KEY, at timestamptz`) while the pipeline runs.
    Visible {
        #[arg(long, short)]
        pipeline: PathBuf,
        /// schema.table of the probe rows.
        #[arg(long)]
        probe: String,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
        every: std::time::Duration,
    },
    /// Fill (when empty), then time the queries of schema/queries.sql and show their plans.
    Schema {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        shape: Shape,
        /// Timed runs of each query.
        #[arg(long, default_value_t = 20)]
        runs: u32,
        /// The queries file.
        #[arg(long, default_value = "schema/queries.sql")]
        queries: PathBuf,
    },
}
