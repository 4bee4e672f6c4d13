//! What a column's PostgreSQL type means, decided once. The Avro writer, the lake's Arrow
//! schema and the warehouse's DDL each match on [`ColumnKind`] exhaustively, so a type
//! added here is a compile error in all three until each says how it maps.

use std::sync::Arc;

use crate::change::{TypeInfo, TypeKind};
use crate::source::value::oid;

/// Types without a constant in the decoder (kept there as text).
pub(crate) mod extra_oid {
    pub const XML: u32 = 142;
    pub const MONEY: u32 = 790;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const BIT: u32 = 1560;
    pub const VARBIT: u32 = 1562;
}

/// PostgreSQL's default precision of the time types: microseconds.
const MICROS: u8 = 6;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Bool,
    Int16,
    Int32,
    /// int8 and oid.
    Int64,
    Float32,
    Float64,
    /// numeric(p, s).
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// numeric without a usable typmod: any scale per value.
    Numeric,
    /// money: a decimal with two fraction digits.
    Money,
    Bytes,
    Date,
    /// Fraction digits of the type (0–6).
    Time {
        precision: u8,
    },
    Timestamp {
        precision: u8,
    },
    TimestampTz {
        precision: u8,
    },
    TimeTz,
    Interval,
    Uuid,
    /// json and jsonb.
    Json,
    Xml,
    /// bit(1) and varbit(1).
    Bit,
    /// Longer bit strings; `None` when unbounded.
    Bits {
        length: Option<u32>,
    },
    /// A user-defined enum and its labels in sort order.
    Enum(Arc<[String]>),
    Array(Box<ColumnKind>),
    /// text, varchar, char and every type kept in its text form.
    Text,
}

impl ColumnKind {
    /// The kind of a column of type `ty` with type modifier `typmod` (-1: none).
    pub fn of(ty: &TypeInfo, typmod: i32) -> ColumnKind {
        let precision = || {
            if (0..=i32::from(MICROS)).contains(&typmod) {
                typmod as u8
            } else {
                MICROS
            }
        };
        match &ty.kind {
            TypeKind::Enum(labels) => ColumnKind::Enum(labels.clone()),
            // PostgreSQL does not keep an element typmod apart from the array's.
            TypeKind::Array(elem) => ColumnKind::Array(Box::new(ColumnKind::of(elem, -1))),
            TypeKind::Scalar | TypeKind::Other => match ty.oid {
                oid::BOOL => ColumnKind::Bool,
                oid::INT2 => ColumnKind::Int16,
                oid::INT4 => ColumnKind::Int32,
                oid::INT8 | oid::OID => ColumnKind::Int64,
                oid::FLOAT4 => ColumnKind::Float32,
                oid::FLOAT8 => ColumnKind::Float64,
                oid::NUMERIC => match numeric_typmod(typmod) {
                    Some((precision, scale)) => ColumnKind::Decimal { precision, scale },
                    None => ColumnKind::Numeric,
                },
                extra_oid::MONEY => ColumnKind::Money,
                oid::BYTEA => ColumnKind::Bytes,
                oid::DATE => ColumnKind::Date,
                oid::TIME => ColumnKind::Time {
                    precision: precision(),
                },
                oid::TIMESTAMP => ColumnKind::Timestamp {
                    precision: precision(),
                },
                oid::TIMESTAMPTZ => ColumnKind::TimestampTz {
                    precision: precision(),
                },
                extra_oid::TIMETZ => ColumnKind::TimeTz,
                extra_oid::INTERVAL => ColumnKind::Interval,
                oid::UUID => ColumnKind::Uuid,
                oid::JSON | oid::JSONB => ColumnKind::Json,
                extra_oid::XML => ColumnKind::Xml,
                extra_oid::BIT | extra_oid::VARBIT if typmod == 1 => ColumnKind::Bit,
                extra_oid::BIT | extra_oid::VARBIT => ColumnKind::Bits {
                    length: u32::try_from(typmod).ok().filter(|l| *l > 0),
                },
                _ => ColumnKind::Text,
            },
        }
    }
}

/// numeric(p,s) as PostgreSQL packs it; a negative or oversized scale has no fixed-scale
/// decimal form anywhere downstream.
pub fn numeric_typmod(typmod: i32) -> Option<(u32, u32)> {
    if typmod < 4 {
        return None;
    }
    let t = (typmod - 4) as u32;
    let (precision, scale) = (t >> 16 & 0xffff, t & 0x7ff);
    (t & 0xffff <= 0x3ff && scale <= precision && precision > 0).then_some((precision, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(oid: u32) -> TypeInfo {
        TypeInfo {
            oid,
            kind: TypeKind::Scalar,
        }
    }

    #[test]
    fn typmods_decide_precision_and_scale() {
        // numeric(12,2): ((12 << 16) | 2) + 4
        assert_eq!(
            ColumnKind::of(&scalar(oid::NUMERIC), (12 << 16 | 2) + 4),
            ColumnKind::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            ColumnKind::of(&scalar(oid::NUMERIC), -1),
            ColumnKind::Numeric
        );
        assert_eq!(
            ColumnKind::of(&scalar(oid::TIMESTAMPTZ), 3),
            ColumnKind::TimestampTz { precision: 3 }
        );
        assert_eq!(
            ColumnKind::of(&scalar(oid::TIME), -1),
            ColumnKind::Time { precision: 6 }
        );
        assert_eq!(
            ColumnKind::of(&scalar(extra_oid::VARBIT), -1),
            ColumnKind::Bits { length: None }
        );
        assert_eq!(ColumnKind::of(&scalar(extra_oid::BIT), 1), ColumnKind::Bit);
        assert_eq!(ColumnKind::of(&scalar(600), -1), ColumnKind::Text);
    }
}
