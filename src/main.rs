use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use freshet::bench;
use freshet::cli::{Bench, Cli, Command, Loadgen, Shape, Target};
use freshet::config::{self, ConfigError};
use freshet::loadgen::{self, FillOptions, RunOptions};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal; journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // Configuration problems are the operator's to fix: list them plainly, exit 2.
            if let Some(config_error) = e.downcast_ref::<ConfigError>() {
                eprintln!("{config_error}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { pipeline, offline } => {
            let p = config::load(&pipeline)?;
            println!(
                "{}: valid: pipeline {:?}, {} tables",
                pipeline.display(),
                p.name,
                p.source.tables.len()
            );
            if offline {
                return Ok(ExitCode::SUCCESS);
            }
            let mut findings = freshet::source::check::run(&p.source).await;
            if let Some(k) = &p.kafka {
                let topics: Vec<String> = p
                    .source
                    .tables
                    .iter()
                    .map(|t| {
                        freshet::transform::topic_name(
                            &k.topic_prefix,
                            &t.value.schema,
                            &t.value.table,
                        )
                    })
                    .collect();
                findings.extend(freshet::kafka::check(k, &topics).await);
            }
            if let Some(b) = &p.batcher {
                findings.push(freshet::store::check(&b.store.value.0, &b.s3).await);
            }
            for f in &findings {
                if f.warn {
                    println!("  WARN  {}\n        -> {}", f.what, f.fix);
                } else if f.ok {
                    println!("  ok    {}", f.what);
                } else {
                    println!("  FIX   {}\n        -> {}", f.what, f.fix);
                }
            }
            let bad = findings.iter().filter(|f| !f.ok).count();
            if bad > 0 {
                println!("{bad} problem(s) to fix before `freshet run`");
                return Ok(ExitCode::FAILURE);
            }
            println!("ready to run");
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { pipeline, table } => {
            let p = config::load(&pipeline)?;
            let table = config::TableName::parse(&table).map_err(anyhow::Error::msg)?;
            if !p.source.tables.iter().any(|t| t.value == table) {
                anyhow::bail!("{table} is not in source.tables of {}", pipeline.display());
            }
            let client = freshet::pg::connect(&p.source.url.to_config()).await?;
            let lsn = freshet::source::snapshot::signal(&client, &p.source.slot, &table).await?;
            println!("snapshot of {table} requested at {lsn}; the capture of slot {} picks it up from the WAL", p.source.slot);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            pipeline,
            output,
            state_dir,
            role,
            sink_share,
            listen,
            stop_timeout,
        } => {
            let stopped = stop_on_signals()?;
            let p = std::sync::Arc::new(config::load(&pipeline)?);
            let output = output.unwrap_or(freshet::pipeline::OutputSpec::Kafka { state_dir });
            // Not ready until the halves say they are (they start after the listener).
            freshet::pipeline::readiness::set(
                freshet::pipeline::readiness::PROCESS,
                Err("starting".into()),
            );
            // Beside the halves, never restarted with them.
            let http = serve_api(&p, listen, sink_share, &stopped).await?;
            let notify = tokio::spawn(freshet::pipeline::notify::run(stopped.clone()));
            let code = tokio::select! {
                code = run_until_stopped(&p, &output, role, sink_share, stopped.clone()) => code,
                () = stop_bound(stopped, stop_timeout) => {
                    // Nothing past the confirmed position was acknowledged, so leaving now
                    // loses nothing: the next start reads it again. A clean exit would wait
                    // on what is stuck.
                    std::process::exit(i32::from(EXIT_TEMPFAIL));
                }
            };
            http.abort();
            notify.abort();
            code
        }
        Command::Status { url, once, ready } => {
            use freshet::router::status;
            if ready {
                let (ready, answer) = status::ready(&url).await?;
                print!("{answer}");
                return Ok(if ready {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            if once {
                let (text, breached) = status::fetch(&url).await?;
                print!("{text}");
                return Ok(if breached {
                    ExitCode::from(3)
                } else {
                    ExitCode::SUCCESS
                });
            }
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                }
                let text = match status::fetch(&url).await {
                    Ok((text, _)) => text,
                    Err(e) => format!("{e}\n"),
                };
                // Home and clear, then the view: a terminal redraws in place.
                print!("\x1b[H\x1b[2J{text}\n(every second; Ctrl-C to leave)\n");
            }
        }
        Command::Router { pipeline, listen } => {
            let mut stopped = stop_on_signals()?;
            let p = std::sync::Arc::new(config::load(&pipeline)?);
            let http = serve_api(&p, listen, None, &stopped).await?;
            let _ = stopped.wait_for(|s| *s).await;
            let _ = http.await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            pipeline,
            table,
            from_offset,
        } => {
            let p = config::load(&pipeline)?;
            let table = config::TableName::parse(&table).map_err(anyhow::Error::msg)?;
            let (written, loaded) =
                freshet::pipeline::sink::replay(&p, &table, from_offset).await?;
            println!(
                "{table}: {} records read again from offset {from_offset} into {} objects; {} objects ({} rows) loaded into the warehouse",
                written.records, written.objects, loaded.objects, loaded.rows
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Tail { pipeline, table } => {
            let p = config::load(&pipeline)?;
            let table = config::TableName::parse(&table).map_err(anyhow::Error::msg)?;
            let Some(k) = &p.kafka else {
                anyhow::bail!("{} has no kafka section", pipeline.display());
            };
            let topic =
                freshet::transform::topic_name(&k.topic_prefix, &table.schema, &table.table);
            let lines = freshet::kafka::tail::decode_topic(k, &topic).await?;
            use std::io::Write as _;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadgen {
            mode: Loadgen::Fill { target, shape },
        } => {
            let report =
                loadgen::fill(&pg_config(&target)?, &fill_options(&target, &shape)).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadgen {
            mode:
                Loadgen::Run {
                    target,
                    rate,
                    duration,
                    connections,
                },
        } => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    let _ = stop.send(true);
                }
            });
            let opts = RunOptions {
                rate,
                duration,
                connections,
                seed: target.seed,
            };
            let report = loadgen::run(&pg_config(&target)?, &opts, stopped).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                Bench::Capture {
                    url,
                    slot,
                    publication,
                    until,
                    jsonl,
                },
        } => bench_capture(url, slot, publication, until, jsonl).await,
        Command::Bench {
            which:
                Bench::Kafka {
                    pipeline,
                    slot,
                    until,
                },
        } => {
            let p = config::load(&pipeline)?;
            let run = bench::kafka::run(&p, &slot, until).await?;
            let secs = run.elapsed.as_secs_f64();
            println!(
                "freshet (kafka): {} records in {secs:.2}s = {:.0} records/s, peak RSS {:.1} MiB",
                run.records,
                run.records as f64 / secs.max(1e-9),
                run.peak_rss_kib as f64 / 1024.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which: Bench::Warehouse { pipeline, lake },
        } => {
            let p = config::load(&pipeline)?;
            let run = bench::warehouse::load(&p, &lake).await?;
            let (s, secs) = (&run.summary, run.elapsed.as_secs_f64().max(1e-9));
            println!(
                "freshet (lake -> warehouse): {} rows from {} objects in {} loads in {secs:.2}s = {:.0} rows/s, {:.1} s per 1M rows, peak RSS {:.1} MiB",
                s.rows,
                s.objects,
                s.loads,
                s.rows as f64 / secs,
                secs * 1e6 / (s.rows.max(1) as f64),
                run.peak_rss_kib as f64 / 1024.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                Bench::Visible {
                    pipeline,
                    probe,
                    duration,
                    every,
                },
        } => {
            let p = config::load(&pipeline)?;
            let v = bench::warehouse::visible(&p, &probe, duration, every).await?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            let l = &v.latencies;
            println!(
                "commit -> visible in the warehouse ({probe}): {} probes, p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {} never arrived",
                l.len(),
                ms(bench::percentile(l, 50.0)),
                ms(bench::percentile(l, 90.0)),
                ms(bench::percentile(l, 99.0)),
                ms(bench::percentile(l, 100.0)),
                v.missing
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which: Bench::Lake { pipeline, lake },
        } => {
            let p = config::load(&pipeline)?;
            let run = bench::lake::run(&p, &lake).await?;
            let (s, secs) = (&run.summary, run.elapsed.as_secs_f64().max(1e-9));
            let mb = |b: u64| b as f64 / 1e6;
            let raw_secs = run.raw_elapsed.as_secs_f64().max(1e-9);
            println!(
                "kafka read only (the broker's pace, nothing decoded): {} records in {raw_secs:.2}s = {:.0} records/s",
                run.raw_records,
                run.raw_records as f64 / raw_secs
            );
            println!(
                "freshet (kafka -> lake): {} records in {secs:.2}s = {:.0} records/s, {:.1} MB/s of Kafka values ({:.1} MB) -> {:.1} MB of Parquet in {} objects ({:.2}-{:.2} MB, {} rows), peak RSS {:.1} MiB",
                s.records,
                s.records as f64 / secs,
                mb(s.consumed_bytes) / secs,
                mb(s.consumed_bytes),
                mb(s.written_bytes),
                s.objects,
                mb(s.smallest),
                mb(s.largest),
                s.rows,
                run.peak_rss_kib as f64 / 1024.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            which:
                Bench::Schema {
                    target,
                    shape,
                    runs,
                    queries,
                },
        } => {
            let fill = fill_options(&target, &shape);
            let figures = bench::schema::run(&pg_config(&target)?, &fill, &queries, runs).await?;
            for f in &figures {
                println!("\n== {} ({} rows)\n{}", f.name, f.rows, f.plan);
            }
            println!(
                "\n{:<26} {:>6} {:>10} {:>10} {:>10}",
                "query", "rows", "p50 ms", "p95 ms", "max ms"
            );
            for f in &figures {
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "{:<26} {:>6} {:>10.1} {:>10.1} {:>10.1}",
                    f.name,
                    f.rows,
                    ms(f.p50),
                    ms(f.p95),
                    ms(f.max)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs the pipeline under the supervisor; the error policy's class is the exit code.
async fn run_until_stopped(
    p: &config::Pipeline,
    output: &freshet::pipeline::OutputSpec,
    role: freshet::pipeline::supervisor::Role,
    share: Option<freshet::batcher::Share>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ExitCode> {
    use freshet::pipeline::supervisor::{self, Ended};
    Ok(
        match supervisor::run(p, output, role, share, stopped).await {
            Ended::Stopped => ExitCode::SUCCESS,
            Ended::Failed(class, e) => {
                eprintln!("error ({}): {e}", class.label());
                ExitCode::from(class.exit_code())
            }
        },
    )
}

/// EX_TEMPFAIL: a stop that could not finish; the unit restarts on it.
const EXIT_TEMPFAIL: u8 = 75;

/// Resolves `timeout` after the stop was asked for, having said what is left.
async fn stop_bound(mut stopped: tokio::sync::watch::Receiver<bool>, timeout: std::time::Duration) {
    if stopped.wait_for(|s| *s).await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep(timeout).await;
    tracing::error!(
        ?timeout,
        "not stopped within the stop timeout: exiting now. The slot's confirmed position and \
         the committed offsets are where the next start reads from: changes and records past \
         them, produced or not, will be read again"
    );
}

/// A channel set on SIGTERM or SIGINT. Installed first: a signal during start-up must drain
/// like any other.
fn stop_on_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = shutdown_signals()?;
    tokio::spawn(async move {
        let signal = signals.await;
        tracing::info!(signal, "stopping");
        let _ = stop.send(true);
    });
    Ok(stopped)
}

/// The HTTP listener (`/metrics`, the router's API) and the freshness board's evaluation,
/// until `stopped`; `share`: the sink share this process runs, if any.
async fn serve_api(
    p: &std::sync::Arc<config::Pipeline>,
    listen: Option<std::net::SocketAddr>,
    share: Option<freshet::batcher::Share>,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (_, http) = freshet::telemetry::serve(
        listen.unwrap_or(p.router.listen),
        freshet::router::start(p.clone(), share, stopped.clone()),
        stopped.clone(),
    )
    .await?;
    // After the listener: it installs the registry the budget gauges go to.
    freshet::freshness::board().configure(p);
    tokio::spawn(freshet::freshness::evaluate(stopped.clone()));
    Ok(http)
}

fn shutdown_signals() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}

async fn bench_capture(
    url: freshet::config::PgUrl,
    slot: String,
    publication: String,
    until: freshet::lsn::Lsn,
    jsonl: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    let output = if jsonl.is_some() { "jsonl" } else { "null" };
    let settings = freshet::source::replication::StreamSettings {
        slot,
        publication,
        status_interval: std::time::Duration::from_secs(1),
        tables: Vec::new(),
    };
    let run = bench::capture::run(&url, settings, until, jsonl).await?;
    let secs = run.elapsed.as_secs_f64();
    println!(
        "freshet ({output} output): {} changes in {secs:.2}s = {:.0} changes/s, peak RSS {:.1} MiB",
        run.changes,
        run.changes as f64 / secs.max(1e-9),
        run.peak_rss_kib as f64 / 1024.0
    );
    Ok(ExitCode::SUCCESS)
}

fn pg_config(target: &Target) -> anyhow::Result<freshet::pg::Dsn> {
    freshet::pg::Dsn::parse(&target.url).map_err(|e| {
        anyhow::anyhow!("--url (or FRESHET_SOURCE_URL) is not a PostgreSQL connection string: {e}")
    })
}

fn fill_options(target: &Target, shape: &Shape) -> FillOptions {
    FillOptions {
        tenants: shape.tenants,
        entities_per_tenant: shape.entities,
        attributes_per_entity: shape.attributes,
        catalog_size: shape.catalog,
        seed: target.seed,
        jobs: shape.jobs,
    }
}
