//! The embedded warehouse: PostgreSQL over its wire protocol. The load's statements run in
//! one transaction, the objects' rows arriving by COPY FROM STDIN in PostgreSQL's text form.

use bytes::Bytes;
use futures_util::SinkExt as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio_postgres::Client;

use super::sql::{self, Dialect, Load, STAGE};
use super::LoaderError;
use crate::config::PgUrl;

/// COPY data is sent in chunks of about this many bytes.
const COPY_CHUNK: usize = 1 << 20;

pub struct Postgres {
    client: Client,
    endpoint: String,
}

impl Postgres {
    pub async fn connect(url: &PgUrl) -> Result<Postgres, LoaderError> {
        let config = url.to_config();
        let endpoint = crate::pg::endpoint(&config);
        let client = crate::pg::connect(&config)
            .await
            .map_err(|e| LoaderError::Warehouse {
                endpoint: endpoint.clone(),
                statement: "connect".into(),
                error: e.why,
                transient: e.transient,
            })?;
        Ok(Postgres { client, endpoint })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub const DIALECT: Dialect = Dialect::Postgres;

    fn error(&self, statement: &str, e: &tokio_postgres::Error) -> LoaderError {
        failed(&self.endpoint, statement, e)
    }

    /// Statements in one transaction (DDL is transactional here).
    pub async fn execute(&mut self, statements: &[String]) -> Result<(), LoaderError> {
        let Postgres { client, endpoint } = self;
        let error = |statement: &str, e: tokio_postgres::Error| failed(endpoint, statement, &e);
        let tx = client.transaction().await.map_err(|e| error("BEGIN", e))?;
        for s in statements {
            tx.batch_execute(s).await.map_err(|e| error(s, e))?;
        }
        tx.commit().await.map_err(|e| error("COMMIT", e))
    }

    pub async fn columns(
        &self,
        t: &sql::Table,
        relation: &str,
    ) -> Result<Vec<(String, String)>, LoaderError> {
        let q = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum";
        let rows = self
            .client
            .query(
                q,
                &[&format!("{}.{}", t.state_schema(), sql::ident(relation))],
            )
            .await
            .map_err(|e| self.error(q, &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The offset ranges loaded per partition of `source`.
    /// The rows of `q`, every value as text.
    pub async fn rows(&self, q: &str) -> Result<Vec<Vec<Option<String>>>, LoaderError> {
        let messages = self
            .client
            .simple_query(q)
            .await
            .map_err(|e| self.error(q, &e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect())
    }

    pub async fn ledger(&self, t: &sql::Table) -> Result<Vec<(i32, i64, i64)>, LoaderError> {
        let q = format!(
            "SELECT kafka_partition, first_offset, last_offset FROM {} WHERE table_name = $1",
            t.ledger()
        );
        let rows = self
            .client
            .query(&q, &[&t.source])
            .await
            .map_err(|e| self.error(&q, &e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// One load: the statements before, COPY of every object's rows into the staging table,
    /// the statements after, and COMMIT.
    pub async fn load(
        &mut self,
        load: &Load,
        objects: &[super::Object],
        table_columns: usize,
    ) -> Result<(), LoaderError> {
        let Postgres { client, endpoint } = self;
        let error = |statement: &str, e: tokio_postgres::Error| failed(endpoint, statement, &e);
        let tx = client.transaction().await.map_err(|e| error("BEGIN", e))?;
        for s in &load.before_copy {
            tx.batch_execute(s).await.map_err(|e| error(s, e))?;
        }
        let copy = format!("COPY {STAGE} FROM STDIN");
        let copy_in = tx.copy_in(&copy).await.map_err(|e| error(&copy, e))?;
        tokio::pin!(copy_in);
        let mut text = String::with_capacity(COPY_CHUNK + 4096);
        for o in objects {
            let object_error = |why: String| LoaderError::Object {
                key: o.key.clone(),
                why,
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(o.body.clone())
                .and_then(|b| b.build())
                .map_err(|e| object_error(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| object_error(e.to_string()))?;
                super::copy::encode(&batch, table_columns, &mut text).map_err(object_error)?;
                if text.len() >= COPY_CHUNK {
                    let chunk = Bytes::from(std::mem::take(&mut text));
                    copy_in.send(chunk).await.map_err(|e| error(&copy, e))?;
                }
            }
        }
        if !text.is_empty() {
            copy_in
                .send(Bytes::from(text))
                .await
                .map_err(|e| error(&copy, e))?;
        }
        copy_in.finish().await.map_err(|e| error(&copy, e))?;
        crate::crash::point("loader.after_copy");
        for s in &load.after_copy {
            if s.starts_with("MERGE") || (s.starts_with("INSERT INTO") && !s.contains(sql::LEDGER))
            {
                crate::crash::point("loader.before_merge");
            }
            tx.batch_execute(s).await.map_err(|e| error(s, e))?;
        }
        crate::crash::point("loader.before_commit");
        tx.commit().await.map_err(|e| error("COMMIT", e))
    }
}

fn failed(endpoint: &str, statement: &str, e: &tokio_postgres::Error) -> LoaderError {
    // Two sink processes making the same schema or table at once: one of them is told it
    // exists (a unique violation in the catalog); the next attempt finds it made.
    let raced = statement.starts_with("CREATE")
        && e.as_db_error()
            .is_some_and(|db| matches!(db.code().code(), "23505" | "42P06" | "42P07"));
    LoaderError::Warehouse {
        endpoint: endpoint.to_owned(),
        statement: statement.to_owned(),
        error: crate::pg::describe(e),
        transient: raced || crate::pg::is_transient(e),
    }
}
