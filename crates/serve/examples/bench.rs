//! Online-service benchmark, run by `scripts/bench-serve.sh`. Prints:
//!
//! 1. ingestion: exchanges/s into the service core (features, profiles, write-ahead log) and
//!    over HTTP (Arrow IPC batches, two clients);
//! 2. time to detect: the exchanges replayed in time order, all accounts judged every
//!    `--judge-every` exchanges; for each campaign, the share of its exchanges that had
//!    arrived when half of its accounts were at `block` (target: under 2%);
//! 3. `/v1/decide` latency at a fixed request rate over loopback (open loop: latency counts
//!    from each request's scheduled time, so a stall is not hidden), p50/p99/p99.9.
//!
//! ```text
//! scripts/bench-serve.sh [SCENARIO] [SCALE] [RATE] [SECONDS]
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::compute::{concat_batches, interleave};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use dg_contract::{Diagnostics, Table};
use dg_serve::ServeFile;
use dg_serve::decide::Action;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{exchange_batches, ipc, open, simulate};

/// All exchanges in time order, as batches of `rows` (gathered from the read batches by a
/// sorted index, so no single array has to hold all the text).
fn in_time_order(root: &Path, rows: usize) -> Vec<RecordBatch> {
    let batches = exchange_batches(root, 8192);
    let mut keys: Vec<(i64, usize, usize)> = Vec::new();
    for (bi, b) in batches.iter().enumerate() {
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        keys.extend((0..b.num_rows()).map(|r| (ts.value(r), bi, r)));
    }
    keys.sort_unstable();
    let schema = Table::Exchanges.schema();
    keys.chunks(rows)
        .map(|chunk| {
            let idx: Vec<(usize, usize)> = chunk.iter().map(|&(_, b, r)| (b, r)).collect();
            let columns = (0..schema.fields().len())
                .map(|c| {
                    let cols: Vec<&dyn arrow::array::Array> =
                        batches.iter().map(|b| b.column(c).as_ref()).collect();
                    interleave(&cols, &idx).unwrap()
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map_or("small", String::as_str);
    let scale: f64 = args.get(1).map_or(1.0, |s| s.parse().expect("SCALE"));
    let rate: f64 = args.get(2).map_or(20_000.0, |s| s.parse().expect("RATE"));
    let seconds: f64 = args.get(3).map_or(10.0, |s| s.parse().expect("SECONDS"));
    eprintln!("simulating {scenario} x{scale} …");
    let data = simulate(scenario, scale, None);
    let root = data.root.clone();
    let dir = tempfile::tempdir().unwrap();
    let batches = in_time_order(&root, 1000);
    let total: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    println!("data: {scenario} x{scale}: {total} exchanges");
    let labels: HashMap<String, String> = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(dg_detect::eval::read_labels(
            &[root.join("labels.parquet")],
            Path::new("/dev/null"),
        ))
        .unwrap()
        .0
        .into_iter()
        .filter(|(_, c)| !c.is_empty())
        .collect();

    // 1. Ingestion into the core, with time-to-detect judgements along the way.
    let mut file = ServeFile::default();
    file.serve.fsync = true;
    let svc = open(&root, &dir.path().join("state"), &file);
    let mut campaign_accounts: HashMap<&str, usize> = HashMap::new();
    for c in labels.values() {
        *campaign_accounts.entry(c.as_str()).or_default() += 1;
    }
    let mut campaign_exchanges: HashMap<String, u64> = HashMap::new();
    for b in &batches {
        let ids = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            if let Some(c) = labels.get(ids.value(i)) {
                *campaign_exchanges.entry(c.clone()).or_default() += 1;
            }
        }
    }
    let judge_every = (total / 400).max(500);
    let mut arrived: HashMap<String, u64> = HashMap::new();
    let mut seen: HashMap<String, HashSet<String>> = HashMap::new();
    // Per campaign: share of its exchanges arrived when half of all its accounts, and when
    // half of the accounts seen so far (at least 3), were at `block`; and the blocked share of
    // the accounts seen so far at the first judgement after 2% of its exchanges.
    let mut half_all: HashMap<String, f64> = HashMap::new();
    let mut half_seen: HashMap<String, f64> = HashMap::new();
    let mut at_two_percent: HashMap<String, (f64, usize, usize)> = HashMap::new();
    let mut ingest_secs = 0.0;
    let mut judge_secs = 0.0;
    let mut judgements = 0;
    let mut since = 0u64;
    let (mut peak_resident, mut evict_secs) = (0i64, 0.0);
    for b in &batches {
        let ids = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            if let Some(c) = labels.get(ids.value(i)) {
                *arrived.entry(c.clone()).or_default() += 1;
                seen.entry(c.clone())
                    .or_default()
                    .insert(ids.value(i).to_string());
            }
        }
        let t0 = Instant::now();
        svc.ingest_batch(b).unwrap();
        ingest_secs += t0.elapsed().as_secs_f64();
        since += b.num_rows() as u64;
        if since < judge_every {
            continue;
        }
        since = 0;
        let t0 = Instant::now();
        let table = svc.judge_now();
        judge_secs += t0.elapsed().as_secs_f64();
        judgements += 1;
        // What the background thread does every few seconds: idle accounts to disk.
        peak_resident = peak_resident.max(svc.metrics.resident_accounts.get());
        let t0 = Instant::now();
        svc.evict_idle().unwrap();
        evict_secs += t0.elapsed().as_secs_f64();
        for (c, n) in &campaign_accounts {
            let share =
                arrived.get(*c).copied().unwrap_or(0) as f64 / campaign_exchanges[*c].max(1) as f64;
            let seen_c = seen.get(*c).map_or(0, HashSet::len);
            let blocked = seen.get(*c).map_or(0, |ids| {
                ids.iter()
                    .filter(|id| {
                        table
                            .accounts
                            .get(*id)
                            .is_some_and(|a| a.action == Action::Block)
                    })
                    .count()
            });
            if blocked * 2 >= *n {
                half_all.entry(c.to_string()).or_insert(share);
            }
            if seen_c >= 3 && blocked * 2 >= seen_c {
                half_seen.entry(c.to_string()).or_insert(share);
            }
            if share >= 0.02 {
                at_two_percent
                    .entry(c.to_string())
                    .or_insert((share, blocked, seen_c));
            }
        }
    }
    println!(
        "ingest (service core, fsync on): {total} exchanges in {ingest_secs:.2} s = {:.0} exchanges/s",
        total as f64 / ingest_secs
    );
    println!(
        "judgements: {judgements}, every {judge_every} exchanges, {:.3} s each on average",
        judge_secs / judgements.max(1) as f64
    );
    println!(
        "memory: idle accounts evicted after {} h of event time: at most {peak_resident} accounts in memory at a judgement (all accounts at the end: {}); {} evictions, {} read back, eviction {evict_secs:.2} s in all",
        file.serve.evict_idle_hours,
        svc.metrics.resident_accounts.get() + svc.metrics.cold_accounts.get(),
        svc.metrics.evictions.get(),
        svc.metrics.reloads.get(),
    );
    let mut names: Vec<&str> = campaign_accounts.keys().copied().collect();
    names.sort();
    let pct = |v: Option<&f64>| v.map_or("never".to_string(), |s| format!("{:.2}%", s * 100.0));
    for c in names {
        let (share2, blocked2, seen2) = at_two_percent.get(c).copied().unwrap_or((0.0, 0, 0));
        println!(
            "time to detect {c} ({} accounts, {} exchanges): half of the accounts seen so far blocked after {} of its exchanges; half of all its accounts after {}; at {:.1}% of its exchanges {blocked2} of the {seen2} accounts seen were blocked (target: half blocked before 2%)",
            campaign_accounts[c],
            campaign_exchanges[c],
            pct(half_seen.get(c)),
            pct(half_all.get(c)),
            share2 * 100.0,
        );
    }
    let table = svc.judge_now();
    // Agreement with batch `analyze` on the same files.
    let out = dir.path().join("batch");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let inputs = dg_engine::Inputs {
            exchanges: vec![root.join("exchanges")],
            accounts: vec![root.join("accounts.parquet")],
            model_releases: vec![root.join("model_releases.parquet")],
            labels: Vec::new(),
        };
        let diag = Arc::new(Diagnostics::new(out.join("q.jsonl")));
        let engine = dg_engine::Engine::open(&inputs, Default::default(), diag).unwrap();
        dg_detect::analyze(
            &engine,
            &dg_detect::Config::default(),
            &out,
            &Default::default(),
            |_| {},
        )
        .await
        .unwrap();
    });
    let batch = dg_detect::eval::read_result(&out).unwrap();
    let agree = batch
        .iter()
        .filter(|(id, r)| {
            table.accounts.get(*id).is_some_and(|a| {
                a.verdict.as_str() == r.verdict
                    && a.campaign.clone().unwrap_or_default() == r.campaign
            })
        })
        .count();
    println!(
        "agreement with batch analyze after the replay: {agree} of {} accounts ({:.2}%; target >= 99%)",
        batch.len(),
        100.0 * agree as f64 / batch.len().max(1) as f64
    );
    svc.checkpoint().unwrap();
    let cp = std::fs::metadata(dir.path().join("state").join("checkpoint.bin"))
        .unwrap()
        .len();
    let size = |prefix: &str| -> f64 {
        std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum::<u64>() as f64
            / 1e6
    };
    println!(
        "state: checkpoint {:.1} MB ({} accounts and {} of {total} request ids in memory); on disk: idle accounts {:.1} MB ({}), past days' request ids {:.1} MB",
        cp as f64 / 1e6,
        svc.metrics.resident_accounts.get(),
        svc.metrics.resident_request_ids.get(),
        size("cold-"),
        svc.metrics.cold_accounts.get(),
        size("ids-"),
    );

    // 2. HTTP: ingestion of Arrow IPC batches and decisions at a fixed rate.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fresh = open(&root, &dir.path().join("state-http"), &file);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = dg_serve::http::router(fresh.clone(), None);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = format!("http://{addr}");
        let client = reqwest::Client::new();
        let bodies: Vec<Vec<u8>> = batches
            .chunks(2)
            .map(|c| {
                ipc(&concat_batches(&c[0].schema(), c).unwrap())
            })
            .collect();
        let bodies = Arc::new(bodies);
        let t0 = Instant::now();
        let mut workers = Vec::new();
        for k in 0..2 {
            let (client, base, bodies) = (client.clone(), base.clone(), bodies.clone());
            workers.push(tokio::spawn(async move {
                for body in bodies.iter().skip(k).step_by(2) {
                    let r = client
                        .post(format!("{base}/v1/events"))
                        .header("content-type", dg_serve::http::ARROW_STREAM)
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "ingest over HTTP (Arrow IPC, 2000-row batches, 2 clients, fsync on): {total} exchanges in {secs:.2} s = {:.0} exchanges/s",
            total as f64 / secs
        );
        fresh.judge_now();

        // Decisions: campaign accounts, benign accounts and strangers on campaign addresses.
        let mut queries: Vec<String> = Vec::new();
        let known: Vec<&String> = table.accounts.keys().collect();
        let attackers: HashSet<&String> = labels.keys().collect();
        for (i, id) in known.iter().enumerate() {
            let addr = if attackers.contains(id) { "198.51.100.7" } else { "203.0.113.5" };
            queries.push(format!(
                r#"{{"account":"{id}","key":"key-{i}","address":"{addr}","user_agent":"sdk/1.0","ja4":"t13d1516h2_8daaf6152771_b186095e22b6","model":"m-1"}}"#
            ));
            queries.push(format!(r#"{{"account":"new-{i}","address":"{addr}"}}"#));
        }
        let queries = Arc::new(queries);
        // A wrk-like generator: raw keep-alive connections, requests written ready-made, so
        // that the load generator sharing the 2 cores costs little next to the service.
        let requests: Arc<Vec<Vec<u8>>> = Arc::new(
            queries
                .iter()
                .map(|q| {
                    format!(
                        "POST /v1/decide HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{q}",
                        q.len()
                    )
                    .into_bytes()
                })
                .collect(),
        );
        let connections = 32usize;
        let per_conn = rate / connections as f64;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..connections {
            let requests = requests.clone();
            tasks.push(tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
                conn.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let (mut lat, mut lag) = (Vec::new(), Vec::new());
                let mut errors = 0u64;
                let mut n = 0u64;
                loop {
                    let due = Duration::from_secs_f64(
                        (n as f64 + c as f64 / connections as f64) / per_conn,
                    );
                    if due.as_secs_f64() >= seconds {
                        break;
                    }
                    let now = t0.elapsed();
                    if due > now {
                        tokio::time::sleep(due - now).await;
                    }
                    let sent = t0.elapsed();
                    let req = &requests[(n as usize * connections + c) % requests.len()];
                    conn.write_all(req).await.unwrap();
                    // Read one response: headers, then content-length bytes of body.
                    let mut have = 0usize;
                    let ok = loop {
                        let k = conn.read(&mut buf[have..]).await.unwrap();
                        assert!(k > 0, "connection closed");
                        have += k;
                        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n")
                        else {
                            continue;
                        };
                        let head = std::str::from_utf8(&buf[..end]).unwrap().to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while have < end + 4 + len {
                            have += conn.read(&mut buf[have..]).await.unwrap();
                        }
                        break head.starts_with("http/1.1 200");
                    };
                    let done = t0.elapsed();
                    if ok {
                        lat.push((done - sent).as_secs_f64());
                        lag.push((done.saturating_sub(due)).as_secs_f64());
                    } else {
                        errors += 1;
                    }
                    n += 1;
                }
                (lat, lag, errors)
            }));
        }
        let (mut lat, mut lag) = (Vec::new(), Vec::new());
        let mut errors = 0;
        for t in tasks {
            let (l, g, e) = t.await.unwrap();
            lat.extend(l);
            lag.extend(g);
            errors += e;
        }
        let wall = t0.elapsed().as_secs_f64();
        lat.sort_by(f64::total_cmp);
        lag.sort_by(f64::total_cmp);
        println!(
            "decide over HTTP: {} requests in {wall:.1} s = {:.0}/s (target rate {rate:.0}/s, {connections} keep-alive connections, {errors} errors); latency from send: p50 {:.3} ms, p99 {:.3} ms (target <= 1 ms), p99.9 {:.3} ms, max {:.3} ms; from the schedule (includes the generator's 1 ms timer): p99 {:.3} ms",
            lat.len(),
            lat.len() as f64 / wall,
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.99) * 1e3,
            percentile(&lat, 0.999) * 1e3,
            lat.last().copied().unwrap_or(f64::NAN) * 1e3,
            percentile(&lag, 0.99) * 1e3,
        );
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < Duration::from_secs(1) {
            for q in queries.iter().take(1000) {
                let q: dg_serve::decide::Query = serde_json::from_str(q).unwrap();
                std::hint::black_box(fresh.decide(&q));
                n += 1;
            }
        }
        println!(
            "decide in-process (lookup only): {:.2} µs per decision",
            t0.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    });
}
