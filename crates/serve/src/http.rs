//! The HTTP API (axum).
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /v1/events` | token | exchange records (JSON array, JSON Lines, or an Arrow IPC stream) → counts, refused records |
//! | `POST /v1/decide` | – | `{account, key, address, user_agent, ja4, model, prompt}` → decision |
//! | `GET /v1/auth` | – | nginx `auth_request`: decision from headers → 204 / 401 / 403 / 429 |
//! | `GET /v1/accounts/{id}` | token | an account's latest judgement |
//! | `GET /v1/campaigns` | token | campaigns of the latest judgement |
//! | `POST /v1/judge` | token | judge all accounts now |
//! | `POST /v1/checkpoint` | token | checkpoint now |
//! | `GET /metrics` | – | Prometheus text format |
//! | `GET /healthz` | – | liveness and figures |

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::Overload;
use crate::decide::{Action, Decision, Query};
use crate::service::{ServeError, Service};

#[derive(Clone)]
struct App {
    svc: Arc<Service>,
    token: Option<Arc<str>>,
    in_flight: Arc<Semaphore>,
}

/// The router. `token`: the bearer token for ingest and admin routes (`None`: open).
pub fn router(svc: Arc<Service>, token: Option<String>) -> Router {
    let app = App {
        in_flight: Arc::new(Semaphore::new(svc.serve.max_in_flight.max(1))),
        token: token.map(Into::into),
        svc: svc.clone(),
    };
    let protected = Router::new()
        .route("/v1/events", post(events))
        .route("/v1/accounts/{id}", get(account))
        .route("/v1/campaigns", get(campaigns))
        .route("/v1/judge", post(judge))
        .route("/v1/checkpoint", post(checkpoint))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    Router::new()
        .route("/v1/decide", post(decide))
        .route("/v1/auth", get(auth))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .merge(protected)
        .layer(middleware::from_fn_with_state(app.clone(), limit_in_flight))
        .layer(DefaultBodyLimit::max(svc.serve.max_body_bytes))
        .with_state(app)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        match self {
            ServeError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
            ServeError::Storage(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

async fn require_token(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer …)",
            );
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Overload: beyond `max_in_flight` requests at once, decisions get the configured
/// fail-open or fail-closed answer at once and everything else a 503.
async fn limit_in_flight(State(app): State<App>, req: Request, next: Next) -> Response {
    let Ok(_permit) = app.in_flight.clone().try_acquire_owned() else {
        app.svc.metrics.overloaded.inc();
        let path = req.uri().path();
        let closed = app.svc.serve.overload == Overload::FailClosed;
        let action = if closed { Action::Block } else { Action::Allow };
        let mut resp = match path {
            "/v1/auth" => auth_response(action),
            "/v1/decide" => axum::Json(Decision {
                action,
                score: 0.0,
                campaign: None,
                reasons: vec!["service overloaded".into()],
                ttl: 1.0,
            })
            .into_response(),
            _ => {
                let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "overloaded, retry later");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        };
        resp.headers_mut()
            .insert("x-distillguard-overloaded", HeaderValue::from_static("1"));
        return resp;
    };
    next.run(req).await
}

/// Content type of an Arrow IPC stream (the fast path); anything else is read as JSON.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

async fn events(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let svc = app.svc.clone();
    let arrow = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(ARROW_STREAM));
    let work = move || {
        if arrow {
            svc.ingest_arrow(&body)
        } else {
            svc.ingest_json(&body)
        }
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn timed_decide(app: &App, q: &Query) -> Decision {
    let t0 = Instant::now();
    let d = app.svc.decide(q);
    app.svc
        .metrics
        .decide_seconds
        .observe(t0.elapsed().as_secs_f64());
    app.svc.metrics.decision(d.action);
    d
}

async fn decide(State(app): State<App>, body: Bytes) -> Response {
    let q: Query = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"account\": …, \"key\", \"address\", \"user_agent\", \"ja4\", \"model\", \"prompt\"}}: {e}"
                ),
            );
        }
    };
    axum::Json(timed_decide(&app, &q)).into_response()
}

fn auth_response(a: Action) -> Response {
    let status = match a {
        Action::Allow => StatusCode::NO_CONTENT,
        Action::Challenge => StatusCode::UNAUTHORIZED,
        Action::Block => StatusCode::FORBIDDEN,
        Action::Throttle => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut r = status.into_response();
    r.headers_mut().insert(
        "x-distillguard-action",
        HeaderValue::from_static(a.as_str()),
    );
    r
}

/// nginx `auth_request`: the decision from the original request's headers.
async fn auth(State(app): State<App>, headers: HeaderMap) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let Some(account) = h("x-account-id") else {
        return error(StatusCode::FORBIDDEN, "no X-Account-Id header");
    };
    let address = h("x-real-ip").or_else(|| {
        h("x-forwarded-for").map(|v| v.split(',').next().unwrap_or("").trim().to_string())
    });
    let q = Query {
        account,
        key: h("x-api-key"),
        address,
        user_agent: h("user-agent"),
        ja4: h("x-ja4"),
        model: h("x-model"),
        prompt: None,
    };
    let d = timed_decide(&app, &q);
    let mut r = auth_response(d.action);
    if let Some(c) = d
        .campaign
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        r.headers_mut().insert("x-distillguard-campaign", c);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", d.score)) {
        r.headers_mut().insert("x-distillguard-score", v);
    }
    r
}

async fn account(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.svc.table().accounts.get(&id) {
        Some(a) => axum::Json(a).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no judgement for account {id:?} yet"),
        ),
    }
}

async fn campaigns(State(app): State<App>) -> Response {
    let t = app.svc.table();
    axum::Json(json!({
        "judged_at": t.judged_at,
        "exchanges": t.exchanges,
        "campaigns": t.campaigns,
    }))
    .into_response()
}

async fn judge(State(app): State<App>) -> Response {
    let svc = app.svc.clone();
    match tokio::task::spawn_blocking(move || svc.judge_now()).await {
        Ok(t) => axum::Json(json!({
            "accounts": t.accounts.len(),
            "campaigns": t.campaigns.len(),
            "exchanges": t.exchanges,
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn checkpoint(State(app): State<App>) -> Response {
    let svc = app.svc.clone();
    match tokio::task::spawn_blocking(move || svc.checkpoint()).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.svc.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(app): State<App>) -> Response {
    let (exchanges, judgements) = app.svc.counts();
    let t = app.svc.table();
    let failed = app.svc.failed();
    let status = if failed {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({
            "status": if failed { "failed: a log write failed, restart to recover" } else { "ok" },
            "exchanges": exchanges,
            "judgements": judgements,
            "accounts_judged": t.accounts.len(),
            "campaigns": t.campaigns.len(),
        })),
    )
        .into_response()
}
