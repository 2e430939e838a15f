//! The online service against the batch pipeline on the same simulated data: same verdicts,
//! decisions that block campaign accounts and allow benign ones, the HTTP API with its token,
//! refusals and metrics, and recovery from the state directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use dg_contract::Diagnostics;
use dg_detect::verdict::Verdict;
use dg_detect::{Config, analyze};
use dg_engine::{Engine, Inputs};
use dg_serve::ServeFile;
use dg_serve::decide::{Action, Query};

mod common;
use common::{exchange_batches, ipc, open, simulate};

fn inputs(root: &Path) -> Inputs {
    Inputs {
        exchanges: vec![root.join("exchanges")],
        accounts: vec![root.join("accounts.parquet")],
        model_releases: vec![root.join("model_releases.parquet")],
        labels: Vec::new(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn quiet() -> ServeFile {
    let mut f = ServeFile::default();
    f.serve.fsync = false;
    f
}

#[test]
fn online_verdicts_equal_batch_verdicts() {
    let data = simulate("small", 0.4, Some(4242));
    // Batch.
    let out = data.root.join("batch");
    runtime().block_on(async {
        let diag = Arc::new(Diagnostics::new(out.join("q.jsonl")));
        let engine = Engine::open(&inputs(&data.root), Default::default(), diag).unwrap();
        analyze(
            &engine,
            &Config::default(),
            &out,
            &Default::default(),
            |_| {},
        )
        .await
        .unwrap();
    });
    let batch = dg_detect::eval::read_result(&out).unwrap();
    // Online: the same exchanges as event batches, in file order, each sent twice.
    let state = data.root.join("state");
    let svc = open(&data.root, &state, &quiet());
    let batches = exchange_batches(&data.root, 8192);
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut accepted = 0;
    let mut duplicates = 0;
    for b in batches.iter().chain(&batches) {
        let n = svc.ingest_batch(b).unwrap();
        accepted += n.accepted;
        duplicates += n.duplicates;
    }
    assert_eq!(accepted as usize, total);
    assert_eq!(duplicates as usize, total);
    let table = svc.judge_now();
    assert_eq!(table.accounts.len(), batch.len());
    let agree = batch
        .iter()
        .filter(|(id, r)| {
            table.accounts.get(*id).is_some_and(|a| {
                a.verdict.as_str() == r.verdict
                    && a.campaign.clone().unwrap_or_default() == r.campaign
            })
        })
        .count();
    assert_eq!(agree, batch.len(), "online and batch verdicts differ");
    assert!(!table.campaigns.is_empty());

    // Decisions: campaign accounts are stopped, benign ones served.
    let labels: HashMap<String, String> = runtime()
        .block_on(dg_detect::eval::read_labels(
            &[data.root.join("labels.parquet")],
            Path::new("/dev/null"),
        ))
        .unwrap()
        .0;
    let (mut stopped, mut attackers, mut benign_stopped, mut benign) = (0, 0, 0, 0);
    for (id, a) in &table.accounts {
        let d = svc.decide(&Query {
            account: id.clone(),
            ..Query::default()
        });
        let is_attack = labels.get(id).is_some_and(|c| !c.is_empty());
        if is_attack {
            attackers += 1;
            stopped += (d.action == Action::Block || d.action == Action::Challenge) as usize;
        } else {
            benign += 1;
            benign_stopped += (d.action != Action::Allow) as usize;
        }
        // The action follows the verdict: every `attack` is stopped, with its reasons.
        if a.verdict == Verdict::Attack {
            assert!(
                matches!(d.action, Action::Block | Action::Challenge),
                "{id}"
            );
            assert!(!d.reasons.is_empty(), "{id}: a block needs reasons");
            assert!(d.campaign.is_some());
        }
    }
    // This scenario is tiny (a few dozen campaign accounts, some with a handful of
    // exchanges): detection quality is held at full size elsewhere; here the service must
    // stop nearly all of them and no benign account.
    assert!(attackers > 0 && benign > 0);
    assert!(
        stopped as f64 >= 0.9 * attackers as f64,
        "{stopped}/{attackers} attackers stopped"
    );
    assert_eq!(benign_stopped, 0, "benign accounts stopped");

    // A checkpoint plus more log, then a fresh process on the same directory: same state.
    svc.checkpoint().unwrap();
    let (exchanges, _) = svc.counts();
    let before: HashMap<String, (Verdict, u64)> = table
        .accounts
        .iter()
        .map(|(k, v)| (k.clone(), (v.verdict, v.exchanges)))
        .collect();
    drop(svc);
    let again = open(&data.root, &state, &quiet());
    assert!(again.recovered.from_checkpoint);
    assert_eq!(again.counts().0, exchanges);
    let t2 = again.table();
    let after: HashMap<String, (Verdict, u64)> = t2
        .accounts
        .iter()
        .map(|(k, v)| (k.clone(), (v.verdict, v.exchanges)))
        .collect();
    assert_eq!(before, after);
    // Re-sending everything after recovery counts nothing twice.
    let n = again.ingest_batch(&batches[0]).unwrap();
    assert_eq!(n.accepted, 0);
}

#[test]
fn http_api_token_refusals_and_metrics() {
    let data = simulate("small", 0.1, Some(99));
    let state = data.root.join("state");
    let svc = open(&data.root, &state, &quiet());
    let rt = runtime();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = dg_serve::http::router(svc.clone(), Some("s3cret".into()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let base = format!("http://{addr}");
        let c = reqwest::Client::new();

        let good = r#"{"ts":"2026-03-01T10:00:00Z","request_id":"r-1","account_id":"acct-x","model":"m-1","client_ip":"203.0.113.9","messages":[{"role":"user","content":"Explain borrow checking."}],"input_tokens":12,"output_tokens":300,"status":200}"#;
        let bad = r#"{"ts":"yesterday","request_id":"r-2","account_id":"acct-x","model":"m-1","client_ip":"203.0.113.9","messages":[],"input_tokens":1,"output_tokens":1,"status":200}"#;
        let body = format!("{good}\n{bad}\n{good}\n");

        // Ingest needs the token.
        let r = c.post(format!("{base}/v1/events")).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let r = c
            .post(format!("{base}/v1/events"))
            .bearer_auth("s3cret")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rep: serde_json::Value = r.json().await.unwrap();
        assert_eq!(rep["received"], 3);
        assert_eq!(rep["accepted"], 1);
        assert_eq!(rep["duplicates"], 1);
        assert_eq!(rep["bad"], 1);
        assert_eq!(rep["errors"][0]["index"], 1);
        assert_eq!(rep["errors"][0]["reason"], "bad_timestamp");
        // The refused record is in the quarantine, unchanged.
        let q = std::fs::read_dir(state.join("quarantine"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<String>();
        assert!(q.contains("yesterday"), "quarantine: {q}");

        // A JSON array works too; a body that is not JSON is a 400 with a reason.
        let r = c
            .post(format!("{base}/v1/events"))
            .bearer_auth("s3cret")
            .body(format!("[{}]", good.replace("r-1", "r-3")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap()["accepted"], 1);
        let r = c
            .post(format!("{base}/v1/events"))
            .bearer_auth("s3cret")
            .body("[not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Arrow IPC: the simulator's own batches.
        let batch = exchange_batches(&data.root, 8192).remove(0);
        let r = c
            .post(format!("{base}/v1/events"))
            .bearer_auth("s3cret")
            .header("content-type", dg_serve::http::ARROW_STREAM)
            .body(ipc(&batch))
            .send()
            .await
            .unwrap();
        let rep: serde_json::Value = r.json().await.unwrap();
        assert_eq!(rep["accepted"], batch.num_rows());

        // Judge, then decide and auth.
        let r = c.post(format!("{base}/v1/judge")).bearer_auth("s3cret").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let d: serde_json::Value = c
            .post(format!("{base}/v1/decide"))
            .body(r#"{"account":"acct-x","address":"203.0.113.9"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["action"], "allow");
        assert!(d["ttl"].as_f64().unwrap() > 0.0);
        let r = c
            .get(format!("{base}/v1/auth"))
            .header("x-account-id", "acct-x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = c.get(format!("{base}/v1/auth")).send().await.unwrap();
        assert_eq!(r.status(), 403, "no account header: refused");
        let r = c
            .post(format!("{base}/v1/decide"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        // Admin reads need the token; unknown accounts are a 404.
        let r = c.get(format!("{base}/v1/accounts/acct-x")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let a: serde_json::Value = c
            .get(format!("{base}/v1/accounts/acct-x"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(a["exchanges"], 2);
        let r = c
            .get(format!("{base}/v1/accounts/nobody"))
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        let m = c.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(m.contains("distillguard_events_total"), "{m}");
        assert!(m.contains("distillguard_bad_events_total 1"), "{m}");
        assert!(m.contains("distillguard_decisions_total{action=\"allow\"} 2"), "{m}");
        let h: serde_json::Value = c
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["status"], "ok");
    });
}

#[test]
fn overload_answers_with_the_configured_decision() {
    let data = simulate("small", 0.05, Some(5));
    for (overload, status) in [("fail-open", 204), ("fail-closed", 403)] {
        let state = data.root.join(format!("state-{overload}"));
        let mut file = quiet();
        file.serve.max_in_flight = 1;
        file.serve.overload = toml::from_str::<toml::Table>(&format!("o = \"{overload}\""))
            .unwrap()["o"]
            .clone()
            .try_into()
            .unwrap();
        let svc = open(&data.root, &state, &file);
        let rt = runtime();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = dg_serve::http::router(svc.clone(), None);
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let base = format!("http://{addr}");
            let c = reqwest::Client::new();
            // Hold the only slot with a request whose body is still arriving.
            use tokio::io::AsyncWriteExt;
            let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
            slow.write_all(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n[")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let r = c
                .get(format!("{base}/v1/auth"))
                .header("x-account-id", "anyone")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{overload}");
            assert_eq!(r.headers()["x-distillguard-overloaded"], "1");
            let r = c.get(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 503);
            drop(slow);
        });
    }
}
