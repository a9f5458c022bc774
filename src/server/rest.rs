//! The REST routes of `shared/API.md`. Each handler parses, calls one broker
//! method and shapes the answer; none of them owns logic of its own. (One
//! concern, the REST door, route by route; the OpenAPI finishing touches are
//! in `openapi.rs`.)

use super::error::ApiError;
use super::extract::{
    command_id, lease_id, parse_json, parse_object, peer_id, question_id, read_body, CallerInfo,
    JsonBody, Params,
};
use super::openapi::Contract;
use super::AppState;
use crate::api::*;
use crate::broker::{SendOutcome, Sent};
use crate::error_code::ErrorCode;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};

/// Every REST route (streams live in `streams.rs`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/peers/discover", get(discover))
        .route("/peers/connect", post(connect))
        .route("/peers", get(list_peers))
        .route("/peers/{id}", get(get_peer).delete(disconnect))
        .route("/peers/{id}/heartbeat", post(heartbeat))
        .route("/peers/{id}/attention", put(set_attention))
        .route("/commands/send", post(send_command))
        .route("/commands", get(list_commands))
        .route("/commands/{id}", get(peer_commands).delete(cancel_command))
        .route("/commands/{id}/wait", get(wait_command))
        .route("/commands/{id}/ack", post(ack_command))
        .route("/commands/{id}/result", get(command_result))
        .route("/channels", get(list_channels))
        .route("/channels/{name}/send", post(channel_send))
        .route("/channels/{name}/messages", get(channel_messages))
        .route("/signals", get(list_signals))
        .route(
            "/signals/{name}",
            get(get_signal).post(emit_signal).delete(clear_signal),
        )
        .route("/signals/{name}/wait", get(wait_signal))
        .route("/questions", get(list_questions).post(ask))
        .route("/questions/{id}", get(get_question).delete(cancel_question))
        .route("/questions/{id}/wait", get(wait_question))
        .route("/questions/{id}/answer", post(answer_question))
        .route("/leases", get(list_leases).post(acquire_lease))
        .route("/leases/check", get(check_leases))
        .route("/leases/refusals", post(report_refused_edit))
        .route("/leases/{id}", get(get_lease).delete(release_lease))
        .route("/leases/{id}/renew", post(renew_lease))
        .route("/status", get(status))
        .route("/reset", post(reset))
        .route("/healthz", get(healthz))
}

type ApiResult<T> = Result<T, ApiError>;

#[utoipa::path(get, path = "/peers/discover", tag = "peers",
    responses((status = 200, description = "online peers and their roles", body = DiscoverResponse)))]
async fn discover(State(s): State<AppState>) -> Json<DiscoverResponse> {
    Json(s.broker.discover())
}

#[utoipa::path(post, path = "/peers/connect", tag = "peers", request_body = ConnectRequest,
    params(("X-Cipc-Peer-Key" = Option<String>, Header, description = "the key of the peer named by `id`, needed when that peer is protected")),
    responses((status = 201, description = "the peer and its secret key (shown only here)", body = ConnectResponse),
              (status = 400, body = ErrorResponse),
              (status = 403, description = "`id` names a protected peer and the key is missing or wrong", body = ErrorResponse)))]
async fn connect(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<ConnectRequest>,
) -> ApiResult<(StatusCode, Json<ConnectResponse>)> {
    let via = match req.via {
        Some(Via::Hook) => Via::Hook,
        _ => Via::Http,
    };
    let (peer, key) = s.broker.connect(req, via, &caller).await?;
    Ok((StatusCode::CREATED, Json(ConnectResponse { peer, key })))
}

#[utoipa::path(get, path = "/peers", tag = "peers",
    responses((status = 200, description = "every known peer", body = PeersResponse)))]
async fn list_peers(State(s): State<AppState>) -> Json<PeersResponse> {
    Json(PeersResponse {
        peers: s.broker.peers(),
    })
}

#[utoipa::path(get, path = "/peers/{id}", tag = "peers", params(("id" = String, Path, description = "peer id")),
    responses((status = 200, body = PeerResponse), (status = 404, body = ErrorResponse)))]
async fn get_peer(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PeerResponse>> {
    let id = peer_id(&id)?;
    Ok(Json(PeerResponse {
        peer: s.broker.peer(id)?,
    }))
}

#[utoipa::path(put, path = "/peers/{id}/attention", tag = "peers", params(("id" = String, Path, description = "peer id")),
    request_body = AttentionRequest,
    responses((status = 200, description = "the peer, with its attention set or cleared", body = PeerResponse),
              (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
async fn set_attention(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<AttentionRequest>,
) -> ApiResult<Json<PeerResponse>> {
    let id = peer_id(&id)?;
    Ok(Json(PeerResponse {
        peer: s.broker.set_attention(id, req.attention, &caller).await?,
    }))
}

#[utoipa::path(post, path = "/peers/{id}/heartbeat", tag = "peers", params(("id" = String, Path, description = "peer id")),
    responses((status = 200, body = PeerResponse), (status = 404, body = ErrorResponse)))]
async fn heartbeat(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
) -> ApiResult<Json<PeerResponse>> {
    let id = peer_id(&id)?;
    Ok(Json(PeerResponse {
        peer: s.broker.heartbeat(id, &caller).await?,
    }))
}

#[utoipa::path(delete, path = "/peers/{id}", tag = "peers",
    params(("id" = String, Path, description = "peer id"),
           ("forget" = Option<bool>, Query, description = "forget the peer for good (and its key), not only disconnect it; an offline peer may be forgotten by anyone, an online protected one needs its key")),
    responses((status = 200, description = "the peer, now offline (or, with forget, as it was last); its unacked commands are pending again and its open permission questions cancelled", body = PeerResponse),
              (status = 403, body = ErrorResponse),
              (status = 404, body = ErrorResponse)))]
async fn disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
) -> ApiResult<Json<PeerResponse>> {
    let id = peer_id(&id)?;
    let peer = if q.flag("forget")? {
        s.broker.forget(id, &caller).await?
    } else {
        s.broker.disconnect(id, &caller).await?
    };
    Ok(Json(PeerResponse { peer }))
}

#[utoipa::path(post, path = "/commands/send", tag = "commands", request_body = SendRequest,
    params(("wait" = Option<u64>, Query, description = "ms: answer once the command is finished (or overdue), or the wait ends (`timedOut: true`); request-reply in one request")),
    responses((status = 201, description = "created; `\"*\"` answers {\"commands\": [Command]}", body = SendAnswer),
              (status = 200, description = "a repeated dedupeKey: the original command", body = SendResponse),
              (status = 400, body = ErrorResponse)))]
async fn send_command(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    q: Params,
    JsonBody(req): JsonBody<SendRequest>,
) -> ApiResult<Response> {
    let wait = q.wait_param("wait")?;
    let Sent { outcome, timed_out } = s.broker.send_and_wait(req, &caller, wait).await?;
    Ok(match outcome {
        SendOutcome::Created { command, queued } => {
            let body = SendResponse {
                command,
                queued,
                timed_out,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        SendOutcome::Deduplicated(command) => {
            let body = SendResponse {
                command,
                queued: false,
                timed_out,
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        SendOutcome::FanOut(commands) => {
            let body = CommandsResponse {
                commands,
                timed_out,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
    })
}

#[utoipa::path(get, path = "/commands", tag = "commands",
    params(("status" = Option<String>, Query, description = "pending|delivered|acked|failed|cancelled|expired"),
           ("target" = Option<String>, Query, description = "a role or peer id"),
           ("overdue" = Option<bool>, Query, description = "true: only overdue commands; false: only the others"),
           ("origin" = Option<String>, Query, description = "only commands created by this origin, e.g. `peer:<id>` for a peer's own"),
           ("limit" = Option<u64>, Query, description = "1-10000, default 100")),
    responses((status = 200, description = "newest first", body = CommandsResponse), (status = 400, body = ErrorResponse)))]
async fn list_commands(State(s): State<AppState>, q: Params) -> ApiResult<Json<CommandsResponse>> {
    let status = q
        .str("status")
        .map(str::parse::<CommandStatus>)
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))?;
    let overdue = match q.str("overdue") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("overdue={other:?} must be true or false"),
            ))
        }
    };
    let limit = q.limit(DEFAULT_COMMAND_LIST, MAX_LIST_LIMIT)?;
    let filter = CommandFilter {
        status,
        target: q.str("target").map(str::to_string),
        overdue,
        origin: q.str("origin").map(str::to_string),
    };
    Ok(Json(CommandsResponse {
        commands: s.broker.list_commands_where(&filter, limit),
        timed_out: false,
    }))
}

// `GET /commands/{peerId}`: a read, so it needs the broker's token but not
// the peer's key, like `GET /commands` and `/status`, which show the same
// commands to anyone with the token. It only lists: taking a command
// (`/wait`, `?next=` on ack) acts as the peer and needs its key.
#[utoipa::path(get, path = "/commands/{id}", tag = "commands",
    description = "Lists a peer's pending and delivered-unacked commands, oldest first. It only reads: nothing is taken, delivered or changed. \
Anyone with the broker's token may list any peer's queue, protected or not, without that peer's key: the same commands are already visible to them \
through `GET /commands`, `GET /status` and the dashboard. A protected peer's key guards acting as it (taking its commands with `/commands/{peerId}/wait`, \
acking, heartbeats, disconnect), not reading. A listing refreshes the peer's `lastSeen` only when the caller proves to be that peer \
(its key, or for an unprotected peer the compat curl flow); naming a protected peer with `X-Cipc-Peer` still needs its key (403).",
    params(("id" = String, Path, description = "a peer id: GET lists that peer's commands (a command id is for DELETE)")),
    responses((status = 200, description = "the peer's pending and delivered-unacked commands, oldest first", body = CommandsResponse),
              (status = 404, body = ErrorResponse)))]
async fn peer_commands(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
) -> ApiResult<Json<CommandsResponse>> {
    let id = peer_id(&id)?;
    // Polling its own list keeps a peer alive (the old broker's worker
    // loop); see `touch_as` for who counts as the peer itself.
    s.broker.touch_as(id, &caller);
    Ok(Json(CommandsResponse {
        commands: s.broker.commands_for_peer(id)?,
        timed_out: false,
    }))
}

#[utoipa::path(get, path = "/commands/{peerId}/wait", tag = "commands",
    params(("peerId" = String, Path, description = "peer id"), ("timeout" = Option<u64>, Query, description = "ms, default 30000, max 3600000")),
    responses((status = 200, description = "the command now delivered to this peer, or {command: null, timedOut: true}", body = WaitResponse),
              (status = 404, body = ErrorResponse), (status = 429, body = ErrorResponse)))]
async fn wait_command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
) -> ApiResult<Response> {
    let id = peer_id(&id)?;
    let timeout = q.timeout()?;
    let command = s.broker.wait_command(id, timeout, &caller).await?;
    let taken = super::handed::delivery_of(command.as_ref());
    let answer = Json(WaitResponse {
        timed_out: command.is_none(),
        command,
    });
    Ok(super::handed::handing_out(
        &s.broker,
        taken,
        answer.into_response(),
    ))
}

#[utoipa::path(post, path = "/commands/{commandId}/ack", tag = "commands", request_body = AckRequest,
    params(("commandId" = String, Path, description = "command id"),
           ("next" = Option<u64>, Query, description = "ms: then take the next command, like wait, for the peer named by X-Cipc-Peer (or its key), else for the peer that held the acked command: {\"command\", \"next\", \"timedOut\"?}")),
    responses((status = 200, body = CommandResponse), (status = 404, body = ErrorResponse),
              (status = 409, description = "already finished, held by another peer, or never delivered (not_delivered)", body = ErrorResponse)))]
async fn ack_command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
    req: Request,
) -> ApiResult<Response> {
    let id = command_id(&id)?;
    let next = q.wait_param("next")?;
    let bytes = read_body(req, &s).await?;
    let body: AckRequest = parse_object(&bytes)?;
    // Whose next command: the peer named by the request, else the acked
    // command's holder (the peer that took it).
    let next_for = match (next, caller.peer) {
        (None, _) => None,
        (Some(_), Some(peer)) => Some(peer),
        (Some(_), None) => {
            let held = s.broker.command(id)?;
            match (held.status, held.delivered_to) {
                (CommandStatus::Delivered, Some(holder)) => Some(holder),
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidQuery,
                        format!(
                            "next= takes the next command of command {id}'s holder, and nobody holds it now ({}): \
                             name the peer whose next command to take with X-Cipc-Peer (and its key, X-Cipc-Peer-Key)",
                            held.status.as_str()
                        ),
                    ))
                }
            }
        }
    };
    let command = s.broker.ack(id, body, &caller).await?;
    let (Some(wait), Some(peer)) = (next, next_for) else {
        return Ok(Json(CommandResponse {
            command,
            timed_out: false,
        })
        .into_response());
    };
    let next = s.broker.wait_command(peer, wait, &caller).await?;
    let taken = super::handed::delivery_of(next.as_ref());
    let answer = Json(AckNextResponse {
        command,
        timed_out: next.is_none(),
        next,
    });
    Ok(super::handed::handing_out(
        &s.broker,
        taken,
        answer.into_response(),
    ))
}

#[utoipa::path(get, path = "/commands/{commandId}/result", tag = "commands",
    params(("commandId" = String, Path, description = "command id"), ("timeout" = Option<u64>, Query, description = "ms, default 30000")),
    responses((status = 200, description = "the finished command, or the command with timedOut: true", body = CommandResponse),
              (status = 404, body = ErrorResponse)))]
async fn command_result(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
) -> ApiResult<Json<CommandResponse>> {
    let id = command_id(&id)?;
    let timeout = q.timeout()?;
    let (command, timed_out) = s.broker.wait_result(id, timeout, &caller).await?;
    Ok(Json(CommandResponse { command, timed_out }))
}

#[utoipa::path(delete, path = "/commands/{id}", tag = "commands",
    params(("id" = String, Path, description = "a command id: DELETE cancels it (a peer id is for GET)")),
    responses((status = 200, body = CommandResponse), (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
async fn cancel_command(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
) -> ApiResult<Json<CommandResponse>> {
    let id = command_id(&id)?;
    Ok(Json(CommandResponse {
        command: s.broker.cancel(id, &caller).await?,
        timed_out: false,
    }))
}

#[utoipa::path(get, path = "/channels", tag = "channels",
    responses((status = 200, body = ChannelsResponse)))]
async fn list_channels(State(s): State<AppState>) -> Json<ChannelsResponse> {
    Json(ChannelsResponse {
        channels: s.broker.channels(),
    })
}

#[utoipa::path(post, path = "/channels/{name}/send", tag = "channels",
    params(("name" = String, Path, description = "channel name")),
    request_body(content = serde_json::Value, description = "the whole body is the message's data (any JSON)"),
    responses((status = 201, body = MessageResponse), (status = 400, body = ErrorResponse), (status = 413, body = ErrorResponse)))]
async fn channel_send(
    State(s): State<AppState>,
    Path(name): Path<String>,
    CallerInfo(caller): CallerInfo,
    req: Request,
) -> ApiResult<(StatusCode, Json<MessageResponse>)> {
    let bytes = read_body(req, &s).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "the message body is empty; send any JSON value, e.g. {\"text\":\"hello\"}",
        ));
    }
    let data: serde_json::Value = parse_json(&bytes, "null")?;
    let from = caller.peer.map(|p| p.to_string());
    let message = s.broker.channel_send(&name, data, from).await?;
    Ok((StatusCode::CREATED, Json(MessageResponse { message })))
}

#[utoipa::path(get, path = "/channels/{name}/messages", tag = "channels",
    params(("name" = String, Path, description = "channel name"),
           ("since" = Option<u64>, Query, description = "answer messages with seq > since (default 0)"),
           ("limit" = Option<u64>, Query, description = "1-10000, default 1000"),
           ("timeout" = Option<u64>, Query, description = "ms; when given and nothing is newer than since, long-poll")),
    responses((status = 200, body = MessagesResponse), (status = 400, body = ErrorResponse)))]
async fn channel_messages(
    State(s): State<AppState>,
    Path(name): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
) -> ApiResult<Json<MessagesResponse>> {
    let since = q.u64("since")?.unwrap_or(0);
    let limit = q.limit(DEFAULT_MESSAGE_READ, MAX_LIST_LIMIT)?;
    if q.str("timeout").is_some() {
        let timeout = q.timeout()?;
        return Ok(Json(
            s.broker
                .channel_wait(&name, since, limit, timeout, &caller)
                .await?,
        ));
    }
    Ok(Json(s.broker.channel_read(&name, since, limit).await?))
}

#[utoipa::path(get, path = "/signals", tag = "signals", responses((status = 200, body = SignalsResponse)))]
async fn list_signals(State(s): State<AppState>) -> Json<SignalsResponse> {
    Json(SignalsResponse {
        signals: s.broker.signals(),
    })
}

#[utoipa::path(post, path = "/signals/{name}", tag = "signals", request_body = EmitRequest,
    params(("name" = String, Path, description = "signal name")),
    responses((status = 200, body = SignalResponse), (status = 400, body = ErrorResponse)))]
async fn emit_signal(
    State(s): State<AppState>,
    Path(name): Path<String>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<EmitRequest>,
) -> ApiResult<Json<SignalResponse>> {
    let by = caller.peer.map(|p| p.to_string());
    Ok(Json(SignalResponse {
        signal: s.broker.emit(&name, req.data, by).await?,
        timed_out: false,
    }))
}

#[utoipa::path(get, path = "/signals/{name}", tag = "signals", params(("name" = String, Path, description = "signal name")),
    responses((status = 200, description = "emitted: false when never emitted", body = SignalResponse)))]
async fn get_signal(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<SignalResponse>> {
    Ok(Json(SignalResponse {
        signal: s.broker.signal(&name)?,
        timed_out: false,
    }))
}

#[utoipa::path(delete, path = "/signals/{name}", tag = "signals", params(("name" = String, Path, description = "signal name")),
    responses((status = 200, body = SignalResponse)))]
async fn clear_signal(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<SignalResponse>> {
    Ok(Json(SignalResponse {
        signal: s.broker.clear_signal(&name).await?,
        timed_out: false,
    }))
}

#[utoipa::path(get, path = "/signals/{name}/wait", tag = "signals",
    params(("name" = String, Path, description = "signal name"),
           ("timeout" = Option<u64>, Query, description = "ms, default 30000"),
           ("after" = Option<u64>, Query, description = "wait for an emission with count > after")),
    responses((status = 200, description = "the signal once emitted, or with timedOut: true", body = SignalResponse)))]
async fn wait_signal(
    State(s): State<AppState>,
    Path(name): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
) -> ApiResult<Json<SignalResponse>> {
    let timeout = q.timeout()?;
    let after = q.u64("after")?;
    let (signal, timed_out) = s.broker.wait_signal(&name, after, timeout, &caller).await?;
    Ok(Json(SignalResponse { signal, timed_out }))
}

#[utoipa::path(post, path = "/questions", tag = "questions", request_body = AskRequest,
    responses((status = 201, description = "the open question", body = QuestionResponse), (status = 400, body = ErrorResponse)))]
async fn ask(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<AskRequest>,
) -> ApiResult<(StatusCode, Json<QuestionResponse>)> {
    let question = s.broker.ask(req, &caller).await?;
    Ok((
        StatusCode::CREATED,
        Json(QuestionResponse {
            question,
            timed_out: false,
        }),
    ))
}

#[utoipa::path(get, path = "/questions", tag = "questions",
    params(("status" = Option<String>, Query, description = "open|answered|cancelled|expired")),
    responses((status = 200, description = "open ones first (oldest first), then the rest (newest first)", body = QuestionsResponse),
              (status = 400, body = ErrorResponse)))]
async fn list_questions(
    State(s): State<AppState>,
    q: Params,
) -> ApiResult<Json<QuestionsResponse>> {
    let status = q
        .str("status")
        .map(QuestionStatus::parse)
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))?;
    Ok(Json(QuestionsResponse {
        questions: s.broker.questions(status),
    }))
}

#[utoipa::path(get, path = "/questions/{id}", tag = "questions", params(("id" = String, Path, description = "question id")),
    responses((status = 200, body = QuestionResponse), (status = 404, body = ErrorResponse)))]
async fn get_question(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QuestionResponse>> {
    let id = question_id(&id)?;
    Ok(Json(QuestionResponse {
        question: s.broker.question(id)?,
        timed_out: false,
    }))
}

#[utoipa::path(get, path = "/questions/{id}/wait", tag = "questions",
    params(("id" = String, Path, description = "question id"), ("timeout" = Option<u64>, Query, description = "ms, default 30000")),
    responses((status = 200, description = "the question once answered, cancelled or expired, or with timedOut: true", body = QuestionResponse),
              (status = 404, body = ErrorResponse)))]
async fn wait_question(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    q: Params,
) -> ApiResult<Json<QuestionResponse>> {
    let id = question_id(&id)?;
    let (question, timed_out) = s.broker.wait_question(id, q.timeout()?, &caller).await?;
    Ok(Json(QuestionResponse {
        question,
        timed_out,
    }))
}

#[utoipa::path(post, path = "/questions/{id}/answer", tag = "questions", request_body = AnswerRequest,
    params(("id" = String, Path, description = "question id")),
    responses((status = 200, description = "the answered question", body = QuestionResponse),
              (status = 400, description = "not one of the choices", body = ErrorResponse),
              (status = 403, description = "a permission question, and the caller names a peer or came through MCP (`person_only`)", body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, description = "already answered, cancelled or expired", body = ErrorResponse)))]
async fn answer_question(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<AnswerRequest>,
) -> ApiResult<Json<QuestionResponse>> {
    let id = question_id(&id)?;
    Ok(Json(QuestionResponse {
        question: s.broker.answer(id, req, &caller).await?,
        timed_out: false,
    }))
}

#[utoipa::path(delete, path = "/questions/{id}", tag = "questions", params(("id" = String, Path, description = "question id")),
    responses((status = 200, description = "the cancelled question", body = QuestionResponse),
              (status = 403, description = "a permission question of another session: only a person or the asking session withdraws it (`person_only`)", body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
async fn cancel_question(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<QuestionResponse>> {
    let id = question_id(&id)?;
    Ok(Json(QuestionResponse {
        question: s.broker.cancel_question(id, &caller).await?,
        timed_out: false,
    }))
}

#[utoipa::path(post, path = "/leases", tag = "leases", request_body = LeaseRequest,
    description = "Takes a lease on repo-relative path patterns (a file, a directory ending in `/`, or a glob) of one `repo`, for the peer named by \
`X-Cipc-Peer` (with its key, `X-Cipc-Peer-Key`). All or nothing: when another peer holds an overlapping path and either lease is exclusive, \
nothing is leased and the answer is 409 `lease_conflict` with the leases in the way beside the error (`conflicts`). The caller's own leases \
never conflict with its new one. A pattern covers what it matches and everything below it.",
    params(("X-Cipc-Peer" = Option<String>, Header, description = "the peer taking the lease (or send only its key)"),
           ("X-Cipc-Peer-Key" = Option<String>, Header, description = "the key of that peer")),
    responses((status = 201, description = "the lease, held", body = LeaseResponse),
              (status = 400, description = "a bad path, repo, ttl or reason (`invalid_lease`), or no peer named (`not_registered`)", body = ErrorResponse),
              (status = 404, description = "the peer is unknown", body = ErrorResponse),
              (status = 409, description = "another peer's lease is in the way: nothing was leased", body = LeaseRefusal),
              (status = 429, description = "the broker holds as many leases as it keeps", body = ErrorResponse)))]
async fn acquire_lease(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<LeaseRequest>,
) -> ApiResult<(StatusCode, Json<LeaseResponse>)> {
    let lease = s.broker.acquire_lease(req, &caller).await?;
    Ok((StatusCode::CREATED, Json(LeaseResponse { lease })))
}

#[utoipa::path(get, path = "/leases", tag = "leases",
    params(("repo" = Option<String>, Query, description = "only the leases of this repo"),
           ("holder" = Option<String>, Query, format = Uuid, description = "only the leases of this peer")),
    responses((status = 200, description = "the held leases, oldest first", body = LeasesResponse),
              (status = 400, body = ErrorResponse)))]
async fn list_leases(State(s): State<AppState>, q: Params) -> ApiResult<Json<LeasesResponse>> {
    let holder = q
        .str("holder")
        .map(|h| {
            uuid::Uuid::parse_str(h.trim()).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("holder={h:?} is not a peer id; use a peer's id (a UUID), or leave holder out"),
                )
            })
        })
        .transpose()?;
    let repo = q.str("repo").map(str::trim).filter(|r| !r.is_empty());
    Ok(Json(LeasesResponse {
        leases: s.broker.leases(repo, holder).await,
    }))
}

#[utoipa::path(get, path = "/leases/check", tag = "leases",
    description = "Which of these paths other peers hold: for each path, every held lease of another peer in `repo` that covers it. \
An exclusive one always counts; a shared one counts unless the caller (named by `X-Cipc-Peer`) itself holds a lease in `repo` that covers \
the path, since the caller then shares it. The caller's own leases never count. Empty `conflicts` means the caller may edit them all.",
    params(("repo" = String, Query, description = "the repo the paths are in"),
           ("path" = Vec<String>, Query, description = "a repo-relative path or pattern; repeat for several (1-100)"),
           ("X-Cipc-Peer" = Option<String>, Header, description = "the caller: its own leases do not count, and they let it share paths that others hold shared")),
    responses((status = 200, description = "the leases in the way, per path", body = LeaseCheckResponse),
              (status = 400, description = "no repo, no path, or a bad one (`invalid_lease`)", body = ErrorResponse)))]
async fn check_leases(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<LeaseCheckResponse>> {
    let mut repo = None;
    let mut paths = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "repo" => repo = Some(v.into_owned()),
            "path" => paths.push(v.into_owned()),
            _ => {}
        }
    }
    Ok(Json(LeaseCheckResponse {
        conflicts: s
            .broker
            .check_leases(repo.as_deref(), &paths, &caller)
            .await?,
    }))
}

#[utoipa::path(post, path = "/leases/refusals", tag = "leases", request_body = RefusedEdit,
    description = "A session's hook refused an edit because of leases: the broker announces it as an `edit_refused` event on `/events` \
(the peer, the paths, the tool and the leases in the way), so the person sees it in the dashboard. Nothing is stored or changed.",
    params(("X-Cipc-Peer" = Option<String>, Header, description = "the refused peer (with its key)")),
    responses((status = 202, description = "announced", body = OkResponse),
              (status = 400, body = ErrorResponse),
              (status = 404, description = "the peer is unknown", body = ErrorResponse)))]
async fn report_refused_edit(
    State(s): State<AppState>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<RefusedEdit>,
) -> ApiResult<(StatusCode, Json<OkResponse>)> {
    s.broker.report_refused_edit(req, &caller).await?;
    Ok((StatusCode::ACCEPTED, Json(OkResponse { ok: true })))
}

#[utoipa::path(get, path = "/leases/{id}", tag = "leases", params(("id" = String, Path, description = "lease id")),
    responses((status = 200, description = "the lease, held or ended (ended ones are kept up to the command retention)", body = LeaseResponse),
              (status = 404, body = ErrorResponse)))]
async fn get_lease(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<LeaseResponse>> {
    let id = lease_id(&id)?;
    s.broker.sync().await;
    Ok(Json(LeaseResponse {
        lease: s.broker.lease(id)?,
    }))
}

#[utoipa::path(post, path = "/leases/{id}/renew", tag = "leases", request_body = RenewLeaseRequest,
    params(("id" = String, Path, description = "lease id")),
    responses((status = 200, description = "the lease, expiring `ttl` from now", body = LeaseResponse),
              (status = 400, body = ErrorResponse),
              (status = 403, description = "not the holder (`not_lease_holder`)", body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, description = "the lease was already released or expired", body = ErrorResponse)))]
async fn renew_lease(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
    JsonBody(req): JsonBody<RenewLeaseRequest>,
) -> ApiResult<Json<LeaseResponse>> {
    let id = lease_id(&id)?;
    Ok(Json(LeaseResponse {
        lease: s.broker.renew_lease(id, req.ttl, &caller).await?,
    }))
}

#[utoipa::path(delete, path = "/leases/{id}", tag = "leases", params(("id" = String, Path, description = "lease id")),
    description = "Releases a held lease: its holder may (`X-Cipc-Peer` with its key), and so may a person (a request that names no peer: the dashboard, `cipc` without a peer); another peer may not (403).",
    responses((status = 200, description = "the lease, released", body = LeaseResponse),
              (status = 403, description = "another peer's lease (`not_lease_holder`)", body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, description = "the lease was already released or expired", body = ErrorResponse)))]
async fn release_lease(
    State(s): State<AppState>,
    Path(id): Path<String>,
    CallerInfo(caller): CallerInfo,
) -> ApiResult<Json<LeaseResponse>> {
    let id = lease_id(&id)?;
    Ok(Json(LeaseResponse {
        lease: s.broker.release_lease(id, &caller).await?,
    }))
}

#[utoipa::path(get, path = "/status", tag = "system", responses((status = 200, body = StatusResponse)))]
async fn status(State(s): State<AppState>) -> Json<StatusResponse> {
    let mut status = s.broker.status();
    status.mcp_sessions = Some(s.mcp_sessions.get() as u64);
    Json(status)
}

#[utoipa::path(post, path = "/reset", tag = "system", responses((status = 200, body = OkResponse)))]
async fn reset(State(s): State<AppState>) -> ApiResult<Json<OkResponse>> {
    s.broker.reset().await?;
    Ok(Json(OkResponse { ok: true }))
}

#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, body = OkResponse),
              (status = 503, description = "the store cannot save changes", body = ErrorResponse)))]
async fn healthz(State(s): State<AppState>) -> ApiResult<Json<OkResponse>> {
    s.broker.store_health()?;
    Ok(Json(OkResponse { ok: true }))
}

/// The OpenAPI document, generated from the handlers above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "cipc broker API",
        description = "Peers, commands, channels, signals, questions and leases for AI coding sessions. Long-poll timeouts are milliseconds."
    ),
    paths(
        discover,
        connect,
        list_peers,
        get_peer,
        heartbeat,
        set_attention,
        disconnect,
        send_command,
        list_commands,
        peer_commands,
        wait_command,
        ack_command,
        command_result,
        cancel_command,
        list_channels,
        channel_send,
        channel_messages,
        super::streams::channel_stream,
        list_signals,
        emit_signal,
        get_signal,
        clear_signal,
        wait_signal,
        ask,
        list_questions,
        get_question,
        wait_question,
        answer_question,
        cancel_question,
        acquire_lease,
        list_leases,
        check_leases,
        report_refused_edit,
        get_lease,
        renew_lease,
        release_lease,
        status,
        reset,
        healthz,
        super::streams::events
    ),
    components(schemas(Peer, Command, Message, Signal, Question, Lease, ChannelInfo, ErrorResponse)),
    modifiers(&Contract)
)]
pub struct ApiDoc;
