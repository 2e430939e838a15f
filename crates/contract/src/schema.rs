//! The four tables of the data contract and their fixed Arrow schemas.
//!
//! Each table is described once, as a list of [`ColumnSpec`]s; the Arrow schema, the JSON
//! Lines parser and the Parquet reader are all driven by that description.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, ListArray, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

/// One table of the data contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Exchanges,
    Accounts,
    ModelReleases,
    Labels,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Exchanges,
        Table::Accounts,
        Table::ModelReleases,
        Table::Labels,
    ];

    /// The SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Exchanges => "exchanges",
            Table::Accounts => "accounts",
            Table::ModelReleases => "model_releases",
            Table::Labels => "labels",
        }
    }

    pub fn spec(self) -> &'static TableSpec {
        match self {
            Table::Exchanges => &EXCHANGES,
            Table::Accounts => &ACCOUNTS,
            Table::ModelReleases => &MODEL_RELEASES,
            Table::Labels => &LABELS,
        }
    }

    /// The one Arrow schema every reader of this table produces.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 4]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| Table::ALL.map(|t| Arc::new(t.spec().arrow_schema())));
        all[self as usize].clone()
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a column holds and how its values are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text. An empty optional value is stored as null.
    Text,
    /// An IPv4 or IPv6 address, stored in canonical text form (IPv4-mapped IPv6 becomes IPv4).
    Ip,
    /// ISO 3166-1 alpha-2 code, stored upper-case.
    Country,
    /// One of a fixed set of lower-case words.
    OneOf(&'static [&'static str]),
    U32,
    U16,
    F32,
    Bool,
    /// RFC 3339 with an offset in JSON Lines; a timestamp in Parquet. Stored as UTC microseconds.
    Timestamp,
    /// `[{"role": ..., "content": ...}]`.
    Messages,
    /// `["name", ...]`.
    TextList,
}

/// Whether a column must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
    /// Absent or null means this value (only `status`: 200).
    Default(u64),
}

#[derive(Clone, Copy, Debug)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub presence: Presence,
}

/// A table of the contract: its columns, in schema order, and its de-duplication key.
#[derive(Debug)]
pub struct TableSpec {
    pub table: Table,
    pub columns: &'static [ColumnSpec],
    /// Index of the column whose repeats are duplicates, not new records.
    pub key: usize,
}

/// Message roles accepted in `messages[].role`: the contract's three, plus the `system` and
/// `developer` roles that OpenAI-style exports put in the message list.
pub const ROLES: &[&str] = &["user", "assistant", "tool", "system", "developer"];

/// `accounts.verification` values.
pub const VERIFICATIONS: &[&str] = &[
    "none",
    "email",
    "phone",
    "card",
    "id",
    "edu",
    "startup",
    "research",
    "enterprise",
];

const fn col(name: &'static str, kind: Kind, presence: Presence) -> ColumnSpec {
    ColumnSpec {
        name,
        kind,
        presence,
    }
}

use Kind::*;
use Presence::*;

static EXCHANGES: TableSpec = TableSpec {
    table: Table::Exchanges,
    key: 1,
    columns: &[
        col("ts", Timestamp, Required),
        col("request_id", Text, Required),
        col("account_id", Text, Required),
        col("api_key_id", Text, Optional),
        col("model", Text, Required),
        col("client_ip", Ip, Required),
        col("asn", U32, Optional),
        col("country", Country, Optional),
        col("user_agent", Text, Optional),
        col("tls_ja4", Text, Optional),
        col("system", Text, Optional),
        col("messages", Messages, Required),
        col("tools", TextList, Optional),
        col("max_tokens", U32, Optional),
        col("temperature", F32, Optional),
        col("stream", Bool, Optional),
        col("input_tokens", U32, Required),
        col("output_tokens", U32, Required),
        col("reasoning_tokens", U32, Optional),
        col("response", Text, Optional),
        col("status", U16, Default(200)),
        col("conversation_id", Text, Optional),
    ],
};

static ACCOUNTS: TableSpec = TableSpec {
    table: Table::Accounts,
    key: 0,
    columns: &[
        col("account_id", Text, Required),
        col("created_at", Timestamp, Required),
        col("email_domain", Text, Optional),
        col("verification", OneOf(VERIFICATIONS), Optional),
        col("payment_fingerprint", Text, Optional),
        col("billing_country", Country, Optional),
        col("signup_ip", Ip, Optional),
    ],
};

static MODEL_RELEASES: TableSpec = TableSpec {
    table: Table::ModelReleases,
    key: 0,
    columns: &[
        col("model", Text, Required),
        col("released_at", Timestamp, Required),
    ],
};

static LABELS: TableSpec = TableSpec {
    table: Table::Labels,
    key: 0,
    columns: &[
        col("account_id", Text, Required),
        col("campaign", Text, Optional),
    ],
};

/// The Arrow type of a message struct: `{role, content}`, both non-null. `content` — most of
/// the bytes of a log — is a string view, so Parquet pages are read into it without copying
/// (a reader keeps the decompressed page and points into it) and a batch is filtered or
/// sliced without moving the text.
pub fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8View, false),
    ])
}

/// `batch` with the message text it references copied into buffers of its own, for sending
/// (Arrow IPC). Message content views point into whole Parquet pages or whole input batches,
/// and IPC writes every buffer a view array references: a 2,000-row slice would carry the
/// text of all its neighbours. Other columns, and batches without string views, are returned
/// as they are.
pub fn compact_for_sending(batch: &RecordBatch) -> RecordBatch {
    let Ok(i) = batch.schema().index_of("messages") else {
        return batch.clone();
    };
    let Some(list) = batch.column(i).as_list_opt::<i32>() else {
        return batch.clone();
    };
    let Some(structs) = list.values().as_struct_opt() else {
        return batch.clone();
    };
    if !structs
        .columns()
        .iter()
        .any(|c| c.data_type() == &DataType::Utf8View)
    {
        return batch.clone();
    }
    // Only the messages of this batch's rows (it may be a slice of a larger one).
    let offsets = list.value_offsets();
    let (start, end) = (offsets[0] as usize, offsets[list.len()] as usize);
    let values = structs.slice(start, end - start);
    let columns: Vec<ArrayRef> = values
        .columns()
        .iter()
        .map(|c| match c.as_string_view_opt() {
            Some(v) => Arc::new(v.gc()) as ArrayRef,
            None => c.clone(),
        })
        .collect();
    let values = StructArray::new(values.fields().clone(), columns, values.nulls().cloned());
    let offsets = OffsetBuffer::new(offsets.iter().map(|o| o - offsets[0]).collect());
    let DataType::List(item) = list.data_type() else {
        return batch.clone();
    };
    let list = ListArray::new(
        item.clone(),
        offsets,
        Arc::new(values),
        list.nulls().cloned(),
    );
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(list);
    RecordBatch::try_new(batch.schema(), columns).expect("same schema, same lengths")
}

impl TableSpec {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    fn arrow_schema(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, arrow_type(c.kind), c.presence == Optional))
                .collect::<Vec<_>>(),
        )
    }
}

/// The Arrow type a column of this kind is stored as.
pub fn arrow_type(kind: Kind) -> DataType {
    match kind {
        Text | Ip | Country | OneOf(_) => DataType::Utf8,
        U32 => DataType::UInt32,
        U16 => DataType::UInt16,
        F32 => DataType::Float32,
        Bool => DataType::Boolean,
        Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Messages => DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(message_fields()),
            true,
        ))),
        TextList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_compacted_for_sending_carries_only_its_own_text() {
        use arrow::array::{StringArray, StringViewArray};
        let rows = 1000;
        let texts: Vec<String> = (0..rows)
            .map(|i| format!("{i:04}{}", "x".repeat(1000)))
            .collect();
        let roles = StringArray::from(vec!["user"; rows]);
        let contents = StringViewArray::from_iter_values(texts.iter());
        let structs = StructArray::new(
            message_fields(),
            vec![Arc::new(roles) as ArrayRef, Arc::new(contents)],
            None,
        );
        let item = Arc::new(Field::new("item", DataType::Struct(message_fields()), true));
        let offsets = OffsetBuffer::from_lengths(vec![1; rows]);
        let list = ListArray::new(item.clone(), offsets, Arc::new(structs), None);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "messages",
            DataType::List(item),
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(list)]).unwrap();
        let text_bytes = |b: &RecordBatch| {
            let list = b.column(0).as_list::<i32>();
            let s = list.values().as_struct();
            s.column(1)
                .as_string_view()
                .data_buffers()
                .iter()
                .map(|d| d.len())
                .sum::<usize>()
        };
        let slice = batch.slice(500, 2);
        assert!(
            text_bytes(&slice) > 500_000,
            "a slice references all the text"
        );
        let compact = compact_for_sending(&slice);
        assert!(text_bytes(&compact) <= 2 * 1004, "{}", text_bytes(&compact));
        let list = compact.column(0).as_list::<i32>();
        assert_eq!(list.value_offsets(), &[0, 1, 2]);
        let first = list.value(1);
        assert_eq!(
            first.as_struct().column(1).as_string_view().value(0),
            texts[501]
        );
    }

    #[test]
    fn keys_are_the_contract_keys() {
        let exchanges = Table::Exchanges.spec();
        assert_eq!(exchanges.columns[exchanges.key].name, "request_id");
        assert_eq!(Table::Accounts.spec().columns[0].name, "account_id");
    }

    #[test]
    fn required_columns_are_not_nullable() {
        let schema = Table::Exchanges.schema();
        assert!(!schema.field_with_name("ts").unwrap().is_nullable());
        assert!(!schema.field_with_name("status").unwrap().is_nullable());
        assert!(schema.field_with_name("asn").unwrap().is_nullable());
        assert_eq!(schema.fields().len(), 22);
    }
}
