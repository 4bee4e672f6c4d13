//! The pipeline file: YAML → [`Pipeline`]. Parsing stops at the first malformed value (serde
//! cannot go on past one); validation then reports every cross-field problem at once. Each
//! error names the file, line, column and key path.

mod model;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use value::{Duration, PgUrl, Secret, TableName, Text};

use serde_saphyr::{Location, Spanned};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the parser could not tell.
    pub line: u64,
    pub column: u64,
    /// Dotted key path, e.g. `source.heartbeat_interval` or `router.replicas[0].url`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// Reads, parses and validates a pipeline file against the process environment.
pub fn load(file: &Path) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(file, &text, std::env::vars().collect())
}

/// Parses and validates `text` as if read from `file`, with `env` for `${VAR}` references.
pub fn parse(
    file: &Path,
    text: &str,
    env: HashMap<String, String>,
) -> Result<Pipeline, ConfigError> {
    let problem = |location: Option<Location>, key: String, message: String| Problem {
        file: file.to_path_buf(),
        line: location.map_or(0, |l| l.line()),
        column: location.map_or(0, |l| l.column()),
        key,
        message,
    };
    let parsed = value::with_env(env, || {
        let mut key = String::new();
        let result = serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize::<_, Pipeline>(de).map_err(|e| {
                key = e.path().to_string();
                e.into_inner()
            })
        });
        result.map_err(|e| (key, Box::new(e)))
    });
    let pipeline = match parsed {
        Ok(p) => p,
        Err((key, e)) => {
            let key = if key == "." { String::new() } else { key };
            return Err(ConfigError::Invalid(vec![problem(
                e.location(),
                key,
                plain_message(&e),
            )]));
        }
    };
    let problems: Vec<Problem> = validate(&pipeline)
        .into_iter()
        .map(|(location, key, message)| problem(Some(location), key, message))
        .collect();
    if problems.is_empty() {
        Ok(pipeline)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The parser's message without its own location suffix (we print the location first).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let rendered = e.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or_default().trim();
    match first.rfind(" at line ") {
        Some(at) => first[..at].to_string(),
        None => first.to_string(),
    }
}

type Found = (Location, String, String);

fn validate(p: &Pipeline) -> Vec<Found> {
    fn at<T>(s: &Spanned<T>) -> Location {
        s.referenced
    }
    let mut found = Vec::new();
    for (i, t) in p.source.tables.iter().enumerate() {
        if p.source.tables[..i].iter().any(|u| u.value == t.value) {
            found.push((
                at(t),
                format!("source.tables[{i}]"),
                format!("{} is listed twice", t.value),
            ));
        }
    }
    for (name, table) in &p.tables {
        let key = format!("tables.{name}");
        match TableName::parse(name) {
            Err(e) => found.push((at(table), key.clone(), e)),
            Ok(t) if !p.source.tables.iter().any(|s| s.value == t) => found.push((
                at(table),
                key.clone(),
                format!("{t} is not in source.tables, so it is never captured"),
            )),
            Ok(_) => {}
        }
        let class = &table.value.freshness;
        if !p.freshness_classes.contains_key(&class.value) {
            let known: Vec<&str> = p.freshness_classes.keys().map(String::as_str).collect();
            found.push((
                at(class),
                format!("{key}.freshness"),
                format!(
                    "unknown freshness class {:?} (defined: {})",
                    class.value,
                    known.join(", ")
                ),
            ));
        }
    }

    if let Some(eav) = &p.transform.eav {
        for (key, table) in [("values", &eav.values), ("catalog", &eav.catalog)] {
            if !p.source.tables.iter().any(|s| s.value == table.value) {
                found.push((
                    at(table),
                    format!("transform.eav.{key}"),
                    format!(
                        "{} is not in source.tables, so it is never captured",
                        table.value
                    ),
                ));
            }
        }
        if eav.key.is_empty() {
            found.push((
                at(&eav.values),
                "transform.eav.key".into(),
                "the key needs at least one column (AtlasCo: [tenant_id, entity_id])".into(),
            ));
        }
    }

    if let Some(b) = &p.batcher {
        let store = &b.store.value.0;
        let ok = match store.split_once("://") {
            Some(("file", path)) => path.starts_with('/'),
            Some(("s3", rest)) => !rest.is_empty() && !rest.starts_with('/'),
            _ => false,
        };
        if !ok {
            found.push((
                at(&b.store),
                "batcher.store".into(),
                format!("{store:?} is neither file:///absolute/dir nor s3://bucket/prefix"),
            ));
        }
    }

    if let Some(w) = &p.warehouse {
        let (section, present) = match w.driver.value {
            WarehouseDriver::Postgres => ("postgres", w.postgres.is_some()),
            WarehouseDriver::RedshiftData => ("redshift_data", w.redshift_data.is_some()),
        };
        if !present {
            found.push((
                at(&w.driver),
                "warehouse.driver".into(),
                format!("driver {section} needs a warehouse.{section} section"),
            ));
        }
        if let Some(r) = &w.redshift_data {
            if r.value.cluster_identifier.is_some() == r.value.workgroup_name.is_some() {
                found.push((
                    at(r),
                    "warehouse.redshift_data".into(),
                    "set exactly one of cluster_identifier (provisioned) and workgroup_name (serverless)".into(),
                ));
            }
        }
    }

    if let Some(k) = &p.kafka {
        if let Some(sasl) = &k.security.sasl {
            let needs_password = sasl.mechanism.value != SaslMechanism::AwsMskIam;
            if needs_password && (sasl.username.is_none() || sasl.password.is_none()) {
                found.push((
                    at(&sasl.mechanism),
                    "kafka.security.sasl".into(),
                    "SCRAM needs username and password".into(),
                ));
            }
            if !needs_password && (sasl.username.is_some() || sasl.password.is_some()) {
                found.push((
                    at(&sasl.mechanism),
                    "kafka.security.sasl".into(),
                    "aws-msk-iam signs with the AWS credential chain: remove username and password"
                        .into(),
                ));
            }
            // The token is a bearer credential for 15 minutes, and MSK serves IAM on TLS only.
            if !needs_password && k.security.protocol == SecurityProtocol::SaslPlaintext {
                found.push((
                    at(&sasl.mechanism),
                    "kafka.security.protocol".into(),
                    "aws-msk-iam needs protocol sasl_ssl".into(),
                ));
            }
            if matches!(
                k.security.protocol,
                SecurityProtocol::Plaintext | SecurityProtocol::Ssl
            ) {
                found.push((
                    at(&sasl.mechanism),
                    "kafka.security.protocol".into(),
                    "sasl is configured but the protocol is not sasl_plaintext or sasl_ssl".into(),
                ));
            }
        }
    }

    for (i, r) in p.router.replicas.iter().enumerate() {
        if p.router.replicas[..i]
            .iter()
            .any(|q| q.name.value == r.name.value)
        {
            found.push((
                at(&r.name),
                format!("router.replicas[{i}].name"),
                format!("{:?} is used twice", r.name.value),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests;
