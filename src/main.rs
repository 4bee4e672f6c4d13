use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use freshet::bench;
use freshet::cli::{Bench, Cli, Command, Loadgen, Shape, Target};
use freshet::config::{self, ConfigError};
use freshet::loadgen::{self, FillOptions, RunOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
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
        Command::Check { pipeline } => {
            let p = config::load(&pipeline)?;
            println!(
                "{}: pipeline {:?} is valid: {} tables from slot {} / publication {}",
                pipeline.display(),
                p.name,
                p.source.tables.len(),
                p.source.slot,
                p.source.publication
            );
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

fn pg_config(target: &Target) -> anyhow::Result<tokio_postgres::Config> {
    target
        .url
        .parse()
        .context("--url (or FRESHET_SOURCE_URL) is not a PostgreSQL connection string")
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
