//! `distillguard serve` and `replay` as processes: a service killed with SIGKILL in the middle
//! of a replay, restarted on its state directory, ends with exactly the state of a service
//! that was never interrupted (nothing lost, nothing counted twice).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
}

/// A minimal HTTP/1.1 client: (status, body). `headers`: extra lines, each ending in \r\n.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{headers}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    Ok((status, body))
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    request(addr, method, path, "", body)
}

/// Simulates the `small` scenario at `scale` into `DIR/data`.
fn simulate(dir: &Path, scale: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    let ok = bin()
        .args(["simulate", "--scenario", "small", "--scale", scale, "--out"])
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    data
}

/// A real client or server the test needs, from the environment scripts/test.sh sets up;
/// `None` (skip) only when the run does not require them.
fn required(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) => {
            assert!(
                std::env::var("DG_REQUIRE_CLIENTS").is_err(),
                "{var} not set (scripts/test.sh sets up nats-server and nginx)"
            );
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

fn json(addr: &str, method: &str, path: &str) -> serde_json::Value {
    let (status, body) = http(addr, method, path, "").unwrap();
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(state: &Path, addr: &str, config: &Path, data: &Path) -> Server {
    let child = bin()
        .args(["serve", "--listen", addr, "--config"])
        .arg(config)
        .arg("--state")
        .arg(state)
        .arg("--accounts")
        .arg(data.join("accounts.parquet"))
        .arg("--releases")
        .arg(data.join("model_releases.parquet"))
        .env_remove("DISTILLGUARD_TOKEN")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while http(addr, "GET", "/healthz", "").is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn replay(data: &Path, addr: &str, dir: &Path) -> Child {
    bin()
        .arg("replay")
        .arg(data)
        .args(["--to", &format!("http://{addr}"), "--batch-rows", "300"])
        .arg("--quarantine")
        .arg(dir.join("replay-q.jsonl"))
        .env_remove("DISTILLGUARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every account's verdict and exchange count after a final judgement.
fn final_state(addr: &str, accounts: &[String]) -> (u64, BTreeMap<String, (String, u64)>) {
    json(addr, "POST", "/v1/judge");
    let exchanges = json(addr, "GET", "/healthz")["exchanges"].as_u64().unwrap();
    let mut out = BTreeMap::new();
    for id in accounts {
        let (status, body) = http(addr, "GET", &format!("/v1/accounts/{id}"), "").unwrap();
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            out.insert(
                id.clone(),
                (
                    v["verdict"].as_str().unwrap().to_string(),
                    v["exchanges"].as_u64().unwrap(),
                ),
            );
        }
    }
    (exchanges, out)
}

#[test]
fn killed_mid_replay_resumes_with_nothing_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "0.15");
    let truth = std::fs::read_to_string(data.join("truth.csv")).unwrap();
    let accounts: Vec<String> = truth
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().map(str::to_string))
        .collect();
    // Frequent checkpoints, so the kill lands between and during them.
    let config = dir.path().join("dg.toml");
    std::fs::write(
        &config,
        "[serve]\ncheckpoint_seconds = 0.3\nrelink_seconds = 0.5\nfsync = false\n",
    )
    .unwrap();

    // Reference: never interrupted.
    let addr = free_port();
    let reference = {
        let _s = serve(&dir.path().join("state-ref"), &addr, &config, &data);
        assert!(replay(&data, &addr, dir.path()).wait().unwrap().success());
        final_state(&addr, &accounts)
    };
    assert!(reference.0 > 10_000, "{} exchanges", reference.0);

    // Killed with SIGKILL at about a third, restarted on the same state directory while the
    // replay keeps re-sending what was not acknowledged.
    let addr = free_port();
    let state = dir.path().join("state-crash");
    let mut server = serve(&state, &addr, &config, &data);
    let mut rp = replay(&data, &addr, dir.path());
    let t0 = Instant::now();
    loop {
        let n = http(&addr, "GET", "/healthz", "")
            .ok()
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["exchanges"].as_u64())
            .unwrap_or(0);
        if n > reference.0 / 3 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "replay too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    assert!(
        rp.try_wait().unwrap().is_none(),
        "the replay must still be running when the service dies"
    );
    std::thread::sleep(Duration::from_millis(300));
    let _server = serve(&state, &addr, &config, &data);
    assert!(rp.wait().unwrap().success(), "replay gave up");
    let resumed = final_state(&addr, &accounts);
    assert_eq!(resumed.0, reference.0, "exchanges counted");
    assert_eq!(resumed.1, reference.1, "per-account verdicts and counts");
}

/// The nginx config of the test: `auth_request` to the service in front of a stub model
/// upstream (the same locations as docs/serve.md).
fn nginx_conf(dir: &Path, port: &str, upstream: &str, service: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {upstream};
        location / {{ return 200 "model output\n"; }}
    }}
    server {{
        listen {port};
        location / {{
            auth_request /_distillguard;
            auth_request_set $dg_action $upstream_http_x_distillguard_action;
            error_page 500 = @distillguard_error;
            proxy_pass http://{upstream};
        }}
        location = /_distillguard {{
            internal;
            proxy_pass http://{service}/v1/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Account-Id $http_x_account_id;
            proxy_set_header X-Api-Key $http_x_api_key;
            proxy_set_header X-Real-IP $remote_addr;
        }}
        location @distillguard_error {{
            if ($dg_action = "throttle") {{ return 429; }}
            return 500;
        }}
    }}
}}
"#
    )
}

fn get_as(addr: &str, account: &str) -> (u16, String) {
    request(
        addr,
        "GET",
        "/v1/chat",
        &format!("x-account-id: {account}\r\n"),
        "",
    )
    .unwrap()
}

#[test]
fn nginx_auth_request_refuses_a_blocked_account_and_serves_a_benign_one() {
    let Some(nginx) = required("DG_NGINX") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "0.15");
    let config = dir.path().join("dg.toml");
    std::fs::write(&config, "[serve]\nfsync = false\n").unwrap();
    let service = free_port();
    let _s = serve(&dir.path().join("state"), &service, &config, &data);
    assert!(
        replay(&data, &service, dir.path())
            .wait()
            .unwrap()
            .success()
    );
    json(&service, "POST", "/v1/judge");
    // A blocked campaign account and an allowed benign one, from the service's own view.
    let campaigns = json(&service, "GET", "/v1/campaigns");
    let blocked = campaigns["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["account_ids"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .find(|id| json(&service, "GET", &format!("/v1/accounts/{id}"))["action"] == "block")
        .expect("a blocked account");
    let truth = std::fs::read_to_string(data.join("truth.csv")).unwrap();
    let benign = truth
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("chat"))
        .map(|l| l.split(',').next().unwrap().to_string())
        .find(|id| {
            http(&service, "GET", &format!("/v1/accounts/{id}"), "")
                .is_ok_and(|(s, b)| s == 200 && b.contains("\"action\":\"allow\""))
        })
        .expect("an allowed chat account");

    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let (port, upstream) = (free_port(), free_port());
    let conf = nginx_dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&nginx_dir, &port, &upstream, &service)).unwrap();
    let mut child = Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&nginx_dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let t0 = Instant::now();
    while TcpStream::connect(&port).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("nginx exited {status}: {err}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nginx did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _nginx = Kill(child);
    let (status, body) = get_as(&port, &benign);
    assert_eq!(
        (status, body.as_str()),
        (200, "model output\n"),
        "benign account"
    );
    let (status, _) = get_as(&port, &blocked);
    assert_eq!(status, 403, "blocked account {blocked}");
}

#[test]
fn replay_through_nats_jetstream_reaches_the_service() {
    let Some(url) = required("DG_NATS_URL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "0.1");
    // Names of this run only, so runs sharing a server never meet.
    let tag = format!("cli{}", std::process::id());
    let config = dir.path().join("dg.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\nfsync = false\n[serve.nats]\nurl = \"{url}\"\nstream = \"DG_{tag}\"\n\
             subjects = [\"{tag}.>\"]\ndecisions_bucket = \"dg_{tag}\"\n"
        ),
    )
    .unwrap();
    let addr = free_port();
    let _s = serve(&dir.path().join("state"), &addr, &config, &data);
    let ok = bin()
        .arg("replay")
        .arg(&data)
        .args(["--to", &url, "--subject", &format!("{tag}.replay")])
        .arg("--quarantine")
        .arg(dir.path().join("q.jsonl"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let files = std::fs::read_dir(data.join("exchanges")).unwrap().count();
    assert!(files > 0);
    // Every exchange arrives once through the stream.
    let expected: u64 = {
        let out = bin()
            .args([
                "sql",
                "SELECT count(*) AS n FROM exchanges",
                "--format",
                "csv",
                "--exchanges",
            ])
            .arg(data.join("exchanges"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let t0 = Instant::now();
    loop {
        let n = json(&addr, "GET", "/healthz")["exchanges"]
            .as_u64()
            .unwrap();
        if n == expected {
            break;
        }
        assert!(n < expected, "{n} counted, {expected} sent");
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{n} of {expected} arrived"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
