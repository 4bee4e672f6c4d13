//! Scalars of the pipeline file that do more than carry a string: `${VAR}` expansion, secrets,
//! durations and table names. Each validates while it is deserialized, so its error carries the
//! file position and key path of the offending value.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration as StdDuration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserialize, Deserializer};

thread_local! {
    // Deserialization is synchronous, so the environment one parse reads from is handed to the
    // scalar impls through the thread; tests pass their own map instead of mutating the process.
    static ENV: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
}

/// Runs `f` with `env` as the source of `${VAR}` values.
pub(super) fn with_env<R>(env: HashMap<String, String>, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ENV.with(|cell| cell.borrow_mut().take());
        }
    }
    ENV.with(|cell| *cell.borrow_mut() = Some(env));
    let _reset = Reset;
    f()
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`.
fn expand(raw: &str) -> Result<String, String> {
    ENV.with(|cell| {
        let env = cell.borrow();
        let lookup = |name: &str| env.as_ref().and_then(|map| map.get(name).cloned());
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 1..];
            if let Some(after) = tail.strip_prefix('$') {
                out.push('$');
                rest = after;
            } else if let Some(body) = tail.strip_prefix('{') {
                let end =
                    closing_brace(body).ok_or_else(|| format!("unterminated `${{` in {raw:?}"))?;
                let (name, default) = match body[..end].split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (&body[..end], None),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err(format!(
                        "`${{{name}}}` is not a valid environment variable name"
                    ));
                }
                match (lookup(name), default) {
                    (Some(value), _) => out.push_str(&value),
                    (None, Some(default)) => out.push_str(&expand(default)?),
                    (None, None) => {
                        return Err(format!(
                            "environment variable {name} is not set (referenced as ${{{name}}})"
                        ))
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = tail;
            }
        }
        out.push_str(rest);
        Ok(out)
    })
}

/// The `}` closing a `${`, skipping nested `${…}` in a default.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'{' if i > 0 && bytes[i - 1] == b'$' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A string in which `${VAR}` references are expanded from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw).map(Text).map_err(de::Error::custom)
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An expanded string that never reaches a log: `Debug` prints `[REDACTED]`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(|t| Secret(SecretString::from(t.0)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A PostgreSQL connection string (libpq URL or key=value form), checked at parse time.
/// It may hold a password, so it is a secret.
#[derive(Clone, Debug)]
pub struct PgUrl(Secret);

impl PgUrl {
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn to_config(&self) -> crate::pg::Dsn {
        // Parsed once already in `deserialize`; a failure here would be a bug, and an empty
        // config then fails at connect time with a clear message rather than a panic.
        crate::pg::Dsn::parse(self.expose()).unwrap_or_default()
    }
}

impl std::str::FromStr for PgUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::pg::Dsn::parse(s)
            .map(|_| PgUrl(Secret(SecretString::from(s.to_string()))))
            .map_err(|e| format!("not a PostgreSQL connection string: {e}"))
    }
}

impl<'de> Deserialize<'de> for PgUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secret = Secret::deserialize(d)?;
        match crate::pg::Dsn::parse(secret.expose()) {
            // The parser's message never echoes the input, so the password stays out of it.
            Err(e) => Err(de::Error::custom(format!(
                "not a PostgreSQL connection string: {e}"
            ))),
            Ok(_) => Ok(PgUrl(secret)),
        }
    }
}

/// A duration written with its unit: `0ms`, `500ms`, `30s`, `15m`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Text::deserialize(d)?.0;
        humantime::parse_duration(raw.trim()).map(Duration).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {raw:?}: {e} (write a number with a unit: 0ms, 500ms, 30s, 15m, 1h)"
            ))
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// `schema.table`, with PostgreSQL's identifier rules: unquoted parts fold to lower case,
/// `"Quoted"` parts keep theirs (and `""` inside quotes is one `"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    pub fn parse(raw: &str) -> Result<TableName, String> {
        let mut parts = Vec::new();
        let mut chars = raw.trim().chars().peekable();
        loop {
            let mut part = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            part.push('"');
                        }
                        Some('"') => break,
                        Some(c) => part.push(c),
                        None => return Err(format!("unterminated quoted identifier in {raw:?}")),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        return Err(format!(
                            "{raw:?}: {c:?} is not allowed in an unquoted identifier (quote it: \"…\")"
                        ));
                    }
                    part.extend(c.to_lowercase());
                    chars.next();
                }
            }
            if part.is_empty() {
                return Err(format!("{raw:?} has an empty name part"));
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(c) => {
                    return Err(format!(
                        "{raw:?}: unexpected {c:?} after a quoted identifier"
                    ))
                }
            }
        }
        match <[String; 2]>::try_from(parts) {
            Ok([schema, table]) => Ok(TableName { schema, table }),
            Err(_) => Err(format!("{raw:?} is not of the form schema.table")),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn ident(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
            let plain = s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit());
            if plain {
                f.write_str(s)
            } else {
                write!(f, "\"{}\"", s.replace('"', "\"\""))
            }
        }
        ident(f, &self.schema)?;
        f.write_str(".")?;
        ident(f, &self.table)
    }
}

impl<'de> Deserialize<'de> for TableName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Text::deserialize(d)?.0;
        TableName::parse(&raw).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_with(vars: &[(&str, &str)], raw: &str) -> Result<String, String> {
        let env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        with_env(env, || expand(raw))
    }

    #[test]
    fn expands_variables_defaults_and_dollar_escapes() {
        let vars = [("HOST", "db.internal"), ("EMPTY", "")];
        assert_eq!(
            expand_with(&vars, "pg://${HOST}:5432").unwrap(),
            "pg://db.internal:5432"
        );
        assert_eq!(
            expand_with(&vars, "${MISSING:-fallback}").unwrap(),
            "fallback"
        );
        assert_eq!(expand_with(&vars, "x${EMPTY}y").unwrap(), "xy");
        assert_eq!(
            expand_with(&vars, "cost $$5 and $x").unwrap(),
            "cost $5 and $x"
        );
        assert_eq!(
            expand_with(&vars, "${A:-${HOST}}/x").unwrap(),
            "db.internal/x"
        );
        assert_eq!(expand_with(&vars, "${A:-${B:-deep}}").unwrap(), "deep");
    }

    #[test]
    fn missing_variable_and_bad_syntax_are_errors() {
        let err = expand_with(&[], "${NOPE}").unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
        assert!(expand_with(&[], "${UNCLOSED")
            .unwrap_err()
            .contains("unterminated"));
        assert!(expand_with(&[], "${1BAD}")
            .unwrap_err()
            .contains("not a valid"));
    }

    #[test]
    fn table_names_follow_postgres_identifier_rules() {
        let t = TableName::parse("AtlasCo.Entity_Values").unwrap();
        assert_eq!(
            (t.schema.as_str(), t.table.as_str()),
            ("atlasco", "entity_values")
        );
        let q = TableName::parse(r#""My Schema"."Odd""Name""#).unwrap();
        assert_eq!(
            (q.schema.as_str(), q.table.as_str()),
            ("My Schema", "Odd\"Name")
        );
        assert_eq!(q.to_string(), r#""My Schema"."Odd""Name""#);
        assert!(TableName::parse("no_schema").is_err());
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse("a.").is_err());
        assert!(TableName::parse("a.b-c").is_err());
    }
}
