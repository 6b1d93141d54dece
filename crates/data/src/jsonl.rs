//! Reading and writing records: JSONL streamed line by line and Parquet row group by row group
//! (a multi-GB file never sits in memory), JSON arrays read whole. Bad records are errors
//! naming file, line (or row) and field, or, with `skip_invalid`, skipped and reported.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, FieldError, Location};
use crate::layout::is_parquet_name;
use crate::parquet_rows::ParquetRows;
use crate::record::Record;
use crate::source::resolve_files;

/// How strictly to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Skip malformed records (and report them) instead of failing on the first.
    pub skip_invalid: bool,
    /// Longest accepted record, in bytes (JSONL and JSON; a Parquet row is as its file holds
    /// it).
    pub max_record_bytes: usize,
}

impl Default for ReadOptions {
    /// Strict, records up to 4 MiB.
    fn default() -> Self {
        ReadOptions {
            skip_invalid: false,
            max_record_bytes: 4 << 20,
        }
    }
}

/// A record that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The file it was in.
    pub source: String,
    /// Where it was.
    pub location: Location,
    /// The error, field included.
    pub reason: String,
}

/// One record as read: where it was and what it parsed to.
type RawRecord<T> = (Location, Result<T, FieldError>);

enum Source {
    Lines(Box<dyn BufRead>),
    Array(std::vec::IntoIter<Value>),
    Parquet(ParquetRows),
}

/// A streaming reader of records of type `T`.
pub struct Reader<T> {
    source: Source,
    name: String,
    options: ReadOptions,
    /// Location of the next record: line (JSONL) or element (array); Parquet keeps its own.
    position: usize,
    skipped: Vec<Skipped>,
    done: bool,
    _record: PhantomData<T>,
}

impl<T: Record> Reader<T> {
    /// Opens what `path` names (see [`resolve_files`]): Parquet files (by their magic bytes or
    /// a `.parquet` name), directories of shards and Hub datasets
    /// (`hf:ORG/NAME[/CONFIG][:SPLIT][@REVISION]`) by row; any other file whose first
    /// non-blank byte is `[` as a JSON array, else as JSONL.
    pub fn open(path: &Path, options: ReadOptions) -> Result<Self, DataError> {
        let files = resolve_files(path)?;
        let named_itself = matches!(files.as_slice(), [file] if file == path);
        if named_itself && !path.to_str().is_some_and(is_parquet_name) {
            // Opened once and peeked at, so that a pipe (`<(zcat pairs.jsonl.gz)`) reads whole.
            let file = File::open(path).map_err(|e| DataError::io(path, e))?;
            let mut reader = BufReader::new(file);
            let head = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
            if !head.starts_with(b"PAR1") {
                return Self::open_json(reader, path, options);
            }
        }
        Ok(Reader {
            source: Source::Parquet(ParquetRows::new(files, T::FIELDS, T::missing_column)),
            name: path.display().to_string(),
            options,
            position: 0,
            skipped: Vec::new(),
            done: false,
            _record: PhantomData,
        })
    }

    fn open_json(
        mut reader: BufReader<File>,
        path: &Path,
        options: ReadOptions,
    ) -> Result<Self, DataError> {
        let is_array = loop {
            let buf = reader.fill_buf().map_err(|e| DataError::io(path, e))?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => break buf[i] == b'[',
                None if buf.is_empty() => break false,
                None => {
                    let n = buf.len();
                    reader.consume(n);
                }
            }
        };
        let name = path.display().to_string();
        if is_array {
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| DataError::io(path, e))?;
            Self::from_json_array(&bytes, name, options)
        } else {
            Ok(Self::from_jsonl(reader, name, options))
        }
    }

    /// Reads JSONL from any buffered reader; `name` appears in errors.
    pub fn from_jsonl(
        reader: impl BufRead + 'static,
        name: impl Into<String>,
        options: ReadOptions,
    ) -> Self {
        Reader {
            source: Source::Lines(Box::new(reader)),
            name: name.into(),
            options,
            position: 0,
            skipped: Vec::new(),
            done: false,
            _record: PhantomData,
        }
    }

    /// Reads a JSON array held in memory.
    pub fn from_json_array(
        bytes: &[u8],
        name: impl Into<String>,
        options: ReadOptions,
    ) -> Result<Self, DataError> {
        let name = name.into();
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            let message = format!(
                "invalid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            );
            DataError::file(&name, message)
        })?;
        let Value::Array(items) = value else {
            return Err(DataError::file(name, "expected a JSON array of records"));
        };
        Ok(Reader {
            source: Source::Array(items.into_iter()),
            name,
            options,
            position: 0,
            skipped: Vec::new(),
            done: false,
            _record: PhantomData,
        })
    }

    /// Records skipped so far (only with `skip_invalid`).
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    fn error(&self, location: Location, error: FieldError) -> DataError {
        DataError::Record {
            source_name: self.name.clone(),
            location,
            error,
        }
    }

    /// The next raw item: `Ok(None)` at the end, `Err` for an unreadable line.
    fn next_raw(&mut self) -> Option<Result<RawRecord<T>, DataError>> {
        let max = self.options.max_record_bytes;
        match &mut self.source {
            Source::Parquet(rows) => {
                let row = rows.next()?;
                if let Some(name) = rows.source_name() {
                    self.name.clear();
                    self.name.push_str(name);
                }
                Some(row.map(|(location, value)| (location, value.and_then(T::from_json))))
            }
            Source::Array(items) => {
                let value = items.next()?;
                let location = Location::Element(self.position);
                self.position += 1;
                let len = serde_json::to_string(&value).map_or(0, |s| s.len());
                let parsed = if len > max {
                    Err(FieldError::record(format!(
                        "record is {len} bytes, over the limit of {max}"
                    )))
                } else {
                    T::from_json(value)
                };
                Some(Ok((location, parsed)))
            }
            Source::Lines(reader) => loop {
                self.position += 1;
                let location = Location::Line(self.position);
                let mut line = Vec::new();
                let read = reader
                    .by_ref()
                    .take(max as u64 + 1)
                    .read_until(b'\n', &mut line);
                let n = match read {
                    Ok(n) => n,
                    Err(e) => return Some(Err(DataError::io(PathBuf::from(&self.name), e))),
                };
                if n == 0 {
                    return None;
                }
                if line.len() > max && line.last() != Some(&b'\n') {
                    // Drain the rest of the over-long line without keeping it.
                    let mut total = line.len();
                    loop {
                        let buf = match reader.fill_buf() {
                            Ok(b) => b,
                            Err(e) => {
                                return Some(Err(DataError::io(PathBuf::from(&self.name), e)));
                            }
                        };
                        if buf.is_empty() {
                            break;
                        }
                        let (used, end) = match buf.iter().position(|&b| b == b'\n') {
                            Some(i) => (i + 1, true),
                            None => (buf.len(), false),
                        };
                        reader.consume(used);
                        total += used;
                        if end {
                            break;
                        }
                    }
                    let err = FieldError::record(format!(
                        "record is {total} bytes, over the limit of {max}"
                    ));
                    return Some(Ok((location, Err(err))));
                }
                let text = match std::str::from_utf8(&line) {
                    Ok(t) => t,
                    Err(e) => {
                        let err = FieldError::record(format!(
                            "invalid UTF-8 at byte {}",
                            e.valid_up_to()
                        ));
                        return Some(Ok((location, Err(err))));
                    }
                };
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                let parsed = serde_json::from_str::<Value>(text)
                    .map_err(|e| {
                        FieldError::record(format!("invalid JSON at column {}: {e}", e.column()))
                    })
                    .and_then(T::from_json);
                return Some(Ok((location, parsed)));
            },
        }
    }
}

impl<T: Record> Iterator for Reader<T> {
    type Item = Result<T, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.next_raw()? {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok((_, Ok(record))) => return Some(Ok(record)),
                Ok((location, Err(error))) => {
                    if self.options.skip_invalid {
                        self.skipped.push(Skipped {
                            source: self.name.clone(),
                            location,
                            reason: error.to_string(),
                        });
                        continue;
                    }
                    self.done = true;
                    return Some(Err(self.error(location, error)));
                }
            }
        }
    }
}

/// All records of a file, with what was skipped.
#[derive(Debug, Clone)]
pub struct ReadResult<T> {
    /// The valid records, in file order.
    pub records: Vec<T>,
    /// The skipped ones (only with `skip_invalid`).
    pub skipped: Vec<Skipped>,
}

/// Reads every record of `path`.
pub fn read_all<T: Record>(path: &Path, options: ReadOptions) -> Result<ReadResult<T>, DataError> {
    let mut reader = Reader::<T>::open(path, options)?;
    let records = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok(ReadResult {
        records,
        skipped: reader.skipped,
    })
}

/// Writes records as JSONL to a temporary file that replaces `path` on [`Writer::finish`];
/// dropped unfinished, it leaves `path` untouched.
pub struct Writer {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    count: usize,
}

impl Writer {
    /// Starts writing `path`.
    pub fn create(path: &Path) -> Result<Self, DataError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let tmp = bpo_model::fsutil::sibling(path, "tmp");
        // Errors name `path`: the temporary file is an implementation detail.
        let file = File::create(&tmp).map_err(|e| DataError::io(path, e))?;
        Ok(Writer {
            out: Some(BufWriter::new(file)),
            tmp,
            path: path.to_path_buf(),
            count: 0,
        })
    }

    /// Appends one record.
    pub fn write<T: Record>(&mut self, record: &T) -> Result<(), DataError> {
        let out = self.out.as_mut().expect("writer not finished");
        serde_json::to_writer(&mut *out, &record.to_json())
            .map_err(|e| DataError::io(&self.path, e.into()))?;
        out.write_all(b"\n")
            .map_err(|e| DataError::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }

    /// Flushes, syncs and moves the file into place (the directory synced after, so the rename
    /// survives a power loss); returns the number of records written.
    pub fn finish(mut self) -> Result<usize, DataError> {
        let out = self.out.take().expect("writer not finished");
        let placed = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .and_then(|()| std::fs::rename(&self.tmp, &self.path))
            .map_err(|e| DataError::io(&self.path, e));
        if placed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        placed?;
        bpo_model::fsutil::sync_parent(&self.path)?;
        Ok(self.count)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes all `records` to `path` atomically.
pub fn write_all<'a, T: Record + 'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a T>,
) -> Result<usize, DataError> {
    let mut writer = Writer::create(path)?;
    for r in records {
        writer.write(r)?;
    }
    writer.finish()
}
