//! `bpo data convert`: records copied between the formats bpo reads and writes, JSONL and
//! Parquet, so pair files of online runs can be published as Hub datasets and Hub datasets read
//! as JSONL.

use std::path::Path;

use crate::error::DataError;
use crate::jsonl::{ReadOptions, Reader, Skipped, Writer};
use crate::layout::is_parquet_name;
use crate::parquet_writer::ParquetWriter;
use crate::record::{PreferencePair, PromptRecord};
use crate::stats::{AnyRecord, Kind};

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Pairs or prompts.
    pub kind: Kind,
    /// Records written.
    pub records: usize,
    /// Records skipped (only with `skip_invalid`).
    pub skipped: Vec<Skipped>,
}

enum Sink {
    Jsonl(Writer),
    ParquetPairs(ParquetWriter<PreferencePair>),
    ParquetPrompts(ParquetWriter<PromptRecord>),
}

/// Copies every record of `input` (anything [`Reader::open`] reads) to `output`: Parquet when
/// its extension is `.parquet`, else JSONL. All records must be of one kind (pairs or prompts);
/// the output appears only when whole.
pub fn convert(input: &Path, output: &Path, options: ReadOptions) -> Result<Converted, DataError> {
    let mut reader = Reader::<AnyRecord>::open(input, options)?;
    let mut sink: Option<(Kind, Sink)> = None;
    for (index, record) in reader.by_ref().enumerate() {
        let record = record?;
        let kind = match record {
            AnyRecord::Pair(_) => Kind::Pairs,
            AnyRecord::Prompt(_) => Kind::Prompts,
        };
        let (first, sink) = match &mut sink {
            Some(open) => open,
            empty => empty.insert((kind, open_sink(kind, output)?)),
        };
        let mixed = || {
            DataError::Prepare(format!(
                "{}: valid record {index} (0-based) is one of {kind:?} but the records before it \
                 are {first:?}: a file holds one kind",
                input.display()
            ))
        };
        match (sink, record) {
            (Sink::Jsonl(w), record) if kind == *first => w.write(&record)?,
            (Sink::ParquetPairs(w), AnyRecord::Pair(p)) => w.write(&p)?,
            (Sink::ParquetPrompts(w), AnyRecord::Prompt(p)) => w.write(&p)?,
            _ => return Err(mixed()),
        }
    }
    let skipped = reader.skipped().to_vec();
    let Some((kind, sink)) = sink else {
        return Err(DataError::Prepare(format!(
            "{}: no valid records to convert",
            input.display()
        )));
    };
    let records = match sink {
        Sink::Jsonl(w) => w.finish()?,
        Sink::ParquetPairs(w) => w.finish()?,
        Sink::ParquetPrompts(w) => w.finish()?,
    };
    Ok(Converted {
        kind,
        records,
        skipped,
    })
}

fn open_sink(kind: Kind, output: &Path) -> Result<Sink, DataError> {
    let parquet = output.to_str().is_some_and(is_parquet_name);
    Ok(match (parquet, kind) {
        (false, _) => Sink::Jsonl(Writer::create(output)?),
        (true, Kind::Pairs) => Sink::ParquetPairs(ParquetWriter::create(output)?),
        (true, Kind::Prompts) => Sink::ParquetPrompts(ParquetWriter::create(output)?),
    })
}
