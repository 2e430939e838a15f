//! NATS JetStream with a real `nats-server` (started by scripts/test.sh on 127.0.0.1, URL in
//! DG_NATS_URL): events consumed from a durable consumer with explicit acks, decisions
//! written to a key-value bucket, a restarted service resuming without counting twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use dg_serve::ServeFile;
use dg_serve::config::NatsConfig;
use dg_serve::http::ARROW_STREAM;

mod common;
use common::{exchange_batches, ipc, open, simulate};

fn nats_url() -> Option<String> {
    match std::env::var("DG_NATS_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            assert!(
                std::env::var("DG_REQUIRE_CLIENTS").is_err(),
                "DG_NATS_URL not set (scripts/test.sh starts nats-server)"
            );
            eprintln!("skipped: DG_NATS_URL not set");
            None
        }
    }
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn jetstream_events_in_decisions_out() {
    let Some(url) = nats_url() else { return };
    let data = simulate("small", 0.1, Some(77));
    let root = &data.root;
    let batches = exchange_batches(root, 150);
    let total: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();

    // Names of our own, so runs against one server never meet.
    let tag = format!(
        "t{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let mut file = ServeFile::default();
    file.serve.fsync = false;
    file.serve.nats = NatsConfig {
        url: url.clone(),
        stream: format!("DG_{tag}"),
        subjects: vec![format!("dgtest.{tag}.>")],
        consumer: "distillguard".into(),
        decisions_bucket: format!("dg_{tag}"),
    };
    let state = root.with_file_name("state");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let svc = open(root, &state, &file);
    rt.block_on(async {
        let (s, cfg) = (svc.clone(), file.serve.nats.clone());
        let task = tokio::spawn(async move {
            let r = dg_serve::nats::run(s, cfg).await;
            if let Err(e) = &r {
                eprintln!("NATS task: {e}");
            }
            r
        });
        let client = async_nats::connect(&url).await.unwrap();
        let js = jetstream::new(client);
        // Wait for the service to create its stream, then publish every batch (Arrow IPC),
        // one of them twice, a message that is not records at all and a JSON message with one
        // bad record.
        let stream_name = file.serve.nats.stream.clone();
        let t0 = Instant::now();
        while js.get_stream(&stream_name).await.is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no stream");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let subject = format!("dgtest.{tag}.gateway-1");
        for b in batches.iter().chain(std::iter::once(&batches[0])) {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Content-Type", ARROW_STREAM);
            js.publish_with_headers(subject.clone(), h, ipc(b).into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        js.publish(subject.clone(), "[not json".into())
            .await
            .unwrap()
            .await
            .unwrap();
        js.publish(subject.clone(), r#"{"ts":"not a time"}"#.into())
            .await
            .unwrap()
            .await
            .unwrap();
        let published = batches.len() as u64 + 3;
        wait_for("all events", 120, || {
            assert!(!task.is_finished(), "the NATS task stopped");
            svc.stream_position() >= published
        })
        .await;
        assert_eq!(svc.counts().0, total, "each exchange counted once");
        // The bad record and the message that held no records at all, both quarantined.
        assert_eq!(svc.metrics.bad_events.get(), 2);
        let quarantined: String = std::fs::read_dir(state.join("quarantine"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert!(quarantined.contains("not a time"), "{quarantined}");
        assert!(quarantined.contains("[not json"), "{quarantined}");

        // Decisions land in the bucket after a judgement.
        let table = svc.judge_now();
        let blocked: Vec<&String> = table
            .accounts
            .iter()
            .filter(|(_, a)| a.action == dg_serve::decide::Action::Block)
            .map(|(id, _)| id)
            .collect();
        assert!(!blocked.is_empty(), "the simulated campaigns are blocked");
        let kv = js
            .get_key_value(&file.serve.nats.decisions_bucket)
            .await
            .unwrap();
        let key = dg_serve::nats::kv_key(blocked[0]);
        let t0 = Instant::now();
        let entry = loop {
            if let Some(v) = kv.get(&key).await.unwrap() {
                break v;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "no decision in KV");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let v: serde_json::Value = serde_json::from_slice(&entry).unwrap();
        assert_eq!(v["action"], "block");
        assert!(!v["reasons"].as_array().unwrap().is_empty());
        task.abort();
        let _ = task.await;
        // Every task holding the service has stopped: the state directory is free again.
        wait_for("the service to be released", 20, || {
            Arc::strong_count(&svc) == 1
        })
        .await;
    });
    drop(svc);

    // Restart on the same state: the durable consumer resumes; re-published events count
    // nothing twice.
    let svc = open(root, &state, &file);
    assert_eq!(svc.counts().0, total);
    rt.block_on(async {
        let task = tokio::spawn(dg_serve::nats::run(svc.clone(), file.serve.nats.clone()));
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        let before = svc.stream_position();
        let mut h = async_nats::HeaderMap::new();
        h.insert("Content-Type", ARROW_STREAM);
        js.publish_with_headers(
            format!("dgtest.{tag}.gateway-2"),
            h,
            ipc(&batches[1]).into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        wait_for("the re-published batch", 60, || {
            svc.stream_position() > before
        })
        .await;
        assert_eq!(svc.counts().0, total);
        task.abort();
        let _ = js.delete_stream(&file.serve.nats.stream).await;
        let _ = js.delete_key_value(&file.serve.nats.decisions_bucket).await;
    });
}
