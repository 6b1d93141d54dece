//! Parquet files read row by row: one file after another, one row group at a time (pages are
//! decoded as rows are taken, so a multi-GB file never sits in memory), only the columns a
//! record type reads. Each row becomes the JSON object a JSONL line would be, so the records'
//! own checks apply unchanged; a row's location is its 0-based index in its file.
//!
//! Columns as `datasets` and pyarrow write them: strings, lists of `{role, content}` structs
//! (TRL's conversational form), structs and maps as objects. A `meta` column may hold
//! objects (structs; members that are null are a key the row lacks) or JSON text (how
//! `bpo data convert` writes it).

use std::cell::Cell;
use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Once;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use serde_json::{Map, Number, Value};

use crate::error::{DataError, FieldError, Location};

/// One row as read: where it was in its file and what it converted to.
pub(crate) type ParquetRow = (Location, Result<Value, FieldError>);

/// Rows of a list of Parquet files, in order.
pub(crate) struct ParquetRows {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<OpenFile>,
    fields: &'static [&'static str],
    required: fn(&[&str]) -> Option<&'static str>,
}

struct OpenFile {
    name: String,
    rows: RowIter<'static>,
    next_row: usize,
}

impl ParquetRows {
    /// Reads `files` in order, projecting each onto the columns in `fields`; a file whose
    /// columns `required` finds one missing from is an error naming the columns it has.
    pub(crate) fn new(
        files: Vec<PathBuf>,
        fields: &'static [&'static str],
        required: fn(&[&str]) -> Option<&'static str>,
    ) -> Self {
        ParquetRows {
            files: files.into_iter(),
            current: None,
            fields,
            required,
        }
    }

    /// The file the last row came from.
    pub(crate) fn source_name(&self) -> Option<&str> {
        self.current.as_ref().map(|f| f.name.as_str())
    }

    fn open(&self, path: PathBuf) -> Result<OpenFile, DataError> {
        let name = path.display().to_string();
        let file_error = |message: String| DataError::file(&name, message);
        let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let reader = SerializedFileReader::new(file).map_err(|e| {
            let lfs = std::fs::read(&path)
                .is_ok_and(|bytes| bytes.starts_with(b"version https://git-lfs"));
            let hint = match lfs {
                true => " (it is a Git LFS pointer: fetch the file with `git lfs pull`)",
                false => "",
            };
            file_error(format!("not a readable Parquet file: {e}{hint}"))
        })?;
        let schema = reader.metadata().file_metadata().schema();
        let columns = schema.get_fields();
        let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
        let listed = || names.join(", ");
        if let Some(missing) = (self.required)(&names) {
            return Err(file_error(format!(
                "no column `{missing}` (its columns: {})",
                listed()
            )));
        }
        let selected: Vec<_> = columns
            .iter()
            .filter(|c| self.fields.contains(&c.name()))
            .cloned()
            .collect();
        if selected.is_empty() {
            return Err(file_error(format!(
                "none of the columns {} (its columns: {})",
                self.fields.join(", "),
                listed()
            )));
        }
        let projection = Type::group_type_builder(schema.name())
            .with_fields(selected)
            .build()
            .map_err(|e| file_error(e.to_string()))?;
        let rows = RowIter::from_file_into(Box::new(reader))
            .project(Some(projection))
            .map_err(|e| file_error(e.to_string()))?;
        Ok(OpenFile {
            name,
            rows,
            next_row: 0,
        })
    }
}

impl Iterator for ParquetRows {
    type Item = Result<ParquetRow, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Some(file) = self.current.as_mut() else {
                let path = self.files.next()?;
                match self.open(path) {
                    Ok(file) => self.current = Some(file),
                    Err(e) => return Some(Err(e)),
                }
                continue;
            };
            let location = Location::Row(file.next_row);
            // The record reader panics on some malformed files instead of returning an error:
            // a panic is this file's error, never a crash (nor a panic message).
            let row = quietly(|| file.rows.next());
            let row = match row {
                Ok(None) => {
                    self.current = None;
                    continue;
                }
                Ok(Some(Ok(row))) => row,
                Ok(Some(Err(e))) => return Some(Err(decode_error(file, location, &e))),
                Err(_) => return Some(Err(decode_error(file, location, &"malformed file"))),
            };
            file.next_row += 1;
            return Some(Ok((location, row_to_json(row))));
        }
    }
}

thread_local! {
    /// Set while [`quietly`] runs: the panic hook stays silent on this thread.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, a panic in it returned as `Err` without the panic hook printing it.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}

fn decode_error(file: &OpenFile, location: Location, error: &dyn std::fmt::Display) -> DataError {
    let error = error.to_string();
    let hint = match error.contains("Disabled feature at compile time") {
        true => " (bpo reads Parquet that is uncompressed or compressed with snappy or zstd)",
        false => "",
    };
    DataError::file(
        &file.name,
        format!("{location}: cannot decode: {error}{hint}"),
    )
}

/// The row as the JSON object of a JSONL line; a value JSON cannot hold is an error naming its
/// column.
fn row_to_json(row: Row) -> Result<Value, FieldError> {
    let mut object = Map::new();
    for (name, field) in row.into_columns() {
        let value = field_to_json(&field).map_err(|m| FieldError::field(&name, m))?;
        let value = match value {
            Value::String(text) if name == "meta" => serde_json::from_str(&text)
                .map_err(|e| FieldError::field("meta", format!("is text that is not JSON: {e}")))?,
            // A struct column holds every key of every row: a key this row lacks is null.
            Value::Object(mut members) if name == "meta" => {
                members.retain(|_, v| !v.is_null());
                Value::Object(members)
            }
            value => value,
        };
        object.insert(name, value);
    }
    Ok(Value::Object(object))
}

fn field_to_json(field: &Field) -> Result<Value, String> {
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(v) => Value::from(*v),
        Field::Short(v) => Value::from(*v),
        Field::Int(v) => Value::from(*v),
        Field::Long(v) => Value::from(*v),
        Field::UByte(v) => Value::from(*v),
        Field::UShort(v) => Value::from(*v),
        Field::UInt(v) => Value::from(*v),
        Field::ULong(v) => Value::from(*v),
        Field::Float16(v) => float(f64::from(*v)),
        Field::Float(v) => float(f64::from(*v)),
        Field::Double(v) => float(*v),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(bytes) => match std::str::from_utf8(bytes.data()) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => return Err("holds binary data that is not UTF-8 text".into()),
        },
        Field::Decimal(_)
        | Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => Value::String(field.to_string()),
        Field::Group(row) => {
            let mut object = Map::new();
            for (name, field) in row.get_column_iter() {
                object.insert(name.clone(), field_to_json(field)?);
            }
            Value::Object(object)
        }
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .map(field_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Field::MapInternal(map) => {
            let mut object = Map::new();
            for (key, value) in map.entries() {
                let key = match field_to_json(key)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                object.insert(key, field_to_json(value)?);
            }
            Value::Object(object)
        }
    })
}

/// A float as JSON; NaN and infinities (which JSON cannot hold) as null.
fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}
