//! Text longer than the warehouse's widest VARCHAR (Redshift: 65,535 bytes). Redshift's COPY
//! would fail the whole load on one such value, so the policy is truncate and flag: the
//! object is written again beside itself (`_{name}.truncated.parquet`, a name the lake's
//! readers and Freshet's own listing pass over) with each such value cut at the last whole
//! character within the limit, and each cut is counted per table and column in
//! `freshet_loader_values_truncated_total` and logged with the object's name. PostgreSQL's
//! text has no such limit: nothing is cut there.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// An object written again with its long text cut, and per column how many values were.
pub struct Cut {
    pub body: Bytes,
    pub columns: Vec<(String, u64)>,
}

/// The object again with every text value cut to `limit` bytes; `None` when none was longer.
pub fn truncate(body: &Bytes, limit: usize) -> Result<Option<Cut>, String> {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(body.clone()).map_err(|e| e.to_string())?;
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder
        .build()
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let too_long = |a: &ArrayRef| {
        a.data_type() == &DataType::Utf8
            && a.as_string::<i32>()
                .iter()
                .flatten()
                .any(|v| v.len() > limit)
    };
    if !batches.iter().any(|b| b.columns().iter().any(too_long)) {
        return Ok(None);
    }
    let mut cut: Vec<(String, u64)> = Vec::new();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(metadata))
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(|e| e.to_string())?;
    for batch in &batches {
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if !too_long(column) {
                columns.push(column.clone());
                continue;
            }
            let mut n = 0;
            let values: StringArray = column
                .as_string::<i32>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        if v.len() > limit {
                            n += 1;
                            let mut end = limit;
                            while !v.is_char_boundary(end) {
                                end -= 1;
                            }
                            &v[..end]
                        } else {
                            v
                        }
                    })
                })
                .collect();
            match cut.iter_mut().find(|(name, _)| name == field.name()) {
                Some((_, count)) => *count += n,
                None => cut.push((field.name().clone(), n)),
            }
            columns.push(Arc::new(values) as ArrayRef);
        }
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        writer.write(&batch).map_err(|e| e.to_string())?;
    }
    let out = writer.into_inner().map_err(|e| e.to_string())?;
    Ok(Some(Cut {
        body: Bytes::from(out),
        columns: cut,
    }))
}

/// Where the truncated copy of the object at `key` goes.
pub fn key_of(key: &str) -> String {
    let (dir, file) = key.rsplit_once('/').unwrap_or(("", key));
    let stem = file.strip_suffix(".parquet").unwrap_or(file);
    format!("{dir}/_{stem}.truncated.parquet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Field, Schema};

    #[test]
    fn long_text_is_cut_at_a_character_and_counted() {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        let long = "é".repeat(10); // 20 bytes
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![
                Some(long.as_str()),
                Some("short"),
                None,
            ]))],
        )
        .expect("batch");
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).expect("writer");
        writer.write(&batch).expect("write");
        let body = Bytes::from(writer.into_inner().expect("parquet"));
        assert!(truncate(&body, 20).expect("read").is_none());
        let cut = truncate(&body, 7).expect("read").expect("cut");
        assert_eq!(cut.columns, vec![("t".to_owned(), 1)]);
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(cut.body)
            .expect("reader")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("batches");
        let values = read[0].column(0).as_string::<i32>();
        assert_eq!(
            values.value(0),
            "ééé",
            "cut before the character that would cross 7 bytes"
        );
        assert_eq!(values.value(1), "short");
        assert!(values.is_null(2));
        assert!(crate::batcher::layout::parse(&key_of("t/dt=2026-11-30/3-1-9.parquet")).is_none());
    }
}
