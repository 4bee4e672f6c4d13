//! Deterministic AtlasCo data: the attribute catalog, each entity's attributes and their
//! values. Everything is a pure function of the seed and the entity id, so a fill gives the
//! same rows however it is split across connections.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The five value types, in the order of the typed columns of `atlasco.entity_values`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    String,
    Integer,
    Float,
    Boolean,
    Timestamp,
}

impl ValueType {
    pub const ALL: [ValueType; 5] = [
        ValueType::String,
        ValueType::Integer,
        ValueType::Float,
        ValueType::Boolean,
        ValueType::Timestamp,
    ];

    /// Share of each type among catalog attributes, in percent: text dominates real EAV
    /// catalogs, timestamps are rare.
    pub const fn weight_percent(self) -> u32 {
        match self {
            ValueType::String => 40,
            ValueType::Integer => 25,
            ValueType::Float => 20,
            ValueType::Boolean => 10,
            ValueType::Timestamp => 5,
        }
    }

    pub const fn sql_name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Boolean => "boolean",
            ValueType::Timestamp => "timestamp",
        }
    }

    pub fn from_sql_name(name: &str) -> Option<ValueType> {
        ValueType::ALL.into_iter().find(|t| t.sql_name() == name)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The attributes every entity has, in catalog order (ids 1..=5); the queries in
/// `schema/queries.sql` use them by name.
pub const NAMED: [(&str, ValueType); 5] = [
    ("status", ValueType::String),
    ("temperature", ValueType::Float),
    ("priority", ValueType::Integer),
    ("active", ValueType::Boolean),
    ("last_seen", ValueType::Timestamp),
];

pub const STATUSES: [&str; 4] = ["active", "inactive", "pending", "archived"];
pub const ENTITY_TYPES: [&str; 4] = ["sensor", "device", "site", "asset"];
const WORDS: [&str; 16] = [
    "north",
    "south",
    "Zürich",
    "São Paulo",
    "東京",
    "naïve",
    "alpha",
    "beta",
    "pump",
    "valve",
    "line",
    "rack",
    "floor",
    "zone",
    "Kraków",
    "ĉambro",
];
/// Seconds since the Unix epoch of 2026-01-01T00:00:00Z: generated timestamps fall in 2026.
const EPOCH_2026: i64 = 1_767_225_600;

#[derive(Clone, Debug)]
pub struct Attribute {
    pub id: i32,
    pub name: String,
    pub value_type: ValueType,
}

/// The catalog: the named attributes, then `attr_NNNNN` with types drawn by weight.
pub fn catalog(seed: u64, size: u32) -> Vec<Attribute> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xCA7A_1065);
    (1..=size as i32)
        .map(|id| match NAMED.get(id as usize - 1) {
            Some(&(name, value_type)) => Attribute {
                id,
                name: name.to_string(),
                value_type,
            },
            None => Attribute {
                id,
                name: format!("attr_{id:05}"),
                value_type: weighted_type(&mut rng),
            },
        })
        .collect()
}

fn weighted_type(rng: &mut impl Rng) -> ValueType {
    let mut roll = rng.random_range(0..100);
    for t in ValueType::ALL {
        if roll < t.weight_percent() {
            return t;
        }
        roll -= t.weight_percent();
    }
    ValueType::String
}

/// An RNG for one entity: independent of which connection generates it.
pub fn entity_rng(seed: u64, entity_id: i64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ entity_id as u64)
}

/// Indices into the catalog of the `per_entity` attributes of one entity: the named ones first,
/// then a run of consecutive catalog attributes from a random start, so values are sparse
/// across the catalog (as in AtlasCo's data) but distinct within an entity.
pub fn entity_attributes(rng: &mut impl Rng, catalog_len: usize, per_entity: usize) -> Vec<usize> {
    let named = per_entity.min(NAMED.len());
    let mut picked: Vec<usize> = (0..named).collect();
    let rest = catalog_len - NAMED.len();
    if per_entity > named && rest > 0 {
        let start = rng.random_range(0..rest);
        picked.extend((0..per_entity - named).map(|i| NAMED.len() + (start + i) % rest));
    }
    picked
}

/// A typed value, rendered for COPY text format or as an SQL literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    /// Seconds since the Unix epoch, UTC.
    Timestamp(i64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Integer(_) => ValueType::Integer,
            Value::Float(_) => ValueType::Float,
            Value::Boolean(_) => ValueType::Boolean,
            Value::Timestamp(_) => ValueType::Timestamp,
        }
    }

    /// The five typed columns in COPY text format: this value in its column, `\N` elsewhere.
    pub fn write_copy_columns(&self, out: &mut String) {
        let own = self.value_type().index();
        for i in 0..ValueType::ALL.len() {
            out.push('\t');
            if i != own {
                out.push_str("\\N");
                continue;
            }
            match self {
                Value::String(s) => copy_escape(s, out),
                Value::Integer(n) => out.push_str(&n.to_string()),
                Value::Float(f) => out.push_str(&f.to_string()),
                Value::Boolean(b) => out.push(if *b { 't' } else { 'f' }),
                Value::Timestamp(t) => out.push_str(&timestamp_text(*t)),
            }
        }
    }

    /// The value as an SQL literal of its column's type.
    pub fn sql_literal(&self) -> String {
        match self {
            Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Integer(n) => n.to_string(),
            Value::Float(f) => format!("{f}::float8"),
            Value::Boolean(b) => b.to_string(),
            Value::Timestamp(t) => format!("to_timestamp({t})"),
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS+00` for epoch seconds, as timestamptz input.
fn timestamp_text(epoch_secs: i64) -> String {
    match chrono::DateTime::from_timestamp(epoch_secs, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S+00").to_string(),
        // Out of chrono's range only for values this generator never makes.
        None => "epoch".to_string(),
    }
}

/// COPY text format escaping: backslash, tab, newline and carriage return.
pub fn copy_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A realistic value for `attribute`.
pub fn value_for(rng: &mut impl Rng, attribute: &Attribute) -> Value {
    match (attribute.name.as_str(), attribute.value_type) {
        ("status", _) => {
            let roll = rng.random_range(0..100);
            let i = match roll {
                0..50 => 0,
                50..75 => 1,
                75..90 => 2,
                _ => 3,
            };
            Value::String(STATUSES[i].to_string())
        }
        ("temperature", _) => {
            // Normal(22, 8) by Box–Muller, two decimals: sensor readings, not uniform noise.
            let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            Value::Float(((22.0 + 8.0 * z) * 100.0).round() / 100.0)
        }
        ("priority", _) => Value::Integer(rng.random_range(1..=5)),
        (_, ValueType::String) => {
            let words = rng.random_range(1..=4);
            let text: Vec<&str> = (0..words)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            Value::String(text.join(" "))
        }
        (_, ValueType::Integer) => Value::Integer(rng.random_range(0..1_000_000)),
        (_, ValueType::Float) => {
            Value::Float((rng.random_range(0.0..1000.0f64) * 1000.0).round() / 1000.0)
        }
        (_, ValueType::Boolean) => Value::Boolean(rng.random()),
        (_, ValueType::Timestamp) => {
            Value::Timestamp(EPOCH_2026 + rng.random_range(0..365 * 86_400))
        }
    }
}

/// A string of `len` random alphanumerics: incompressible enough that PostgreSQL stores it
/// out of line (TOAST) rather than compressing it inline.
pub fn large_string(rng: &mut impl Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_deterministic_and_starts_with_the_named_attributes() {
        let a = catalog(7, 500);
        let b = catalog(7, 500);
        assert_eq!(a.len(), 500);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.name == y.name && x.value_type == y.value_type));
        for (i, (name, t)) in NAMED.iter().enumerate() {
            assert_eq!(
                (a[i].id, a[i].name.as_str(), a[i].value_type),
                (i as i32 + 1, *name, *t)
            );
        }
        let strings = a[5..]
            .iter()
            .filter(|x| x.value_type == ValueType::String)
            .count();
        assert!(
            (160..=240).contains(&strings),
            "{strings} of 495 are strings, expected about 40%"
        );
        assert_ne!(
            catalog(8, 500)
                .iter()
                .map(|x| x.value_type.index())
                .sum::<usize>(),
            0
        );
    }

    #[test]
    fn entity_attributes_are_distinct_and_include_the_named_ones() {
        let mut rng = entity_rng(1, 42);
        let picked = entity_attributes(&mut rng, 100, 30);
        assert_eq!(picked.len(), 30);
        assert_eq!(&picked[..5], &[0, 1, 2, 3, 4]);
        let mut sorted = picked.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 30);
        assert!(picked.iter().all(|&i| i < 100));
        assert_eq!(
            entity_attributes(&mut entity_rng(1, 1), 100, 3),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn copy_columns_put_the_value_in_its_own_column() {
        let mut out = String::new();
        Value::String("a\tb\\c\nd".into()).write_copy_columns(&mut out);
        assert_eq!(out, "\ta\\tb\\\\c\\nd\t\\N\t\\N\t\\N\t\\N");
        out.clear();
        Value::Boolean(true).write_copy_columns(&mut out);
        assert_eq!(out, "\t\\N\t\\N\t\\N\tt\t\\N");
        out.clear();
        Value::Timestamp(EPOCH_2026 + 3661).write_copy_columns(&mut out);
        assert_eq!(out, "\t\\N\t\\N\t\\N\t\\N\t2026-01-01 01:01:01+00");
        assert_eq!(Value::String("it's".into()).sql_literal(), "'it''s'");
    }

    #[test]
    fn values_match_their_attribute_types() {
        let cat = catalog(3, 200);
        let mut rng = entity_rng(3, 9);
        for a in &cat {
            assert_eq!(
                value_for(&mut rng, a).value_type(),
                a.value_type,
                "{}",
                a.name
            );
        }
    }
}
