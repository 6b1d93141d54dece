//! Records written as Parquet the way `datasets` reads them back: one column per field of the
//! record type, text as UTF-8 strings, chat messages as lists of `{role, content}` structs
//! (TRL's conversational form), `meta` as JSON text; snappy-compressed row groups of at most
//! [`ROW_GROUP_ROWS`] records. Each column's form (text or messages) is taken from its first
//! non-null value; a later record with the other form is an error naming it. Like the JSONL
//! writer, the file is written beside `path` and moved into place by [`ParquetWriter::finish`].

use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ConvertedType, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{Type, TypePtr};
use serde_json::Value;

use crate::error::DataError;
use crate::record::Record;

/// Records per row group.
pub const ROW_GROUP_ROWS: usize = 8192;

/// How one column is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A string (`meta` as JSON text).
    Text,
    /// A list of `{role, content}` structs.
    Messages,
}

/// The leaf values of one column within a row group, with Parquet's definition and repetition
/// levels (see the Dremel encoding).
#[derive(Default)]
struct Leaf {
    values: Vec<ByteArray>,
    definition: Vec<i16>,
    repetition: Vec<i16>,
}

impl Leaf {
    fn push(&mut self, value: Option<&str>, definition: i16, repetition: i16) {
        if let Some(v) = value {
            self.values.push(ByteArray::from(v));
        }
        self.definition.push(definition);
        self.repetition.push(repetition);
    }
}

/// Writes records of type `T` to a Parquet file.
pub struct ParquetWriter<T> {
    path: PathBuf,
    tmp: PathBuf,
    rows: Vec<Value>,
    writer: Option<SerializedFileWriter<File>>,
    forms: Vec<Form>,
    count: usize,
    _record: PhantomData<T>,
}

impl<T: Record> ParquetWriter<T> {
    /// Starts writing `path`.
    pub fn create(path: &Path) -> Result<Self, DataError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        Ok(ParquetWriter {
            path: path.to_path_buf(),
            tmp: bpo_model::fsutil::sibling(path, "tmp"),
            rows: Vec::new(),
            writer: None,
            forms: Vec::new(),
            count: 0,
            _record: PhantomData,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &T) -> Result<(), DataError> {
        self.rows.push(record.to_json());
        self.count += 1;
        if self.rows.len() >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn error(&self, message: impl Into<String>) -> DataError {
        DataError::file(self.path.display(), message)
    }

    fn parquet_error(&self, e: parquet::errors::ParquetError) -> DataError {
        self.error(format!("cannot write Parquet: {e}"))
    }

    /// The form of each column, from the first buffered record with a value in it.
    fn choose_forms(&self) -> Vec<Form> {
        T::FIELDS
            .iter()
            .map(|field| {
                let first = self.rows.iter().find_map(|r| r.get(*field)?.as_array());
                if *field != "meta" && first.is_some() {
                    Form::Messages
                } else {
                    Form::Text
                }
            })
            .collect()
    }

    fn schema(&self) -> Result<TypePtr, parquet::errors::ParquetError> {
        let string = |name: &str, repetition: Repetition| {
            Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                .with_repetition(repetition)
                .with_logical_type(Some(LogicalType::String))
                .build()
                .map(Arc::new)
        };
        let mut columns = Vec::new();
        for (field, form) in T::FIELDS.iter().zip(&self.forms) {
            columns.push(match form {
                Form::Text => string(field, Repetition::OPTIONAL)?,
                Form::Messages => {
                    let element = Type::group_type_builder("element")
                        .with_repetition(Repetition::REQUIRED)
                        .with_fields(vec![
                            string("role", Repetition::REQUIRED)?,
                            string("content", Repetition::REQUIRED)?,
                        ])
                        .build()?;
                    let list = Type::group_type_builder("list")
                        .with_repetition(Repetition::REPEATED)
                        .with_fields(vec![Arc::new(element)])
                        .build()?;
                    Arc::new(
                        Type::group_type_builder(field)
                            .with_repetition(Repetition::OPTIONAL)
                            .with_logical_type(Some(LogicalType::List))
                            .with_converted_type(ConvertedType::LIST)
                            .with_fields(vec![Arc::new(list)])
                            .build()?,
                    )
                }
            });
        }
        Ok(Arc::new(
            Type::group_type_builder("schema")
                .with_fields(columns)
                .build()?,
        ))
    }

    /// The leaves of every column for the buffered rows, in schema order.
    fn leaves(&self) -> Result<Vec<Leaf>, DataError> {
        let mut leaves = Vec::new();
        for (field, form) in T::FIELDS.iter().zip(&self.forms) {
            let first_row = self.count - self.rows.len();
            let mismatch = |i: usize, found: &str| {
                self.error(format!(
                    "output record {} (0-based): field `{field}` holds {found}, but earlier \
                     records wrote the column as {} (a Parquet column has one form)",
                    first_row + i,
                    match form {
                        Form::Text => "text",
                        Form::Messages => "messages",
                    }
                ))
            };
            match form {
                Form::Text => {
                    let mut leaf = Leaf::default();
                    for (i, row) in self.rows.iter().enumerate() {
                        match row.get(*field) {
                            None | Some(Value::Null) => leaf.push(None, 0, 0),
                            Some(Value::String(s)) => leaf.push(Some(s), 1, 0),
                            Some(other) if *field == "meta" => {
                                leaf.push(Some(&other.to_string()), 1, 0)
                            }
                            Some(_) => return Err(mismatch(i, "messages")),
                        }
                    }
                    leaves.push(leaf);
                }
                Form::Messages => {
                    let (mut roles, mut contents) = (Leaf::default(), Leaf::default());
                    for (i, row) in self.rows.iter().enumerate() {
                        let messages = match row.get(*field) {
                            None | Some(Value::Null) => {
                                roles.push(None, 0, 0);
                                contents.push(None, 0, 0);
                                continue;
                            }
                            Some(Value::Array(messages)) => messages,
                            Some(_) => return Err(mismatch(i, "text")),
                        };
                        if messages.is_empty() {
                            roles.push(None, 1, 0);
                            contents.push(None, 1, 0);
                        }
                        for (m, message) in messages.iter().enumerate() {
                            let extra = message.as_object().and_then(|fields| {
                                fields
                                    .keys()
                                    .find(|k| !matches!(k.as_str(), "role" | "content"))
                            });
                            if let Some(key) = extra {
                                return Err(self.error(format!(
                                    "output record {} (0-based): field `{field}[{m}]` has `{key}`; \
                                     bpo writes Parquet messages as {{role, content}} only \
                                     (write JSONL to keep it)",
                                    first_row + i
                                )));
                            }
                            let repetition = i16::from(m > 0);
                            let text = |key: &str| message.get(key).and_then(Value::as_str);
                            roles.push(Some(text("role").unwrap_or_default()), 2, repetition);
                            contents.push(Some(text("content").unwrap_or_default()), 2, repetition);
                        }
                    }
                    leaves.push(roles);
                    leaves.push(contents);
                }
            }
        }
        Ok(leaves)
    }

    /// Writes the buffered records as one row group.
    fn flush(&mut self) -> Result<(), DataError> {
        if self.writer.is_none() {
            self.forms = self.choose_forms();
            let schema = self.schema().map_err(|e| self.parquet_error(e))?;
            let properties = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_created_by(format!("bpo {}", env!("CARGO_PKG_VERSION")))
                .build();
            // Errors name `path`: the temporary file is an implementation detail.
            let file = File::create(&self.tmp).map_err(|e| DataError::io(&self.path, e))?;
            let writer =
                SerializedFileWriter::new(file, schema, Arc::new(properties)).map_err(|e| {
                    let _ = std::fs::remove_file(&self.tmp);
                    self.parquet_error(e)
                })?;
            self.writer = Some(writer);
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        let leaves = self.leaves()?;
        self.rows.clear();
        let writer = self.writer.as_mut().expect("writer opened above");
        let written = (|| {
            let mut group = writer.next_row_group()?;
            let mut leaves = leaves.iter();
            while let Some(mut column) = group.next_column()? {
                let leaf = leaves.next().expect("one leaf per column");
                column.typed::<ByteArrayType>().write_batch(
                    &leaf.values,
                    Some(&leaf.definition),
                    Some(&leaf.repetition),
                )?;
                column.close()?;
            }
            group.close().map(|_| ())
        })();
        written.map_err(|e| self.parquet_error(e))
    }

    /// Writes what is buffered, syncs and moves the file into place; returns the number of
    /// records written.
    pub fn finish(mut self) -> Result<usize, DataError> {
        self.flush()?;
        let writer = self.writer.take().expect("flush opens the writer");
        let placed = writer
            .into_inner()
            .map_err(|e| self.parquet_error(e))
            .and_then(|file| file.sync_all().map_err(|e| DataError::io(&self.path, e)))
            .and_then(|()| {
                std::fs::rename(&self.tmp, &self.path).map_err(|e| DataError::io(&self.path, e))
            });
        if placed.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        placed?;
        bpo_model::fsutil::sync_parent(&self.path)?;
        Ok(self.count)
    }
}

impl<T> Drop for ParquetWriter<T> {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
