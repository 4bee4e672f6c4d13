//! Amazon Redshift through the Data API: each load is one `BatchExecuteStatement` (one
//! transaction, at most 40 statements), its objects copied by `COPY … FORMAT AS PARQUET
//! MANIFEST` from the store with the configured IAM role; the statement is polled with
//! `DescribeStatement`, backing off, up to a deadline. A serialization conflict (Redshift's
//! error 1023 between concurrent commits) is tried again; any other failure names the
//! statement that failed and Redshift's message.

use std::time::{Duration, Instant};

use aws_sdk_redshiftdata::types::{Field, StatementStatusString, StatusString};
use aws_sdk_redshiftdata::Client;

use super::sql::{self, literal, Dialect, Load, STAGE};
use super::LoaderError;
use crate::config::RedshiftData as Settings;

/// Redshift's limit on the statements of one BatchExecuteStatement.
pub const MAX_STATEMENTS: usize = 40;
/// Polling starts fast (small loads finish in well under a second) and backs off.
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// A statement still running after this is cancelled and counted as a failure to retry.
const DEADLINE: Duration = Duration::from_secs(15 * 60);
/// Serialization conflicts are tried again this many times.
const CONFLICT_ATTEMPTS: u32 = 5;

pub struct RedshiftData {
    client: Client,
    cluster_identifier: Option<String>,
    workgroup_name: Option<String>,
    database: String,
    secret_arn: Option<String>,
    db_user: Option<String>,
    copy_iam_role: String,
    endpoint: String,
}

impl RedshiftData {
    pub const DIALECT: Dialect = Dialect::Redshift;

    pub async fn connect(s: &Settings) -> Result<RedshiftData, LoaderError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = crate::aws::region(s.region.as_deref()) {
            loader = loader.region(aws_config::Region::new(region));
        }
        let shared = loader.load().await;
        let target = s
            .cluster_identifier
            .as_deref()
            .or(s.workgroup_name.as_deref())
            .unwrap_or("?");
        if shared.region().is_none() {
            return Err(LoaderError::Config(format!(
                "warehouse.redshift_data: no AWS region for {target}: set \
                 warehouse.redshift_data.region or AWS_REGION"
            )));
        }
        let mut config = aws_sdk_redshiftdata::config::Builder::from(&shared).timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
        let endpoint = match &s.endpoint {
            Some(e) => {
                config = config.endpoint_url(&e.0);
                format!("{} ({target}/{})", e.0, s.database)
            }
            None => format!("redshift-data {target}/{}", s.database),
        };
        Ok(RedshiftData {
            client: Client::from_conf(config.build()),
            cluster_identifier: s.cluster_identifier.as_deref().map(str::to_owned),
            workgroup_name: s.workgroup_name.as_deref().map(str::to_owned),
            database: s.database.clone(),
            secret_arn: s.secret_arn.as_ref().map(|t| t.0.clone()),
            db_user: s.db_user.as_deref().map(str::to_owned),
            copy_iam_role: s.copy_iam_role.0.clone(),
            endpoint,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, statement: &str, error: String, transient: bool) -> LoaderError {
        LoaderError::Warehouse {
            endpoint: self.endpoint.clone(),
            statement: statement.to_owned(),
            error,
            transient,
        }
    }

    fn sdk_error<E>(&self, what: &str, e: aws_sdk_redshiftdata::error::SdkError<E>) -> LoaderError
    where
        E: aws_sdk_redshiftdata::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_sdk_redshiftdata::error::SdkError;
        let transient = match &e {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                status == 429
                    || status >= 500
                    || s.err().code().is_some_and(|c| {
                        c == "ActiveStatementsExceededException"
                            || c == "ActiveSessionsExceededException"
                            || c.contains("Throttl")
                    })
            }
            // No answer (connection refused, timeout): the service may come back.
            _ => true,
        };
        let message = match &e {
            SdkError::ServiceError(s) => format!(
                "{}: {}",
                s.err().code().unwrap_or("error"),
                s.err().message().unwrap_or("")
            ),
            other => crate::aws::error_chain(other),
        };
        self.error(what, message, transient)
    }

    /// Statements in one transaction.
    pub async fn execute(&self, statements: &[String]) -> Result<(), LoaderError> {
        let mut attempt = 1;
        loop {
            match self.batch(statements).await {
                Err(LoaderError::Warehouse {
                    error, statement, ..
                }) if is_conflict(&error) => {
                    if attempt >= CONFLICT_ATTEMPTS {
                        // Still conflicting (other writers busy): the loader waits and tries
                        // again, as for a warehouse that does not answer.
                        return Err(self.error(&statement, error, true));
                    }
                    tracing::info!(attempt, %error, "serialization conflict in Redshift; trying the transaction again");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    async fn batch(&self, statements: &[String]) -> Result<String, LoaderError> {
        let first = statements.first().map_or("", String::as_str);
        if statements.len() > MAX_STATEMENTS {
            return Err(self.error(
                first,
                format!(
                    "{} statements: BatchExecuteStatement takes at most {MAX_STATEMENTS}",
                    statements.len()
                ),
                false,
            ));
        }
        let id = if let [one] = statements {
            self.client
                .execute_statement()
                .set_cluster_identifier(self.cluster_identifier.clone())
                .set_workgroup_name(self.workgroup_name.clone())
                .database(&self.database)
                .set_secret_arn(self.secret_arn.clone())
                .set_db_user(self.db_user.clone())
                .sql(one)
                .send()
                .await
                .map_err(|e| self.sdk_error(one, e))?
                .id
                .unwrap_or_default()
        } else {
            self.client
                .batch_execute_statement()
                .set_cluster_identifier(self.cluster_identifier.clone())
                .set_workgroup_name(self.workgroup_name.clone())
                .database(&self.database)
                .set_secret_arn(self.secret_arn.clone())
                .set_db_user(self.db_user.clone())
                .set_sqls(Some(statements.to_vec()))
                .send()
                .await
                .map_err(|e| self.sdk_error(first, e))?
                .id
                .unwrap_or_default()
        };
        self.wait(&id, first).await?;
        Ok(id)
    }

    /// Polls the statement until it ends; a failure names the (sub-)statement that failed.
    async fn wait(&self, id: &str, first: &str) -> Result<(), LoaderError> {
        let started = Instant::now();
        let mut pause = POLL_FIRST;
        loop {
            let d = self
                .client
                .describe_statement()
                .id(id)
                .send()
                .await
                .map_err(|e| self.sdk_error(first, e))?;
            match d.status() {
                Some(StatusString::Finished) => return Ok(()),
                Some(StatusString::Failed | StatusString::Aborted) => {
                    let failed = d.sub_statements().iter().find(|s| {
                        matches!(
                            s.status(),
                            Some(StatementStatusString::Failed | StatementStatusString::Aborted)
                        )
                    });
                    let statement = failed
                        .and_then(|s| s.query_string())
                        .or(d.query_string())
                        .unwrap_or(first);
                    let error = failed
                        .and_then(|s| s.error())
                        .or(d.error())
                        .unwrap_or("failed without a message")
                        .to_owned();
                    // Aborted by an operator or a restart: the transaction can run again.
                    let transient = matches!(d.status(), Some(StatusString::Aborted));
                    return Err(self.error(statement, error, transient));
                }
                _ => {}
            }
            if started.elapsed() > DEADLINE {
                let _ = self.client.cancel_statement().id(id).send().await;
                return Err(self.error(
                    first,
                    format!("still running after {DEADLINE:?}: cancelled"),
                    true,
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// A query's rows, every value as text (NULL as `None`).
    pub(super) async fn query(&self, q: &str) -> Result<Vec<Vec<Option<String>>>, LoaderError> {
        let id = self.batch(&[q.to_owned()]).await?;
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                .id(&id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.sdk_error(q, e))?;
            for record in page.records() {
                rows.push(record.iter().map(text).collect());
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(rows),
            }
        }
    }

    pub async fn columns(
        &self,
        t: &sql::Table,
        relation: &str,
    ) -> Result<Vec<(String, String)>, LoaderError> {
        let q = format!(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN \
             pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = {} AND c.relname = {} AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            literal(&format!("{}_freshet", t.schema)),
            literal(relation)
        );
        Ok(self
            .query(&q)
            .await?
            .into_iter()
            .filter_map(|r| match r.as_slice() {
                [Some(n), Some(ty)] => Some((n.clone(), ty.clone())),
                _ => None,
            })
            .collect())
    }

    pub async fn ledger(&self, t: &sql::Table) -> Result<Vec<(i32, i64, i64)>, LoaderError> {
        let q = format!(
            "SELECT kafka_partition, first_offset, last_offset FROM {} WHERE table_name = {}",
            t.ledger(),
            literal(&t.source)
        );
        let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
        Ok(self
            .query(&q)
            .await?
            .iter()
            .filter_map(|r| match r.as_slice() {
                [p, f, l] => Some((i32::try_from(number(p)?).ok()?, number(f)?, number(l)?)),
                _ => None,
            })
            .collect())
    }

    /// One load: the statements before, one COPY per object's manifest, the statements
    /// after, as one transaction.
    pub async fn load(
        &self,
        load: &Load,
        manifests: &[String],
        nested: bool,
    ) -> Result<(), LoaderError> {
        let mut statements = load.before_copy.clone();
        for m in manifests {
            statements.push(copy(m, &self.copy_iam_role, nested));
        }
        statements.extend(load.after_copy.iter().cloned());
        self.execute(&statements).await
    }
}

/// `COPY` of one object by its manifest (Parquet needs its `content_length`): columns by
/// position, nested values (arrays) into SUPER as JSON; FILLRECORD for objects written
/// before the stage's last column (`_freshet_key_change`) was added.
pub fn copy(manifest_url: &str, iam_role: &str, nested: bool) -> String {
    let nested = if nested { " SERIALIZETOJSON" } else { "" };
    format!(
        "COPY {STAGE} FROM {} IAM_ROLE {} FORMAT AS PARQUET{nested} FILLRECORD MANIFEST",
        literal(manifest_url),
        literal(iam_role)
    )
}

/// Redshift's serialization conflict between concurrent transactions (error 1023).
fn is_conflict(error: &str) -> bool {
    error.contains("1023") || error.contains("Serializable isolation violation")
}

fn text(f: &Field) -> Option<String> {
    match f {
        Field::IsNull(true) => None,
        Field::StringValue(s) => Some(s.clone()),
        Field::LongValue(v) => Some(v.to_string()),
        Field::DoubleValue(v) => Some(v.to_string()),
        Field::BooleanValue(v) => Some(v.to_string()),
        _ => None,
    }
}
