//! The lake's layout: where an object goes, read back from its name on start, and the
//! Redshift manifest beside it.
//!
//! `{table}/dt=YYYY-MM-DD/{partition}-{first_offset}-{last_offset}.parquet` under the store's
//! prefix, the date being the first row's commit date (UTC). Everything in the name follows
//! from the records in the object, so a retry writes the same object under the same name.
//! The manifest is `_{partition}-{first}-{last}.manifest` in the same directory: readers of
//! Hive-style layouts (pyarrow, Spark, Athena) skip names starting with `_`.

use serde_json::json;

/// A table's directory name: `schema.table`, with every byte outside `[A-Za-z0-9_.-]`
/// percent-encoded (table names may hold `/`, quotes or spaces).
pub fn table_dir(schema: &str, table: &str) -> String {
    let mut out = String::new();
    for (i, part) in [schema, table].into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for b in part.bytes() {
            // `.` is escaped inside a name: it separates schema from table.
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Where one object lies in its topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub partition: i32,
    pub first: i64,
    pub last: i64,
}

/// The object's key.
pub fn object_key(table_dir: &str, date: &str, span: Span) -> String {
    format!(
        "{table_dir}/dt={date}/{}-{}-{}.parquet",
        span.partition, span.first, span.last
    )
}

/// The manifest's key for an object's key.
pub fn manifest_key(object_key: &str) -> String {
    let (dir, file) = object_key.rsplit_once('/').unwrap_or(("", object_key));
    let stem = file.strip_suffix(".parquet").unwrap_or(file);
    format!("{dir}/_{stem}.manifest")
}

/// The span of an object key this layout wrote; `None` for anything else.
pub fn parse(key: &str) -> Option<Span> {
    let file = key.rsplit('/').next()?;
    let stem = file.strip_suffix(".parquet")?;
    let mut parts = stem.splitn(3, '-');
    let span = Span {
        partition: parts.next()?.parse().ok()?,
        first: parts.next()?.parse().ok()?,
        last: parts.next()?.parse().ok()?,
    };
    (span.first <= span.last && span.first >= 0).then_some(span)
}

/// A Redshift COPY manifest naming one object, with the `content_length` COPY needs for
/// Parquet.
pub fn manifest(url: &str, content_length: u64) -> Vec<u8> {
    let doc = json!({"entries": [{
        "url": url,
        "mandatory": true,
        "meta": {"content_length": content_length}
    }]});
    let mut out = doc.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// The UTC date of a commit time in Unix milliseconds.
pub fn date_of(commit_ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(commit_ts_ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000-00-00".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_strangers_are_ignored() {
        let span = Span {
            partition: 3,
            first: 120,
            last: 4999,
        };
        let key = object_key(&table_dir("atlasco", "entity_values"), "2026-11-30", span);
        assert_eq!(
            key,
            "atlasco.entity_values/dt=2026-11-30/3-120-4999.parquet"
        );
        assert_eq!(parse(&key), Some(span));
        assert_eq!(
            manifest_key(&key),
            "atlasco.entity_values/dt=2026-11-30/_3-120-4999.manifest"
        );
        assert_eq!(parse(&manifest_key(&key)), None);
        assert_eq!(parse("t/dt=x/.3-1-2.parquet.tmp-9"), None);
        assert_eq!(parse("t/dt=x/3-5-2.parquet"), None);
        assert_eq!(
            table_dir("public", "Odd \"T\"/x.y"),
            "public.Odd%20%22T%22%2Fx%2Ey"
        );
        assert_eq!(date_of(1_780_000_000_000), "2026-05-28");
    }

    #[test]
    fn manifests_carry_the_content_length() {
        let m: serde_json::Value =
            serde_json::from_slice(&manifest("s3://b/k.parquet", 42)).unwrap();
        assert_eq!(m["entries"][0]["meta"]["content_length"], 42);
        assert_eq!(m["entries"][0]["mandatory"], true);
    }
}
