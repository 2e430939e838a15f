//! NATS JetStream: a durable pull consumer for exchange events and a key-value bucket of
//! decisions.
//!
//! A message holds exchange records as JSON Lines or a JSON array, or an Arrow IPC stream
//! when its `Content-Type` header says `application/vnd.apache.arrow.stream`. It is
//! acknowledged only once its events are in the write-ahead log; a message redelivered after
//! a crash is applied again, and the request-id set makes that count nothing twice. Records
//! that break the contract — or a message that holds no readable records at all — are
//! quarantined and the message is acknowledged (redelivery would not fix them); a storage failure leaves it unacknowledged, so it comes back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use futures::StreamExt;

use crate::config::NatsConfig;
use crate::decide::Action;
use crate::http::ARROW_STREAM;
use crate::service::{ServeError, Service};

#[derive(Debug, thiserror::Error)]
#[error("NATS {what}: {detail}")]
pub struct NatsError {
    what: &'static str,
    detail: String,
}

fn err(what: &'static str, e: impl std::fmt::Display) -> NatsError {
    NatsError {
        what,
        detail: e.to_string(),
    }
}

/// A KV key for an account id: NATS keys allow `[-/_=.a-zA-Z0-9]`.
pub fn kv_key(account: &str) -> String {
    account
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-/_=.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Connects, creates the stream, consumer and bucket if needed, then consumes events and
/// publishes decisions until the connection fails for good.
pub async fn run(svc: Arc<Service>, cfg: NatsConfig) -> Result<(), NatsError> {
    let client = async_nats::connect(cfg.url.as_str())
        .await
        .map_err(|e| err("connect", format!("{}: {e}", cfg.url)))?;
    let js = jetstream::new(client);
    let events = js
        .get_or_create_stream(stream::Config {
            name: cfg.stream.clone(),
            subjects: cfg.subjects.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| err("stream", e))?;
    let consumer: consumer::PullConsumer = events
        .get_or_create_consumer(
            &cfg.consumer,
            consumer::pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err("consumer", e))?;
    let bucket = match js.get_key_value(&cfg.decisions_bucket).await {
        Ok(b) => b,
        Err(_) => {
            // The stream behind a key-value bucket, created directly: the client's
            // `create_key_value` sends settings that Debian's nats-server 2.9 answers in a
            // form this client version cannot parse. Same layout, so any KV client reads it.
            js.get_or_create_stream(stream::Config {
                name: format!("KV_{}", cfg.decisions_bucket),
                subjects: vec![format!("$KV.{}.>", cfg.decisions_bucket)],
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| err("key-value bucket", e))?;
            js.get_key_value(&cfg.decisions_bucket)
                .await
                .map_err(|e| err("key-value bucket", e))?
        }
    };
    // Stops with this function, also when its future is dropped (aborted).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _publisher = AbortOnDrop(tokio::spawn(publish_decisions(svc.clone(), bucket)));
    consume(svc, consumer).await
}

async fn consume(svc: Arc<Service>, consumer: consumer::PullConsumer) -> Result<(), NatsError> {
    let mut messages = consumer.messages().await.map_err(|e| err("consume", e))?;
    while let Some(msg) = messages.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("NATS: {e}");
                continue;
            }
        };
        let position = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let arrow = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Content-Type"))
            .is_some_and(|v| v.as_str().starts_with(ARROW_STREAM));
        let payload = msg.payload.clone();
        let s = svc.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            if arrow {
                s.ingest_arrow_at(&payload, position)
            } else {
                s.ingest_json_at(&payload, position)
            }
        })
        .await
        .unwrap_or_else(|e| Err(ServeError::Storage(format!("ingest task failed: {e}"))));
        match outcome {
            Ok(report) => {
                if report.bad > 0 {
                    tracing::warn!(
                        "NATS message {position}: {} of {} records refused (quarantined)",
                        report.bad,
                        report.received
                    );
                }
                // A lost ack only means a redelivery, which counts nothing twice.
                if let Err(e) = msg.ack().await {
                    tracing::warn!("NATS ack of message {position}: {e}");
                }
            }
            Err(ServeError::BadRequest(m)) => {
                // Not exchange records at all: the whole message goes to the quarantine.
                tracing::error!("NATS message {position} refused: {m}");
                svc.quarantine_message(
                    &format!("NATS {}#{position}", msg.subject),
                    &m,
                    &msg.payload,
                );
                if let Err(e) = msg.ack().await {
                    tracing::warn!("NATS ack of message {position}: {e}");
                }
            }
            Err(e) => {
                // Storage trouble: leave it unacknowledged; JetStream redelivers it.
                tracing::error!("NATS message {position} not applied: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}

/// After each judgement, writes every decision other than `allow` to the bucket and deletes
/// the keys of accounts that are allowed again.
async fn publish_decisions(svc: Arc<Service>, bucket: kv::Store) {
    let mut published: HashMap<String, Action> = HashMap::new();
    let mut seen = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let j = svc.judgements();
        if j == seen {
            continue;
        }
        seen = j;
        let table = svc.table();
        let mut now: HashMap<String, Action> = HashMap::new();
        for (id, a) in &table.accounts {
            if a.action == Action::Allow {
                continue;
            }
            now.insert(id.clone(), a.action);
            if published.get(id) == Some(&a.action) {
                continue;
            }
            let value = serde_json::json!({
                "action": a.action,
                "score": a.score,
                "campaign": a.campaign,
                "reasons": a.reasons,
                "ttl": table.ttl,
            });
            if let Err(e) = bucket
                .put(kv_key(id), value.to_string().into_bytes().into())
                .await
            {
                tracing::warn!("NATS KV put {id}: {e}");
                now.remove(id);
            }
        }
        for (id, action) in &published {
            if !now.contains_key(id)
                && let Err(e) = bucket.delete(kv_key(id)).await
            {
                // Kept as published, so the delete is tried again after the next judgement.
                tracing::warn!("NATS KV delete {id}: {e}");
                now.insert(id.clone(), *action);
            }
        }
        published = now;
    }
}
