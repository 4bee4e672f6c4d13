//! `cargo fuzz run value_parse`: the typed value parser reads the text PostgreSQL sends for a
//! column. It must never panic, and a value it accepts must read back to the same PostgreSQL
//! text from its own (what the snapshot and the exact-values field carry).

#![no_main]

use freshet::change::{TypeInfo, TypeKind};
use freshet::source::relation::SCALARS;
use freshet::source::value::parse_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let scalar = TypeInfo {
        oid: SCALARS[usize::from(pick) % SCALARS.len()],
        kind: TypeKind::Scalar,
    };
    // The high bit picks the array of the type.
    let ty = if pick & 0x80 != 0 {
        TypeInfo {
            oid: 0,
            kind: TypeKind::Array(Box::new(scalar)),
        }
    } else {
        scalar
    };
    if let Ok(value) = parse_text(&ty, text) {
        // Compared as text: NaN is a value too.
        let printed = value.to_pg_text();
        let again = parse_text(&ty, &printed).map(|v| v.to_pg_text());
        assert_eq!(
            again,
            Ok(printed.clone()),
            "{text:?} printed as {printed:?}"
        );
        let _ = value.to_json();
    }
});
