//! JSON Lines reader: one record per line, parsed in a single pass with serde into typed
//! cells, checked, and appended to Arrow builders.
//!
//! Good records take the fast path (borrowed strings, no intermediate `Value`); a bad record
//! is attributed to its field and reason on the way, so diagnostics cost nothing extra.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead};
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, ListArray, ListBuilder,
    NullBufferBuilder, StringBuilder, StringViewArray, StructArray, TimestampMicrosecondBuilder,
    UInt16Builder, UInt32Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::Field;
use arrow::record_batch::RecordBatch;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::diag::BadReason;
use crate::schema::{Kind, Presence, TableSpec, arrow_type, message_fields};
use crate::values::{self, Problem};

// ---------------------------------------------------------------------------------------
// Lines

/// What [`LineReader::next`] found.
pub(crate) enum Next {
    /// A line, now in [`LineReader::line`].
    Line,
    /// A line over the limit, of this many bytes, handed to the overflow callback in chunks.
    TooLong(u64),
    Eof,
}

/// Splits a byte stream into lines without ever holding more than `limit` bytes of one.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    limit: usize,
    line_no: u64,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            limit,
            line_no: 0,
        }
    }

    /// 1-based number of the line last returned.
    pub(crate) fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The line last returned, without its `\n` or `\r\n`.
    pub(crate) fn line(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn next(
        &mut self,
        overflow: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<Next> {
        self.buf.clear();
        let mut overflowed: Option<u64> = None;
        let mut seen_any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !seen_any {
                    return Ok(Next::Eof);
                }
                break;
            }
            seen_any = true;
            let (take, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            let chunk = &avail[..take];
            match overflowed.as_mut() {
                Some(total) => {
                    overflow(chunk)?;
                    *total += chunk.len() as u64;
                }
                None if self.buf.len() + chunk.len() > self.limit => {
                    overflow(&self.buf)?;
                    overflow(chunk)?;
                    overflowed = Some((self.buf.len() + chunk.len()) as u64);
                    self.buf.clear();
                }
                None => self.buf.extend_from_slice(chunk),
            }
            self.inner.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        self.line_no += 1;
        if let Some(total) = overflowed {
            return Ok(Next::TooLong(total));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Next::Line)
    }
}

// ---------------------------------------------------------------------------------------
// Parsing one record

/// A field's value as found in the JSON, before checks.
#[derive(Debug)]
enum Cell<'de> {
    Absent,
    Null,
    Str(Cow<'de, str>),
    UInt(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Messages(Vec<Msg<'de>>),
    List(Vec<Cow<'de, str>>),
}

#[derive(Debug)]
struct Msg<'de> {
    role: Option<Cow<'de, str>>,
    content: Option<Cow<'de, str>>,
}

/// A checked value, ready to append.
enum Ready<'de> {
    Null,
    Str(Cow<'de, str>),
    UInt(u64),
    F32(f32),
    Bool(bool),
    Ts(i64),
    Messages(Vec<(Cow<'de, str>, Cow<'de, str>)>),
    List(Vec<Cow<'de, str>>),
}

struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).and_then(|c| match c {
            Cell::Str(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("object key is not a string")),
        })
    }
}

/// Accepts a string or null.
struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cell::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
}

/// Accepts a number or null.
struct NumVisitor;

impl<'de> Visitor<'de> for NumVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cell::UInt(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            Cell::UInt(v as u64)
        } else {
            Cell::Int(v)
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cell::Float(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
}

/// Accepts a boolean or null.
struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("true or false")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cell::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
}

/// Accepts an array of strings or null.
struct ListVisitor;

struct StrOnly<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for StrOnly<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(StrVisitor)? {
            Cell::Str(s) => Ok(StrOnly(s)),
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other("null"),
                &"a string",
            )),
        }
    }
}

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(StrOnly(s)) = seq.next_element()? {
            out.push(s);
        }
        Ok(Cell::List(out))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
}

/// Accepts an array of `{role, content}` objects or null.
struct MessagesVisitor;

impl<'de> de::Deserialize<'de> for Msg<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Msg<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message object {\"role\", \"content\"}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Msg<'de>, A::Error> {
                let mut msg = Msg {
                    role: None,
                    content: None,
                };
                while let Some(Key(k)) = map.next_key()? {
                    let slot = match k.as_ref() {
                        "role" => &mut msg.role,
                        "content" => &mut msg.content,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if let Cell::Str(s) = map.next_value_seed(Any(StrVisitor))? {
                        *slot = Some(s);
                    }
                }
                Ok(msg)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Visitor<'de> for MessagesVisitor {
    type Value = Cell<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(m) = seq.next_element::<Msg<'de>>()? {
            out.push(m);
        }
        Ok(Cell::Messages(out))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }
}

/// Runs a visitor through `deserialize_any`.
struct Any<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for Any<V> {
    type Value = V::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_any(self.0)
    }
}

struct ValueSeed(Kind);

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Cell<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cell<'de>, D::Error> {
        match self.0 {
            Kind::Text | Kind::Ip | Kind::Country | Kind::OneOf(_) | Kind::Timestamp => {
                d.deserialize_any(StrVisitor)
            }
            Kind::U32 | Kind::U16 | Kind::F32 => d.deserialize_any(NumVisitor),
            Kind::Bool => d.deserialize_any(BoolVisitor),
            Kind::Messages => d.deserialize_any(MessagesVisitor),
            Kind::TextList => d.deserialize_any(ListVisitor),
        }
    }
}

/// Field being parsed, and a problem found by our own checks during parsing.
#[derive(Default)]
struct ParseState {
    current: Option<usize>,
    problem: Option<Problem>,
}

struct RowSeed<'a, 'de> {
    spec: &'static TableSpec,
    cells: &'a mut Vec<Cell<'de>>,
    state: &'a mut ParseState,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let columns = self.spec.columns;
        let mut hint = 0;
        while let Some(Key(k)) = map.next_key()? {
            let idx = if columns.get(hint).is_some_and(|c| c.name == k) {
                Some(hint)
            } else {
                self.spec.column_index(&k)
            };
            let Some(i) = idx else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if !matches!(self.cells[i], Cell::Absent) {
                self.state.problem = Some(Problem::new(
                    columns[i].name,
                    BadReason::InvalidJson,
                    "field appears twice in the object",
                ));
                return Err(de::Error::custom("duplicate field"));
            }
            self.state.current = Some(i);
            self.cells[i] = map.next_value_seed(ValueSeed(columns[i].kind))?;
            self.state.current = None;
            hint = i + 1;
        }
        Ok(())
    }
}

/// Parses one line into cells, attributing any failure to a field and reason.
fn parse_line<'de>(spec: &'static TableSpec, line: &'de str) -> Result<Vec<Cell<'de>>, Problem> {
    let mut cells: Vec<Cell<'de>> = (0..spec.columns.len()).map(|_| Cell::Absent).collect();
    let mut state = ParseState::default();
    let mut de = serde_json::Deserializer::from_str(line);
    let result = RowSeed {
        spec,
        cells: &mut cells,
        state: &mut state,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match result {
        Ok(()) => Ok(cells),
        Err(e) => Err(state.problem.unwrap_or_else(|| {
            let msg = strip_position(&e.to_string());
            match (e.classify(), state.current) {
                (serde_json::error::Category::Data, Some(i)) => {
                    Problem::new(spec.columns[i].name, BadReason::WrongType, msg)
                }
                (serde_json::error::Category::Data, None) => {
                    Problem::new("", BadReason::InvalidJson, "the line is not a JSON object")
                }
                _ => Problem::new("", BadReason::InvalidJson, msg),
            }
        })),
    }
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Checks cells against the contract and converts them to storable values.
fn check<'de>(spec: &'static TableSpec, cells: Vec<Cell<'de>>) -> Result<Vec<Ready<'de>>, Problem> {
    let mut out = Vec::with_capacity(cells.len());
    for (col, cell) in spec.columns.iter().zip(cells) {
        let name = col.name;
        let missing = || {
            Problem::new(
                name,
                BadReason::MissingField,
                format!("required field `{name}` is missing, null or empty"),
            )
        };
        let cell = match cell {
            Cell::Str(s) if s.is_empty() => Cell::Null,
            other => other,
        };
        let ready = match (cell, col.kind) {
            (Cell::Absent | Cell::Null, _) => match col.presence {
                Presence::Required => return Err(missing()),
                Presence::Optional => Ready::Null,
                Presence::Default(v) => Ready::UInt(v),
            },
            (Cell::Str(s), Kind::Text) => Ready::Str(s),
            (Cell::Str(s), Kind::Ip) => {
                Ready::Str(Cow::Owned(values::canonical_ip(name, &s)?.into_owned()))
            }
            (Cell::Str(s), Kind::Country) => {
                Ready::Str(Cow::Owned(values::country(name, &s)?.into_owned()))
            }
            (Cell::Str(s), Kind::OneOf(allowed)) => {
                Ready::Str(Cow::Borrowed(values::one_of(name, &s, allowed)?))
            }
            (Cell::Str(s), Kind::Timestamp) => Ready::Ts(values::parse_timestamp(name, &s)?),
            (Cell::UInt(v), Kind::U32) => Ready::UInt(values::unsigned(name, v, u32::MAX as u64)?),
            (Cell::UInt(v), Kind::U16) => Ready::UInt(values::unsigned(name, v, u16::MAX as u64)?),
            (Cell::Int(v), Kind::U32 | Kind::U16) => {
                return Err(Problem::new(
                    name,
                    BadReason::BadValue,
                    format!("{v} is negative"),
                ));
            }
            (Cell::Float(f), Kind::U32 | Kind::U16) => {
                if f.fract() != 0.0 || f < 0.0 || !f.is_finite() {
                    return Err(Problem::new(
                        name,
                        BadReason::WrongType,
                        format!("{f} is not a non-negative integer"),
                    ));
                }
                let max = if col.kind == Kind::U32 {
                    u32::MAX as u64
                } else {
                    u16::MAX as u64
                };
                Ready::UInt(values::unsigned(name, f as u64, max)?)
            }
            (Cell::UInt(v), Kind::F32) => Ready::F32(v as f32),
            (Cell::Int(v), Kind::F32) => Ready::F32(v as f32),
            (Cell::Float(f), Kind::F32) => {
                if !f.is_finite() {
                    return Err(Problem::new(
                        name,
                        BadReason::BadValue,
                        "not a finite number",
                    ));
                }
                Ready::F32(f as f32)
            }
            (Cell::Bool(b), Kind::Bool) => Ready::Bool(b),
            (Cell::Messages(msgs), Kind::Messages) => {
                let mut out = Vec::with_capacity(msgs.len());
                for (i, m) in msgs.into_iter().enumerate() {
                    let field = || format!("{name}[{i}].role");
                    let role = match m.role {
                        Some(r) => values::one_of(&field(), &r, crate::schema::ROLES)?,
                        None => {
                            return Err(Problem::new(
                                field(),
                                BadReason::MissingField,
                                "message has no role",
                            ));
                        }
                    };
                    out.push((Cow::Borrowed(role), m.content.unwrap_or_default()));
                }
                Ready::Messages(out)
            }
            (Cell::List(items), Kind::TextList) => Ready::List(items),
            (other, kind) => {
                return Err(Problem::new(
                    name,
                    BadReason::WrongType,
                    format!(
                        "expected {}, found {}",
                        describe_kind(kind),
                        describe_cell(&other)
                    ),
                ));
            }
        };
        out.push(ready);
    }
    Ok(out)
}

fn describe_kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Text | Kind::Ip | Kind::Country | Kind::OneOf(_) | Kind::Timestamp => "a string",
        Kind::U32 | Kind::U16 => "a non-negative integer",
        Kind::F32 => "a number",
        Kind::Bool => "true or false",
        Kind::Messages => "an array of messages",
        Kind::TextList => "an array of strings",
    }
}

fn describe_cell(cell: &Cell<'_>) -> &'static str {
    match cell {
        Cell::Absent | Cell::Null => "null",
        Cell::Str(_) => "a string",
        Cell::UInt(_) | Cell::Int(_) | Cell::Float(_) => "a number",
        Cell::Bool(_) => "a boolean",
        Cell::Messages(_) | Cell::List(_) => "an array",
    }
}

// ---------------------------------------------------------------------------------------
// Building batches

enum Builder {
    Str(StringBuilder),
    U32(UInt32Builder),
    U16(UInt16Builder),
    F32(Float32Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
    Messages(MessagesBuilder),
    List(ListBuilder<StringBuilder>),
}

#[derive(Default)]
struct MessagesBuilder {
    offsets: Vec<i32>,
    roles: StringBuilder,
    contents: StringBuilder,
    validity: Option<NullBufferBuilder>,
    len: usize,
}

impl MessagesBuilder {
    fn append(&mut self, msgs: Option<&[(Cow<'_, str>, Cow<'_, str>)]>) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let validity = self
            .validity
            .get_or_insert_with(|| NullBufferBuilder::new(1024));
        if let Some(msgs) = msgs {
            for (role, content) in msgs {
                self.roles.append_value(role);
                self.contents.append_value(content);
            }
            validity.append_non_null();
        } else {
            validity.append_null();
        }
        self.offsets.push(self.roles.len() as i32);
        self.len += 1;
    }

    fn finish(&mut self) -> ArrayRef {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let structs = StructArray::new(
            message_fields(),
            vec![
                Arc::new(self.roles.finish()) as ArrayRef,
                // Views into the builder's buffer: no copy.
                Arc::new(StringViewArray::from(&self.contents.finish())),
            ],
            None,
        );
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let nulls = self.validity.take().and_then(|mut v| v.finish());
        self.len = 0;
        let field = Arc::new(Field::new(
            "item",
            arrow::datatypes::DataType::Struct(message_fields()),
            true,
        ));
        Arc::new(ListArray::new(field, offsets, Arc::new(structs), nulls))
    }
}

/// Accumulates checked rows of one table into Arrow arrays.
pub(crate) struct RowBuilder {
    spec: &'static TableSpec,
    builders: Vec<Builder>,
    rows: usize,
}

impl RowBuilder {
    pub(crate) fn new(spec: &'static TableSpec) -> Self {
        let builders = spec
            .columns
            .iter()
            .map(|c| match c.kind {
                Kind::Text | Kind::Ip | Kind::Country | Kind::OneOf(_) => {
                    Builder::Str(StringBuilder::new())
                }
                Kind::U32 => Builder::U32(UInt32Builder::new()),
                Kind::U16 => Builder::U16(UInt16Builder::new()),
                Kind::F32 => Builder::F32(Float32Builder::new()),
                Kind::Bool => Builder::Bool(BooleanBuilder::new()),
                Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new()),
                Kind::Messages => Builder::Messages(MessagesBuilder::default()),
                Kind::TextList => Builder::List(ListBuilder::new(StringBuilder::new())),
            })
            .collect();
        RowBuilder {
            spec,
            builders,
            rows: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Parses and checks one line; appends it if it is good.
    pub(crate) fn push_line(&mut self, line: &str) -> Result<(), Problem> {
        let cells = parse_line(self.spec, line)?;
        let ready = check(self.spec, cells)?;
        for (b, v) in self.builders.iter_mut().zip(ready) {
            match (b, v) {
                (Builder::Str(b), Ready::Str(s)) => b.append_value(s),
                (Builder::Str(b), Ready::Null) => b.append_null(),
                (Builder::U32(b), Ready::UInt(v)) => b.append_value(v as u32),
                (Builder::U32(b), Ready::Null) => b.append_null(),
                (Builder::U16(b), Ready::UInt(v)) => b.append_value(v as u16),
                (Builder::U16(b), Ready::Null) => b.append_null(),
                (Builder::F32(b), Ready::F32(v)) => b.append_value(v),
                (Builder::F32(b), Ready::Null) => b.append_null(),
                (Builder::Bool(b), Ready::Bool(v)) => b.append_value(v),
                (Builder::Bool(b), Ready::Null) => b.append_null(),
                (Builder::Ts(b), Ready::Ts(v)) => b.append_value(v),
                (Builder::Ts(b), Ready::Null) => b.append_null(),
                (Builder::Messages(b), Ready::Messages(m)) => b.append(Some(&m)),
                (Builder::Messages(b), Ready::Null) => b.append(None),
                (Builder::List(b), Ready::List(items)) => {
                    for s in items {
                        b.values().append_value(s);
                    }
                    b.append(true);
                }
                (Builder::List(b), Ready::Null) => b.append(false),
                _ => unreachable!("checked values match their column kinds"),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Turns the rows so far into a batch of the table's schema.
    pub(crate) fn finish(&mut self) -> RecordBatch {
        let schema = self.spec.table.schema();
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Str(b) => Arc::new(b.finish()),
                    Builder::U32(b) => Arc::new(b.finish()),
                    Builder::U16(b) => Arc::new(b.finish()),
                    Builder::F32(b) => Arc::new(b.finish()),
                    Builder::Bool(b) => Arc::new(b.finish()),
                    Builder::Ts(b) => Arc::new(b.finish().with_timezone("UTC")),
                    Builder::Messages(b) => b.finish(),
                    Builder::List(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        debug_assert!(
            columns
                .iter()
                .zip(self.spec.columns)
                .all(|(a, c)| a.data_type() == &arrow_type(c.kind))
        );
        RecordBatch::try_new(schema, columns).expect("builders follow the table schema")
    }
}

/// Parses single JSON records of one table with exactly the checks of the JSON Lines reader,
/// for services that receive records over the network instead of reading files.
pub struct RecordParser(RowBuilder);

impl RecordParser {
    pub fn new(table: crate::Table) -> Self {
        RecordParser(RowBuilder::new(table.spec()))
    }

    /// Parses and checks one record (one JSON object); keeps it if it is good.
    pub fn push(&mut self, record: &str) -> Result<(), Problem> {
        self.0.push_line(record)
    }

    /// Good records kept since the last [`RecordParser::finish`].
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The good records so far as one batch of the table's schema; starts afresh.
    pub fn finish(&mut self) -> RecordBatch {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;

    fn problem(line: &str) -> Problem {
        let mut b = RowBuilder::new(Table::Exchanges.spec());
        b.push_line(line).unwrap_err()
    }

    const GOOD: &str = r#"{"ts":"2026-02-03T14:05:09.120Z","request_id":"r1","account_id":"a1","model":"m","client_ip":"2001:db8::1","messages":[{"role":"user","content":"hi"}],"input_tokens":3,"output_tokens":5}"#;

    #[test]
    fn a_good_line_is_appended_with_defaults() {
        let mut b = RowBuilder::new(Table::Exchanges.spec());
        b.push_line(GOOD).unwrap();
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 1);
        let status = batch
            .column_by_name("status")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::UInt16Array>()
            .unwrap();
        assert_eq!(status.value(0), 200);
    }

    #[test]
    fn problems_name_field_and_reason() {
        let p = problem(&GOOD.replace(r#""input_tokens":3"#, r#""input_tokens":"3""#));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("input_tokens", BadReason::WrongType)
        );
        let p = problem(&GOOD.replace(r#""input_tokens":3"#, r#""input_tokens":-3"#));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("input_tokens", BadReason::BadValue)
        );
        let p = problem(&GOOD.replace(r#""account_id":"a1","#, ""));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("account_id", BadReason::MissingField)
        );
        let p = problem(&GOOD.replace("Z\"", "\""));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("ts", BadReason::BadTimestamp)
        );
        let p = problem(&GOOD.replace("2001:db8::1", "10.0.0.256"));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("client_ip", BadReason::BadAddress)
        );
        let p = problem(&GOOD[..GOOD.len() - 10]);
        assert_eq!(p.reason, BadReason::InvalidJson);
        let p = problem("[1,2,3]");
        assert_eq!(p.reason, BadReason::InvalidJson);
        let p = problem(&GOOD.replace(r#""role":"user""#, r#""role":"robot""#));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("messages[0].role", BadReason::BadValue)
        );
        let p = problem(&GOOD.replace(r#""model":"m""#, r#""model":"m","model":"n""#));
        assert_eq!(
            (p.field.as_str(), p.reason),
            ("model", BadReason::InvalidJson)
        );
    }

    #[test]
    fn lines_over_the_limit_are_streamed_not_held() {
        let data = format!("short\n{}\nlast", "x".repeat(100));
        let mut r = LineReader::new(io::BufReader::with_capacity(16, data.as_bytes()), 50);
        let mut spilled = Vec::new();
        let mut sink = |c: &[u8]| {
            spilled.extend_from_slice(c);
            Ok(())
        };
        assert!(matches!(r.next(&mut sink).unwrap(), Next::Line));
        assert_eq!(r.line(), b"short");
        assert!(matches!(r.next(&mut sink).unwrap(), Next::TooLong(100)));
        assert!(matches!(r.next(&mut sink).unwrap(), Next::Line));
        assert_eq!(r.line(), b"last");
        assert_eq!(r.line_no(), 3);
        assert!(matches!(r.next(&mut sink).unwrap(), Next::Eof));
        assert_eq!(spilled.len(), 100);
    }
}
