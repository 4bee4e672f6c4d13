//! The error policy, in one table: what each failure of a half is, and so what happens next.
//! Stages say what went wrong (and whether the cause can pass: a server restarting, a broker
//! away); only this table decides what the supervisor and the exit code do about it.

use super::PipelineError;
use crate::batcher::BatcherError;
use crate::source::SourceError;
use crate::transform::{SchemaError, TransformError};

/// What a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The cause can pass (network, a restarting server or broker): the half restarts from
    /// its confirmed position, with backoff.
    Transient,
    /// A change Freshet cannot write as it is: it stops before acknowledging it, naming the
    /// table, column or object; an operator decides.
    Data,
    /// Setup or state an operator must fix (a lost slot, a changed topic, a refused login).
    Fatal,
}

impl Class {
    /// The process exit code of a failure that ends `freshet run`: EX_TEMPFAIL (75) for a
    /// transient one that outlived the run (the service unit restarts on it), 1 otherwise.
    /// Configuration errors exit 2 before any half runs.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Transient => 75,
            Class::Data | Class::Fatal => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Class::Transient => "transient: a restart resumes from the confirmed position",
            Class::Data => "data: nothing past this change is acknowledged; needs an operator",
            Class::Fatal => "needs an operator",
        }
    }
}

/// The class of a failure of either half.
pub fn classify(e: &PipelineError) -> Class {
    use Class::*;
    match e {
        PipelineError::Source(s) if s.is_transient() => Transient,
        PipelineError::Source(
            SourceError::Decode { .. }
            | SourceError::UnknownRelation(_)
            | SourceError::Shape { .. }
            | SourceError::NotUtf8 { .. }
            | SourceError::Value { .. }
            | SourceError::LeafPartition { .. }
            | SourceError::UnchangedKey { .. },
        ) => Data,
        PipelineError::Source(_) => Fatal,
        PipelineError::Transform(t) if t.is_transient() => Transient,
        PipelineError::Transform(
            TransformError::Encode(_) | TransformError::Schema(SchemaError::Incompatible { .. }),
        ) => Data,
        PipelineError::Transform(_) => Fatal,
        PipelineError::Kafka(k) if k.is_transient() => Transient,
        PipelineError::Kafka(_) => Fatal,
        // A restart resumes from the slot; unsynced changes are read again.
        PipelineError::DrainTimeout(_) => Transient,
        PipelineError::Restore(crate::kafka::tail::TailError::Record { .. }) => Data,
        PipelineError::Restore(crate::kafka::tail::TailError::Kafka(k)) if !k.is_transient() => {
            Fatal
        }
        PipelineError::Restore(_) => Transient,
        PipelineError::Batcher(b) if b.is_transient() => Transient,
        // The batcher stops before a record it cannot read or write, naming it.
        PipelineError::Batcher(BatcherError::Record { .. } | BatcherError::Parquet { .. }) => Data,
        PipelineError::Batcher(_) => Fatal,
        PipelineError::Store(s) if s.is_transient() => Transient,
        PipelineError::Store(_) => Fatal,
        PipelineError::Loader(l) if l.is_transient() => Transient,
        // A table the warehouse cannot follow, or an object it cannot read, stops alone
        // (the loader's own policy); what reaches here stops every table.
        PipelineError::Loader(_) => Fatal,
        PipelineError::Jsonl(_) | PipelineError::Config(_) | PipelineError::OutputTask(_) => Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_classes_failures_by_what_an_operator_must_do() {
        let source = |e: SourceError| classify(&PipelineError::Source(e));
        assert_eq!(source(SourceError::StreamEnded), Class::Transient);
        assert_eq!(
            source(SourceError::ConfirmTimeout {
                lsn: crate::lsn::Lsn(16),
                after: std::time::Duration::from_secs(10)
            }),
            Class::Transient
        );
        assert_eq!(source(SourceError::UnknownRelation(7)), Class::Data);
        assert_eq!(
            source(SourceError::SlotLost {
                slot: "s".into(),
                why: "dropped".into()
            }),
            Class::Fatal
        );
        assert_eq!(
            classify(&PipelineError::DrainTimeout(
                std::time::Duration::from_secs(1)
            )),
            Class::Transient
        );
        let incompatible = SchemaError::Incompatible {
            subject: "t-value".into(),
            difference: "column c dropped".into(),
            detail: String::new(),
        };
        assert_eq!(
            classify(&PipelineError::Transform(incompatible.into())),
            Class::Data
        );
        let registry_down = SchemaError::Registry {
            url: "http://r".into(),
            subject: "t-value".into(),
            error: "status 503".into(),
            transient: true,
        };
        assert_eq!(
            classify(&PipelineError::Transform(registry_down.into())),
            Class::Transient
        );
        assert_eq!(classify(&PipelineError::Config("x".into())), Class::Fatal);
        let store = |transient: bool| {
            let (endpoint, op, key, error) = ("s3://b".into(), "put", "k".into(), "e".into());
            PipelineError::Batcher(BatcherError::Store(if transient {
                crate::store::StoreError::Unavailable {
                    endpoint,
                    op,
                    key,
                    error,
                }
            } else {
                crate::store::StoreError::Rejected {
                    endpoint,
                    op,
                    key,
                    error,
                }
            }))
        };
        assert_eq!(classify(&store(true)), Class::Transient);
        assert_eq!(classify(&store(false)), Class::Fatal);
        let record = BatcherError::Record {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            why: "not Avro".into(),
        };
        assert_eq!(classify(&PipelineError::Batcher(record)), Class::Data);
        assert_eq!(
            classify(&PipelineError::Batcher(BatcherError::NoTopic("t".into()))),
            Class::Transient
        );
        assert_eq!(Class::Transient.exit_code(), 75);
        assert_eq!(Class::Data.exit_code(), 1);
    }
}
