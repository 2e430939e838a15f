//! Ingest of the data contract, format by format and bad input by bad input.
//!
//! Every test writes its fixture into a temporary directory, reads it with `read_table`, and
//! checks rows, quarantine lines and figures.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use dg_contract::{BadReason, Diagnostics, IngestError, ReadOptions, Table, discover, read_table};

const GOOD: &str = r#"{"ts":"2026-02-03T14:05:09.120Z","request_id":"r1","account_id":"a1","api_key_id":"k1","model":"m-1","client_ip":"203.0.113.5","asn":64500,"country":"us","user_agent":"ua/1","tls_ja4":"t13d","system":"be brief","messages":[{"role":"user","content":"Hi \"there\"\n"},{"role":"assistant","content":"Hello"},{"role":"user","content":"再见"}],"tools":["search","run"],"max_tokens":512,"temperature":0.7,"stream":true,"input_tokens":12,"output_tokens":34,"reasoning_tokens":5,"response":"ok","status":200,"conversation_id":"c1","extra_field":{"ignored":true}}
{"ts":"2026-02-03T15:05:09+01:00","request_id":"r2","account_id":"a2","model":"m-2","client_ip":"2001:DB8::7","messages":[{"role":"user","content":"x"}],"input_tokens":1,"output_tokens":2}
{"ts":"2026-02-04T00:00:00Z","request_id":"r3","account_id":"a1","model":"m-1","client_ip":"::ffff:198.51.100.9","messages":[],"tools":null,"input_tokens":0,"output_tokens":0,"status":429,"system":""}
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn quarantine(&self) -> PathBuf {
        self.path("quarantine.jsonl")
    }
    fn quarantine_lines(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(self.quarantine()) {
            Ok(s) => s
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn load(
    table: Table,
    path: &Path,
    opts: &ReadOptions,
    diag: &Diagnostics,
) -> Result<RecordBatch, IngestError> {
    let files = discover(path)?;
    let batches = read_table(table, &files, opts, diag)?;
    diag.flush()?;
    Ok(concat_batches(&table.schema(), &batches).unwrap())
}

fn load_ok(f: &Fixture, table: Table, path: &Path) -> (RecordBatch, Diagnostics) {
    let diag = Diagnostics::new(f.quarantine());
    let batch = load(table, path, &ReadOptions::default(), &diag).unwrap();
    (batch, diag)
}

fn strings(batch: &RecordBatch, col: &str) -> Vec<Option<String>> {
    batch
        .column_by_name(col)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_owned))
        .collect()
}

#[test]
fn good_jsonl_is_read_and_normalised() {
    let f = Fixture::new();
    let p = f.write("ex.jsonl", GOOD.as_bytes());
    let (b, diag) = load_ok(&f, Table::Exchanges, &p);
    assert_eq!(b.num_rows(), 3);
    assert_eq!(b.schema(), Table::Exchanges.schema());
    assert_eq!(
        strings(&b, "client_ip"),
        vec![
            Some("203.0.113.5".into()),
            Some("2001:db8::7".into()),
            Some("198.51.100.9".into())
        ]
    );
    assert_eq!(strings(&b, "country")[0].as_deref(), Some("US"));
    assert_eq!(
        strings(&b, "system")[2],
        None,
        "empty optional text is null"
    );
    let status = b
        .column_by_name("status")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt16Type>();
    assert_eq!(status.values().to_vec(), vec![200, 200, 429]);
    let ts = b
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(ts.value(0) - ts.value(1), 120_000, "offsets applied");
    let msgs = b.column_by_name("messages").unwrap().as_list::<i32>();
    assert_eq!(msgs.value_length(0), 3);
    let first = msgs.value(0);
    let contents = first
        .as_struct()
        .column_by_name("content")
        .unwrap()
        .as_string_view();
    assert_eq!(contents.value(0), "Hi \"there\"\n");
    assert_eq!(contents.value(2), "再见");
    assert_eq!(msgs.value_length(2), 0);
    let r = diag.report();
    assert_eq!(r.tables[&Table::Exchanges].rows, 3);
    assert_eq!(r.bad_total(), 0);
    assert!(r.quarantine.is_none());
    assert!(f.quarantine_lines().is_empty());
}

/// One bad line of each kind, between good ones.
fn bad_lines() -> Vec<(Vec<u8>, BadReason, Option<&'static str>)> {
    let good = GOOD.lines().nth(1).unwrap();
    let with = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replace(from, to).into_bytes()
    };
    let mut invalid_utf8 = good.as_bytes().to_vec();
    let at = invalid_utf8.len() - 40;
    invalid_utf8[at] = 0xff;
    vec![
        (
            b"{\"ts\": \"2026-02-03T14:05:09Z\", ".to_vec(),
            BadReason::InvalidJson,
            None,
        ),
        (b"not json at all".to_vec(), BadReason::InvalidJson, None),
        (b"[1, 2, 3]".to_vec(), BadReason::InvalidJson, None),
        (invalid_utf8, BadReason::InvalidUtf8, None),
        (
            with(r#""input_tokens":1"#, r#""input_tokens":"1""#),
            BadReason::WrongType,
            Some("input_tokens"),
        ),
        (
            with(
                r#""messages":[{"role":"user","content":"x"}]"#,
                r#""messages":"x""#,
            ),
            BadReason::WrongType,
            Some("messages"),
        ),
        (
            with(r#""input_tokens":1"#, r#""input_tokens":-1"#),
            BadReason::BadValue,
            Some("input_tokens"),
        ),
        (
            with(r#""input_tokens":1"#, r#""input_tokens":5000000000"#),
            BadReason::BadValue,
            Some("input_tokens"),
        ),
        (
            with(r#""account_id":"a2","#, ""),
            BadReason::MissingField,
            Some("account_id"),
        ),
        (
            with(r#""model":"m-2""#, r#""model":null"#),
            BadReason::MissingField,
            Some("model"),
        ),
        (
            with("2026-02-03T15:05:09+01:00", "2026-02-03T15:05:09"),
            BadReason::BadTimestamp,
            Some("ts"),
        ),
        (
            with("2026-02-03T15:05:09+01:00", "03/02/2026 15:05"),
            BadReason::BadTimestamp,
            Some("ts"),
        ),
        (
            with("2001:DB8::7", "2001:db8::g"),
            BadReason::BadAddress,
            Some("client_ip"),
        ),
        (
            with("2001:DB8::7", "10.1.2"),
            BadReason::BadAddress,
            Some("client_ip"),
        ),
        (
            with(r#""role":"user""#, r#""role":"narrator""#),
            BadReason::BadValue,
            Some("messages[0].role"),
        ),
    ]
}

#[test]
fn every_bad_line_is_quarantined_unchanged_with_its_reason() {
    let f = Fixture::new();
    let good = GOOD.lines().nth(1).unwrap();
    let mut data = Vec::new();
    let bad = bad_lines();
    for (i, (line, _, _)) in bad.iter().enumerate() {
        data.extend_from_slice(good.replace("\"r2\"", &format!("\"g{i}\"")).as_bytes());
        data.push(b'\n');
        data.extend_from_slice(line);
        data.push(b'\n');
    }
    let p = f.write("mixed.jsonl", &data);
    let (b, diag) = load_ok(&f, Table::Exchanges, &p);
    assert_eq!(b.num_rows(), bad.len(), "every good line survives");
    let q = f.quarantine_lines();
    assert_eq!(q.len(), bad.len(), "every bad line is quarantined");
    for (i, ((raw, reason, field), got)) in bad.iter().zip(&q).enumerate() {
        assert_eq!(got["reason"], reason.as_str(), "line {}: {got}", 2 * i + 2);
        assert_eq!(got["line"], 2 * i as u64 + 2);
        assert_eq!(got["source"], p.to_string_lossy().as_ref());
        assert_eq!(got["raw"], String::from_utf8_lossy(raw).as_ref());
        if let Some(field) = field {
            assert_eq!(got["field"], *field, "{got}");
        }
        assert!(!got["detail"].as_str().unwrap().is_empty());
    }
    let r = diag.report();
    assert_eq!(r.bad_total(), bad.len() as u64);
    assert_eq!(r.bad_by_reason()[&BadReason::InvalidJson], 3);
    assert_eq!(r.quarantine.as_deref(), Some(f.quarantine().as_path()));
}

#[test]
fn strict_mode_stops_at_the_first_bad_record_naming_it() {
    let f = Fixture::new();
    let good = GOOD.lines().nth(1).unwrap();
    let bad = good.replace("2026-02-03T15:05:09+01:00", "2026-02-03 15:05:09");
    let p = f.write("strict.jsonl", format!("{good}\n\n{bad}\n").as_bytes());
    let diag = Diagnostics::new(f.quarantine());
    let opts = ReadOptions {
        strict: true,
        ..ReadOptions::default()
    };
    let err = load(Table::Exchanges, &p, &opts, &diag).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IngestError::Strict { .. }));
    assert!(
        msg.contains("strict.jsonl:line 3: field `ts`: bad_timestamp"),
        "{msg}"
    );
    assert!(msg.contains("no UTC offset"), "{msg}");
    assert!(!msg.contains('\n'));
    assert!(
        f.quarantine_lines().is_empty(),
        "strict mode writes no quarantine"
    );
}

#[test]
fn duplicates_are_counted_once_and_reported() {
    let f = Fixture::new();
    let good: Vec<&str> = GOOD.lines().collect();
    let data = format!("{}\n{}\n{}\n{}\n", good[0], good[1], good[0], good[0]);
    let p = f.write("dups.jsonl", data.as_bytes());
    let (b, diag) = load_ok(&f, Table::Exchanges, &p);
    assert_eq!(b.num_rows(), 2);
    let r = &diag.report().tables[&Table::Exchanges];
    assert_eq!((r.rows, r.duplicates), (2, 2));
    assert!(
        r.duplicate_examples[0].ends_with("dups.jsonl:line 3: r1"),
        "{:?}",
        r.duplicate_examples
    );
    assert!(
        f.quarantine_lines().is_empty(),
        "a duplicate is not a bad record"
    );
}

#[test]
fn a_line_over_the_limit_is_quarantined_whole_without_holding_it() {
    let f = Fixture::new();
    let good = GOOD.lines().nth(1).unwrap();
    // A 50 MB line: a good record with a huge prompt, plus invalid UTF-8 in the middle.
    let mut long = good.replace(
        "\"content\":\"x\"",
        &format!("\"content\":\"{}", "y".repeat(25 << 20)),
    );
    long.push_str(&"z".repeat(25 << 20));
    let mut long = long.into_bytes();
    long.insert(30 << 20, 0xfe);
    let mut data = format!("{good}\n").into_bytes();
    data.extend_from_slice(&long);
    data.extend_from_slice(format!("\n{}\n", good.replace("r2", "r9")).as_bytes());
    let p = f.write("long.jsonl", &data);
    let (b, diag) = load_ok(&f, Table::Exchanges, &p);
    assert_eq!(b.num_rows(), 2);
    let q = f.quarantine_lines();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["reason"], "line_too_long");
    assert_eq!(q[0]["line"], 2);
    let raw = q[0]["raw"].as_str().unwrap();
    assert_eq!(raw, String::from_utf8_lossy(&long));
    assert_eq!(diag.report().bad_by_reason()[&BadReason::LineTooLong], 1);
}

#[test]
fn empty_and_blank_files_hold_no_rows() {
    let f = Fixture::new();
    for (name, data) in [("empty.jsonl", &b""[..]), ("blank.jsonl", b"\n  \n\r\n")] {
        let p = f.write(name, data);
        let (b, diag) = load_ok(&f, Table::Exchanges, &p);
        assert_eq!(b.num_rows(), 0);
        assert_eq!(diag.report().bad_total(), 0);
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_and_zstd_read_like_plain() {
    let f = Fixture::new();
    let plain = f.write("a.jsonl", GOOD.as_bytes());
    let gz = f.write("b.jsonl.gz", &gzip(GOOD.as_bytes()));
    let zst = f.write(
        "c.jsonl.zst",
        &zstd::encode_all(GOOD.as_bytes(), 3).unwrap(),
    );
    let (a, _) = load_ok(&f, Table::Exchanges, &plain);
    assert_eq!(load_ok(&f, Table::Exchanges, &gz).0, a);
    assert_eq!(load_ok(&f, Table::Exchanges, &zst).0, a);
}

#[test]
fn unreadable_files_are_one_clear_error() {
    let f = Fixture::new();
    let diag = Diagnostics::new(f.quarantine());
    let opts = ReadOptions::default();
    let one_line = |p: &Path| {
        let e = load(Table::Exchanges, p, &opts, &diag)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.contains(&*p.to_string_lossy()),
            "error names the file: {e}"
        );
        e
    };
    let full = gzip(GOOD.repeat(200).as_bytes());
    let truncated = f.write("cut.jsonl.gz", &full[..full.len() / 2]);
    assert!(one_line(&truncated).contains("truncated"));
    let zst = zstd::encode_all(GOOD.repeat(200).as_bytes(), 3).unwrap();
    let truncated = f.write("cut.jsonl.zst", &zst[..zst.len() / 2]);
    one_line(&truncated);
    let csv = f.write("exchanges.csv", b"ts,request_id\n2026-01-01T00:00:00Z,r1\n");
    assert!(one_line(&csv).contains("CSV is not part of the data contract"));
    assert!(one_line(&f.path("missing.jsonl")).contains("no such file"));
    let fake = f.write("fake.parquet", GOOD.as_bytes());
    assert!(one_line(&fake).contains("not a Parquet file"));
    let empty = f.write("empty.parquet", b"");
    assert!(one_line(&empty).contains("empty file"));
    let gz_named_plain = f.write("g.jsonl", &gzip(GOOD.as_bytes()));
    assert!(one_line(&gz_named_plain).contains("gzip"));
    let plain_named_gz = f.write("p.jsonl.gz", GOOD.as_bytes());
    assert!(one_line(&plain_named_gz).contains("not gzip"));
    // A truncated Parquet file: the footer is gone.
    let pq = write_parquet(
        &f,
        "whole.parquet",
        &load_ok(&f, Table::Exchanges, &f.write("g2.jsonl", GOOD.as_bytes())).0,
    );
    let bytes = std::fs::read(&pq).unwrap();
    let cut = f.write("cut.parquet", &bytes[..bytes.len() - 20]);
    one_line(&cut);
}

#[test]
fn directories_are_read_in_name_order_skipping_hidden_files() {
    let f = Fixture::new();
    let lines: Vec<&str> = GOOD.lines().collect();
    f.write("dir/b.jsonl", format!("{}\n", lines[1]).as_bytes());
    f.write("dir/a.jsonl", format!("{}\n", lines[0]).as_bytes());
    f.write(
        "dir/sub/c.jsonl.gz",
        &gzip(format!("{}\n", lines[2]).as_bytes()),
    );
    f.write("dir/_SUCCESS", b"");
    f.write("dir/.a.jsonl.crc", b"xx");
    let (b, diag) = load_ok(&f, Table::Exchanges, &f.path("dir"));
    assert_eq!(
        strings(&b, "request_id"),
        vec![Some("r1".into()), Some("r2".into()), Some("r3".into())]
    );
    assert_eq!(diag.report().tables[&Table::Exchanges].files, 3);
    f.write("dir/notes.txt", b"hello");
    let diag = Diagnostics::new(f.quarantine());
    let e = load(
        Table::Exchanges,
        &f.path("dir"),
        &ReadOptions::default(),
        &diag,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("notes.txt: unsupported file type"),
        "{e}"
    );
}

/// Damaged bytes in a Parquet file's pages, in each codec the contract's page reader handles
/// and one it leaves to the `parquet` crate, read through the page cache or past it: every
/// read ends as rows, quarantined rows or one error naming the file, never a panic.
#[test]
fn damaged_parquet_pages_never_crash_the_reader() {
    use dg_contract::DirectIo;
    use parquet::basic::Compression;
    let f = Fixture::new();
    let (good, _) = load_ok(
        &f,
        Table::Exchanges,
        &f.write("g.jsonl", GOOD.repeat(3).as_bytes()),
    );
    for codec in [
        Compression::LZ4_RAW,
        Compression::ZSTD(Default::default()),
        Compression::SNAPPY,
    ] {
        let p = f.path("clean.parquet");
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(codec)
            .build();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&p).unwrap(),
            good.schema(),
            Some(props),
        )
        .unwrap();
        w.write(&good).unwrap();
        w.close().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let meta_len =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
        let pages_end = bytes.len() - 8 - meta_len as usize;
        let (mut errors, mut x) = (0, 0x9E37_79B9_7F4A_7C15_u64);
        for i in 0..150 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = 4 + (x as usize) % (pages_end - 4);
            let mut bad = bytes.clone();
            bad[at] ^= 1 << ((x >> 32) % 8);
            let path = f.write(&format!("bad-{i}.parquet"), &bad);
            let diag = Diagnostics::new(f.quarantine());
            // Every other file read past the page cache, row groups whole.
            let opts = ReadOptions {
                direct_io: [DirectIo::Off, DirectIo::On][i % 2],
                ..ReadOptions::default()
            };
            if let Err(e) = load(Table::Exchanges, &path, &opts, &diag) {
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
                errors += 1;
            }
        }
        assert!(
            errors > 10,
            "{codec:?}: only {errors} of 150 damaged files refused"
        );
    }
}

fn write_parquet(f: &Fixture, name: &str, batch: &RecordBatch) -> PathBuf {
    write_parquet_groups(f, name, batch, 2)
}

/// `batch` as Parquet, in row groups of `rows_per_group` rows.
fn write_parquet_groups(
    f: &Fixture,
    name: &str,
    batch: &RecordBatch,
    rows_per_group: usize,
) -> PathBuf {
    let p = f.path(name);
    let file = std::fs::File::create(&p).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    p
}

#[test]
fn jsonl_and_parquet_of_the_same_records_give_identical_tables() {
    let f = Fixture::new();
    for table in [Table::Exchanges, Table::Accounts] {
        let data = match table {
            Table::Exchanges => GOOD.to_owned(),
            _ => r#"{"account_id":"a1","created_at":"2026-01-01T00:00:00Z","email_domain":"x.example","verification":"EDU","payment_fingerprint":"p","billing_country":"fr","signup_ip":"2001:db8::1"}
{"account_id":"a2","created_at":"2026-01-02T00:00:00.5-05:00"}
"#
            .to_owned(),
        };
        let from_jsonl = load_ok(
            &f,
            table,
            &f.write(&format!("{table}.jsonl"), data.as_bytes()),
        )
        .0;
        let pq = write_parquet(&f, &format!("{table}.parquet"), &from_jsonl);
        let from_parquet = load_ok(&f, table, &pq).0;
        assert_eq!(from_parquet, from_jsonl, "{table}");
    }
}

/// A Parquet file written by another tool: other integer widths, nanosecond timestamps
/// without time zone, large strings, dictionary strings, no `status` column.
#[test]
fn parquet_with_other_physical_types_is_widened_to_the_contract() {
    use arrow::array::*;
    let f = Fixture::new();
    let jsonl = GOOD.lines().nth(1).unwrap().to_owned() + "\n";
    let expected = load_ok(&f, Table::Exchanges, &f.write("e.jsonl", jsonl.as_bytes())).0;
    let msg_fields = arrow::datatypes::Fields::from(vec![
        Field::new("role", DataType::LargeUtf8, true),
        Field::new("content", DataType::Utf8View, true),
        Field::new("name", DataType::Utf8, true),
    ]);
    let structs = StructArray::new(
        msg_fields.clone(),
        vec![
            Arc::new(LargeStringArray::from(vec!["USER"])) as ArrayRef,
            Arc::new(StringViewArray::from(vec!["x"])),
            Arc::new(StringArray::from(vec![None::<&str>])),
        ],
        None,
    );
    let messages = LargeListArray::new(
        Arc::new(Field::new("element", DataType::Struct(msg_fields), true)),
        arrow::buffer::OffsetBuffer::new(vec![0i64, 1].into()),
        Arc::new(structs),
        None,
    );
    let ts = expected
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
        .value(0);
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        Field::new("request_id", DataType::LargeUtf8, true),
        Field::new(
            "account_id",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
        Field::new("model", DataType::Utf8, true),
        Field::new("client_ip", DataType::Utf8, true),
        Field::new("messages", messages.data_type().clone(), true),
        Field::new("input_tokens", DataType::Int64, true),
        Field::new("output_tokens", DataType::UInt8, true),
        Field::new("something_else", DataType::Float64, true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![ts * 1000])),
            Arc::new(LargeStringArray::from(vec!["r2"])),
            Arc::new(
                vec!["a2"]
                    .into_iter()
                    .collect::<DictionaryArray<arrow::datatypes::Int32Type>>(),
            ),
            Arc::new(StringArray::from(vec!["m-2"])),
            Arc::new(StringArray::from(vec!["2001:DB8::7"])),
            Arc::new(messages),
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(UInt8Array::from(vec![2])),
            Arc::new(Float64Array::from(vec![0.5])),
        ],
    )
    .unwrap();
    let pq = write_parquet(&f, "other.parquet", &batch);
    assert_eq!(load_ok(&f, Table::Exchanges, &pq).0, expected);
}

#[test]
fn bad_parquet_rows_are_quarantined_with_row_group_and_row() {
    use arrow::array::*;
    let f = Fixture::new();
    let schema = Schema::new(vec![
        Field::new("account_id", DataType::Utf8, true),
        Field::new("created_at", DataType::Utf8, true),
        Field::new("verification", DataType::Utf8, true),
        Field::new("signup_ip", DataType::Utf8, true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec![
                Some("a1"),
                None,
                Some("a3"),
                Some("a4"),
                Some("a5"),
            ])),
            Arc::new(StringArray::from(vec![
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00",
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
            ])),
            Arc::new(StringArray::from(vec![
                Some("card"),
                None,
                None,
                Some("gold"),
                None,
            ])),
            Arc::new(StringArray::from(vec![
                None,
                None,
                None,
                None,
                Some("1.2.3.4.5"),
            ])),
        ],
    )
    .unwrap();
    let pq = write_parquet(&f, "accounts.parquet", &batch);
    let (b, diag) = load_ok(&f, Table::Accounts, &pq);
    assert_eq!(strings(&b, "account_id"), vec![Some("a1".into())]);
    let q = f.quarantine_lines();
    let got: Vec<(u64, u64, &str)> = q
        .iter()
        .map(|l| {
            (
                l["row_group"].as_u64().unwrap(),
                l["row"].as_u64().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1, "missing_field"),
            (1, 0, "bad_timestamp"),
            (1, 1, "bad_value"),
            (2, 0, "bad_address")
        ]
    );
    assert!(q[3]["raw"].as_str().unwrap().contains("1.2.3.4.5"));
    assert_eq!(diag.report().bad_total(), 4);
}

/// Per-row checks of list and integer columns: a `tools` list holding a null and a token
/// count beyond `u32` are quarantined with their reasons, at any position in a batch; the
/// rows around them are kept.
#[test]
fn parquet_null_list_items_and_overflowing_counts_are_quarantined() {
    use arrow::array::*;
    let f = Fixture::new();
    let n = 6;
    let mut tools = ListBuilder::new(StringBuilder::new());
    let mut messages = ListBuilder::new(StructBuilder::from_fields(
        vec![
            Field::new("role", DataType::Utf8, true),
            Field::new("content", DataType::Utf8, true),
        ],
        n,
    ));
    for row in 0..n {
        match row {
            1 => {
                tools.values().append_value("search");
                tools.values().append_null();
                tools.append(true);
            }
            3 => tools.append(false),
            _ => {
                tools.values().append_value("run");
                tools.append(true);
            }
        }
        let m = messages.values();
        m.field_builder::<StringBuilder>(0)
            .unwrap()
            .append_value("user");
        m.field_builder::<StringBuilder>(1)
            .unwrap()
            .append_value("hi");
        m.append(true);
        messages.append(true);
    }
    let (tools, messages) = (tools.finish(), messages.finish());
    let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let schema = Schema::new(vec![
        Field::new("ts", DataType::Utf8, true),
        Field::new("request_id", DataType::Utf8, true),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, true),
        Field::new("client_ip", DataType::Utf8, true),
        Field::new("messages", messages.data_type().clone(), true),
        Field::new("tools", tools.data_type().clone(), true),
        Field::new("input_tokens", DataType::Int64, true),
        Field::new("output_tokens", DataType::Int64, true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec!["2026-01-01T00:00:00Z"; n])),
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(vec!["a1"; n])),
            Arc::new(StringArray::from(vec!["m-1"; n])),
            Arc::new(StringArray::from(vec!["192.0.2.1"; n])),
            Arc::new(messages),
            Arc::new(tools),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5_000_000_000, 6])),
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(5),
                Some(6),
            ])),
        ],
    )
    .unwrap();
    let pq = write_parquet(&f, "exchanges.parquet", &batch);
    let (b, _) = load_ok(&f, Table::Exchanges, &pq);
    assert_eq!(
        strings(&b, "request_id"),
        vec![Some("r0".into()), Some("r2".into()), Some("r5".into())]
    );
    let q = f.quarantine_lines();
    let got: Vec<(u64, u64, &str, &str)> = q
        .iter()
        .map(|l| {
            (
                l["row_group"].as_u64().unwrap(),
                l["row"].as_u64().unwrap(),
                l["reason"].as_str().unwrap(),
                l["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1, "wrong_type", "tools"),
            (1, 1, "missing_field", "output_tokens"),
            (2, 0, "bad_value", "input_tokens"),
        ]
    );
}

#[test]
fn parquet_column_of_the_wrong_type_is_one_clear_error() {
    use arrow::array::*;
    let f = Fixture::new();
    let schema = Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("created_at", DataType::Int64, false),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(vec!["a1"])),
            Arc::new(Int64Array::from(vec![5])),
        ],
    )
    .unwrap();
    let pq = write_parquet(&f, "wrong.parquet", &batch);
    let diag = Diagnostics::new(f.quarantine());
    let e = load(Table::Accounts, &pq, &ReadOptions::default(), &diag)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("column `created_at` has type Int64, expected a timestamp"),
        "{e}"
    );
    let schema = Schema::new(vec![Field::new("account_id", DataType::Utf8, false)]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(StringArray::from(vec!["a1"]))],
    )
    .unwrap();
    let pq = write_parquet(&f, "short.parquet", &batch);
    let e = load(Table::Accounts, &pq, &ReadOptions::default(), &diag)
        .unwrap_err()
        .to_string();
    assert!(e.contains("required column `created_at` is missing"), "{e}");
}

#[test]
fn batches_stay_small_whatever_the_file_size() {
    let f = Fixture::new();
    let (p, line_len) = many_exchanges_jsonl(&f);
    let files = discover(&p).unwrap();
    let diag = Diagnostics::new(f.quarantine());
    let opts = ReadOptions {
        batch_size: 1000,
        ..ReadOptions::default()
    };
    let batches = read_table(Table::Exchanges, &files, &opts, &diag).unwrap();
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.num_rows() == 1000));
    let opts = ReadOptions {
        batch_bytes: 100 * line_len,
        ..ReadOptions::default()
    };
    let batches = read_table(
        Table::Exchanges,
        &files,
        &opts,
        &Diagnostics::new(f.quarantine()),
    )
    .unwrap();
    assert!(
        batches.iter().all(|b| b.num_rows() <= 100),
        "byte budget cuts batches"
    );
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        10_000
    );
}

#[test]
fn a_second_scan_records_nothing_twice() {
    let f = Fixture::new();
    let data = format!("{}\nnot json\n", GOOD.lines().next().unwrap());
    let p = f.write("twice.jsonl", data.as_bytes());
    let files = discover(&p).unwrap();
    let diag = Diagnostics::new(f.quarantine());
    for _ in 0..2 {
        let b = read_table(Table::Exchanges, &files, &ReadOptions::default(), &diag).unwrap();
        assert_eq!(b.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    }
    diag.flush().unwrap();
    let r = diag.report();
    assert_eq!((r.tables[&Table::Exchanges].rows, r.bad_total()), (1, 1));
    assert_eq!(f.quarantine_lines().len(), 1);
}

/// Ten thousand exchanges, each with its own request id, as `many.jsonl`; and the length of
/// one line.
fn many_exchanges_jsonl(f: &Fixture) -> (PathBuf, usize) {
    let line = GOOD.lines().nth(1).unwrap();
    let mut data = String::new();
    for i in 0..10_000 {
        data.push_str(&line.replace("\"r2\"", &format!("\"r{i}\"")));
        data.push('\n');
    }
    (f.write("many.jsonl", data.as_bytes()), line.len())
}

/// The exchanges of [`many_exchanges_jsonl`] in one Parquet file of row groups of
/// `rows_per_group` rows.
fn many_exchanges_parquet(f: &Fixture, rows_per_group: usize) -> PathBuf {
    let (jsonl, _) = many_exchanges_jsonl(f);
    let (batch, _) = load_ok(f, Table::Exchanges, &jsonl);
    write_parquet_groups(f, "many.parquet", &batch, rows_per_group)
}

#[test]
fn parquet_batches_are_cut_by_bytes_as_well_as_rows() {
    let f = Fixture::new();
    let p = many_exchanges_parquet(&f, 5_000);
    let files = discover(&p).unwrap();
    let sizes = |opts: &ReadOptions| -> Vec<usize> {
        read_table(
            Table::Exchanges,
            &files,
            opts,
            &Diagnostics::new(f.quarantine()),
        )
        .unwrap()
        .iter()
        .map(RecordBatch::num_rows)
        .collect()
    };
    let opts = ReadOptions {
        batch_size: 1000,
        ..ReadOptions::default()
    };
    assert_eq!(sizes(&opts), vec![1000; 10], "row limit");
    // The decoded columns of one row are a few dozen bytes: a 4 KiB budget holds well under
    // 1,000 of them.
    let opts = ReadOptions {
        batch_size: 1000,
        batch_bytes: 4096,
        ..ReadOptions::default()
    };
    let small = sizes(&opts);
    assert_eq!(small.iter().sum::<usize>(), 10_000);
    assert!(
        small.len() > 20 && small.iter().all(|&n| (1..1000).contains(&n)),
        "byte budget cuts batches: {small:?}"
    );
}

/// The pull reader (one batch per request, on the caller's thread) gives the same rows, the
/// same quarantine and the same figures as the push reader, duplicates and bad rows included.
#[test]
fn parquet_batches_on_demand_match_the_pushing_reader() {
    use dg_contract::{Dedup, ParquetBatches, read_file};
    use std::ops::ControlFlow;
    let f = Fixture::new();
    let p = many_exchanges_parquet(&f, 3_000);
    // A second file: a duplicate of a row of the first, a new row and a bad one.
    let (dup, _) = load_ok(&f, Table::Exchanges, &f.write("dup.jsonl", GOOD.as_bytes()));
    let mut ips: Vec<String> = strings(&dup, "client_ip")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    ips[2] = "999.1.1.1".into();
    let mut columns = dup.columns().to_vec();
    columns[1] = Arc::new(arrow::array::StringArray::from(vec!["r1", "x7", "r3"]));
    columns[5] = Arc::new(arrow::array::StringArray::from(ips));
    let dup = RecordBatch::try_new(dup.schema(), columns).unwrap();
    let q = write_parquet(&f, "more.parquet", &dup);
    let files = [discover(&p).unwrap(), discover(&q).unwrap()].concat();
    let opts = ReadOptions {
        batch_size: 700,
        ..ReadOptions::default()
    };

    let pushed_diag = Diagnostics::new(f.path("pushed.jsonl"));
    let dedup = Dedup::default();
    let mut pushed = Vec::new();
    for file in &files {
        read_file(
            Table::Exchanges,
            file,
            &opts,
            &pushed_diag,
            &dedup,
            &mut |b| {
                pushed.push(b);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    }
    pushed_diag.flush().unwrap();

    let pulled_diag = Arc::new(Diagnostics::new(f.path("pulled.jsonl")));
    let dedup = Arc::new(Dedup::default());
    let mut pulled = Vec::new();
    for file in &files {
        let batches = ParquetBatches::new(
            Table::Exchanges,
            file,
            &opts,
            pulled_diag.clone(),
            dedup.clone(),
        )
        .expect("a Parquet file");
        for b in batches {
            pulled.push(b.unwrap());
        }
    }
    pulled_diag.flush().unwrap();

    let schema = Table::Exchanges.schema();
    let pushed_rows = concat_batches(&schema, &pushed).unwrap();
    assert_eq!(
        pushed_rows.num_rows(),
        10_001,
        "r1 is a duplicate, r3 is bad"
    );
    assert_eq!(concat_batches(&schema, &pulled).unwrap(), pushed_rows);
    assert!(pulled.iter().all(|b| b.num_rows() <= 700));
    let (a, b) = (pushed_diag.report(), pulled_diag.report());
    assert_eq!(
        (a.bad_total(), a.tables[&Table::Exchanges].duplicates),
        (1, 1)
    );
    assert_eq!(a.tables, b.tables);
    let lines = |name: &str| std::fs::read_to_string(f.path(name)).unwrap();
    assert_eq!(lines("pushed.jsonl"), lines("pulled.jsonl"));
    // A file that is not Parquet is left to the pushing reader.
    let jsonl = discover(&f.path("dup.jsonl")).unwrap();
    assert!(ParquetBatches::new(Table::Exchanges, &jsonl[0], &opts, pulled_diag, dedup).is_none());
}

/// An unreadable Parquet file is one error from the pull reader, then nothing.
#[test]
fn parquet_batches_on_demand_end_after_an_error() {
    use dg_contract::{Dedup, ParquetBatches};
    let f = Fixture::new();
    let p = f.write("broken.parquet", b"PAR1 this is not a Parquet file PAR1");
    let files = discover(&p).unwrap();
    let mut batches = ParquetBatches::new(
        Table::Exchanges,
        &files[0],
        &ReadOptions::default(),
        Arc::new(Diagnostics::new(f.quarantine())),
        Arc::new(Dedup::default()),
    )
    .unwrap();
    let e = batches.next().unwrap().unwrap_err().to_string();
    assert!(e.contains("broken.parquet"), "{e}");
    assert!(batches.next().is_none());
}

/// Row groups read whole past the page cache (`DirectIo::On`), the first one read ahead or
/// not, give the same rows, quarantine and figures as pages read one by one through it —
/// LZ4_RAW, Zstandard and uncompressed files, several row groups each.
#[test]
fn parquet_read_past_the_page_cache_matches_reading_through_it() {
    use dg_contract::{Dedup, DirectIo, ParquetBatches, ReadAhead};
    use parquet::basic::{Compression, ZstdLevel};
    let f = Fixture::new();
    let (jsonl, _) = many_exchanges_jsonl(&f);
    let (batch, _) = load_ok(&f, Table::Exchanges, &jsonl);
    // A bad row among them: an address that does not parse.
    let mut ips: Vec<Option<String>> = strings(&batch, "client_ip");
    ips[4321] = Some("999.1.1.1".into());
    let i = batch.schema().index_of("client_ip").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(arrow::array::StringArray::from(ips));
    let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
    let mut files = Vec::new();
    for (name, codec) in [
        ("lz4.parquet", Compression::LZ4_RAW),
        ("zstd.parquet", Compression::ZSTD(ZstdLevel::default())),
        ("plain.parquet", Compression::UNCOMPRESSED),
    ] {
        let p = f.path(name);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(3_000))
            .set_compression(codec)
            .build();
        let file = std::fs::File::create(&p).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        files.extend(discover(&p).unwrap());
    }
    let read = |direct_io: DirectIo, ahead: bool, name: &str| {
        let opts = ReadOptions {
            batch_size: 700,
            direct_io,
            ..ReadOptions::default()
        };
        let diag = Arc::new(Diagnostics::new(f.path(name)));
        let dedup = Arc::new(Dedup::default());
        let mut out = Vec::new();
        for file in &files {
            let batches =
                ParquetBatches::new(Table::Exchanges, file, &opts, diag.clone(), dedup.clone())
                    .unwrap()
                    .with_read_ahead(ahead.then(|| ReadAhead::start(file)));
            out.extend(batches.map(Result::unwrap));
        }
        diag.flush().unwrap();
        let rows = concat_batches(&Table::Exchanges.schema(), &out).unwrap();
        (
            rows,
            diag.report().tables,
            std::fs::read_to_string(f.path(name)).unwrap(),
        )
    };
    let cached = read(DirectIo::Off, false, "cached.jsonl");
    assert_eq!(
        cached.0.num_rows(),
        9_999,
        "three copies: one bad row, the rest duplicates"
    );
    // The bad row is quarantined in each file, not counted as a duplicate.
    assert_eq!(cached.1[&Table::Exchanges].duplicates, 19_998);
    assert!(cached.2.contains("999.1.1.1"));
    assert_eq!(read(DirectIo::On, false, "direct.jsonl"), cached);
    assert_eq!(read(DirectIo::On, true, "ahead.jsonl"), cached);
    // A read-ahead of another file is not used for this one.
    let opts = ReadOptions {
        direct_io: DirectIo::On,
        ..ReadOptions::default()
    };
    let diag = Arc::new(Diagnostics::new(f.path("other.jsonl")));
    let rows: usize = ParquetBatches::new(
        Table::Exchanges,
        &files[0],
        &opts,
        diag,
        Arc::new(Dedup::default()),
    )
    .unwrap()
    .with_read_ahead(Some(ReadAhead::start(&files[1])))
    .map(|b| b.unwrap().num_rows())
    .sum();
    assert_eq!(rows, 9_999);
}

/// `Auto` is decided by the size of a table against the memory available; `On` and `Off` stay.
#[test]
fn direct_io_auto_is_for_input_larger_than_memory() {
    use dg_contract::DirectIo;
    assert_eq!(DirectIo::On.resolve(0), DirectIo::On);
    assert_eq!(DirectIo::Off.resolve(u64::MAX), DirectIo::Off);
    assert_eq!(DirectIo::Auto.resolve(0), DirectIo::Off);
    let huge = DirectIo::Auto.resolve(u64::MAX);
    if std::path::Path::new("/proc/meminfo").exists() {
        assert_eq!(huge, DirectIo::On);
    } else {
        assert_eq!(huge, DirectIo::Off, "no way to tell the memory available");
    }
}
