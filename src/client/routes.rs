//! One method per API route, each in the wire types of [`crate::api`].

use super::{api_error, Client, ClientError, Sent, SseParser, SseStream, REQUEST_TIMEOUT};
use crate::api::*;
use reqwest::{Method, StatusCode};

impl Client {
    // ---- peers ----

    /// `GET /peers/discover`: online peers and their roles.
    pub async fn discover(&self) -> Result<DiscoverResponse, ClientError> {
        self.get(&["peers", "discover"], &[]).await
    }

    /// `POST /peers/connect`: registers (or, with `id`, reconnects) a peer.
    pub async fn connect(&self, req: &ConnectRequest) -> Result<ConnectResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["peers", "connect"], Some(req))
            .await?
            .1)
    }

    /// `GET /peers`: every known peer.
    pub async fn peers(&self) -> Result<PeersResponse, ClientError> {
        self.get(&["peers"], &[]).await
    }

    /// `GET /peers/{id}`.
    pub async fn peer_info(&self, id: &str) -> Result<PeerResponse, ClientError> {
        self.get(&["peers", id], &[]).await
    }

    /// `POST /peers/{id}/heartbeat`: refreshes `lastSeen`.
    pub async fn heartbeat(&self, id: &str) -> Result<PeerResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::POST, &["peers", id, "heartbeat"], None)
            .await?
            .1)
    }

    /// `PUT /peers/{id}/attention`: says why a person is needed (or clears it).
    pub async fn set_attention(
        &self,
        id: &str,
        req: &AttentionRequest,
    ) -> Result<PeerResponse, ClientError> {
        Ok(self
            .send_json(Method::PUT, &["peers", id, "attention"], Some(req))
            .await?
            .1)
    }

    /// `DELETE /peers/{id}`: marks the peer offline and requeues its unacked commands.
    pub async fn disconnect(&self, id: &str) -> Result<PeerResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::DELETE, &["peers", id], None)
            .await?
            .1)
    }

    /// `DELETE /peers/{id}?forget=true`: forgets the peer for good (an
    /// offline one needs no key); what it held is requeued.
    pub async fn forget_peer(&self, id: &str) -> Result<PeerResponse, ClientError> {
        let url = self.url(&["peers", id], &[("forget", "true".to_string())]);
        Ok(self
            .call(self.request(Method::DELETE, url), REQUEST_TIMEOUT)
            .await?
            .1)
    }

    // ---- commands ----

    /// `POST /commands/send`.
    pub async fn send(&self, req: &SendRequest) -> Result<Sent, ClientError> {
        let (status, v): (StatusCode, serde_json::Value) = self
            .send_json(Method::POST, &["commands", "send"], Some(req))
            .await?;
        self.sent(status, v)
    }

    /// `POST /commands/send?wait=ms`: sends and waits for the result in the
    /// same request (`timedOut` when the wait ran out first).
    pub async fn send_and_wait(
        &self,
        req: &SendRequest,
        wait_ms: u64,
    ) -> Result<Sent, ClientError> {
        let (status, v): (StatusCode, serde_json::Value) = self
            .post_waiting(&["commands", "send"], "wait", wait_ms, req)
            .await?;
        self.sent(status, v)
    }

    /// `POST /commands/{id}/ack?next=ms`: acks, then takes this peer's next
    /// command (waiting up to `next_ms`) in the same request.
    pub async fn ack_and_next(
        &self,
        id: &str,
        req: &AckRequest,
        next_ms: u64,
    ) -> Result<AckNextResponse, ClientError> {
        Ok(self
            .post_waiting(&["commands", id, "ack"], "next", next_ms, req)
            .await?
            .1)
    }

    fn sent(&self, status: StatusCode, v: serde_json::Value) -> Result<Sent, ClientError> {
        let bad = |e: serde_json::Error| ClientError::Protocol {
            url: self.shown.clone(),
            reason: format!("a send answer that does not fit the API ({e})"),
        };
        if v.get("commands").is_some() {
            return Ok(Sent::FanOut(serde_json::from_value(v).map_err(bad)?));
        }
        Ok(Sent::One {
            response: Box::new(serde_json::from_value(v).map_err(bad)?),
            created: status == StatusCode::CREATED,
        })
    }

    /// `GET /commands/{peerId}/wait?timeout=ms`: takes the next command for a peer.
    pub async fn wait_command(
        &self,
        peer: &str,
        timeout_ms: u64,
    ) -> Result<WaitResponse, ClientError> {
        self.poll(
            &["commands", peer, "wait"],
            &[("timeout", timeout_ms.to_string())],
            timeout_ms,
        )
        .await
    }

    /// `GET /commands/{peerId}`: a peer's pending and delivered-unacked commands.
    pub async fn peer_commands(&self, peer: &str) -> Result<CommandsResponse, ClientError> {
        self.get(&["commands", peer], &[]).await
    }

    /// `POST /commands/{id}/ack`.
    pub async fn ack(&self, id: &str, req: &AckRequest) -> Result<CommandResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["commands", id, "ack"], Some(req))
            .await?
            .1)
    }

    /// `GET /commands/{id}/result?timeout=ms`: waits for the command to finish.
    pub async fn wait_result(
        &self,
        id: &str,
        timeout_ms: u64,
    ) -> Result<CommandResponse, ClientError> {
        self.poll(
            &["commands", id, "result"],
            &[("timeout", timeout_ms.to_string())],
            timeout_ms,
        )
        .await
    }

    /// `GET /commands?status=&target=&limit=`: newest first.
    pub async fn list_commands(
        &self,
        status: Option<CommandStatus>,
        target: Option<&str>,
        limit: Option<usize>,
    ) -> Result<CommandsResponse, ClientError> {
        let filter = CommandFilter {
            status,
            target: target.map(str::to_string),
            ..CommandFilter::default()
        };
        self.list_commands_where(&filter, limit).await
    }

    /// `GET /commands?status=&target=&overdue=&origin=&limit=`: newest first.
    pub async fn list_commands_where(
        &self,
        filter: &CommandFilter,
        limit: Option<usize>,
    ) -> Result<CommandsResponse, ClientError> {
        let mut q = Vec::new();
        if let Some(o) = filter.overdue {
            q.push(("overdue", o.to_string()));
        }
        if let Some(s) = filter.status {
            q.push(("status", s.as_str().to_string()));
        }
        if let Some(t) = &filter.target {
            q.push(("target", t.clone()));
        }
        if let Some(o) = &filter.origin {
            q.push(("origin", o.clone()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        self.get(&["commands"], &q).await
    }

    // ---- questions ----

    /// `POST /questions`: asks; answers the open question.
    pub async fn ask(&self, req: &AskRequest) -> Result<QuestionResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["questions"], Some(req))
            .await?
            .1)
    }

    /// `GET /questions?status=`: open ones first.
    pub async fn questions(
        &self,
        status: Option<QuestionStatus>,
    ) -> Result<QuestionsResponse, ClientError> {
        let q: Vec<(&str, String)> = status
            .map(|s| vec![("status", s.as_str().to_string())])
            .unwrap_or_default();
        self.get(&["questions"], &q).await
    }

    /// `GET /questions/{id}`.
    pub async fn question(&self, id: &str) -> Result<QuestionResponse, ClientError> {
        self.get(&["questions", id], &[]).await
    }

    /// `GET /questions/{id}/wait?timeout=ms`: waits for the answer (or the end).
    pub async fn wait_question(
        &self,
        id: &str,
        timeout_ms: u64,
    ) -> Result<QuestionResponse, ClientError> {
        self.poll(
            &["questions", id, "wait"],
            &[("timeout", timeout_ms.to_string())],
            timeout_ms,
        )
        .await
    }

    /// `POST /questions/{id}/answer`.
    pub async fn answer(
        &self,
        id: &str,
        req: &AnswerRequest,
    ) -> Result<QuestionResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["questions", id, "answer"], Some(req))
            .await?
            .1)
    }

    /// `DELETE /questions/{id}`: withdraws an open question.
    pub async fn cancel_question(&self, id: &str) -> Result<QuestionResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::DELETE, &["questions", id], None)
            .await?
            .1)
    }

    /// `DELETE /commands/{id}`: cancels a pending or delivered command.
    pub async fn cancel(&self, id: &str) -> Result<CommandResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::DELETE, &["commands", id], None)
            .await?
            .1)
    }

    // ---- channels ----

    /// `POST /channels/{name}/send`: the whole body is the message's data.
    pub async fn channel_send(
        &self,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<MessageResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["channels", name, "send"], Some(data))
            .await?
            .1)
    }

    /// `GET /channels/{name}/messages?since=&limit=`.
    pub async fn channel_messages(
        &self,
        name: &str,
        since: Option<u64>,
        limit: Option<usize>,
    ) -> Result<MessagesResponse, ClientError> {
        let mut q = Vec::new();
        if let Some(s) = since {
            q.push(("since", s.to_string()));
        }
        if let Some(l) = limit {
            q.push(("limit", l.to_string()));
        }
        self.get(&["channels", name, "messages"], &q).await
    }

    /// `GET /channels`.
    pub async fn channels(&self) -> Result<ChannelsResponse, ClientError> {
        self.get(&["channels"], &[]).await
    }

    /// `GET /channels/{name}/stream`: opens the SSE stream of a channel,
    /// resuming after `last_event_id` when given (else after `since`).
    pub async fn channel_stream(
        &self,
        name: &str,
        since: Option<u64>,
        last_event_id: Option<u64>,
    ) -> Result<SseStream, ClientError> {
        let q: Vec<(&str, String)> = since
            .map(|s| ("since", s.to_string()))
            .into_iter()
            .collect();
        let url = self.url(&["channels", name, "stream"], &q);
        let mut rb = self
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            rb = rb.header("Last-Event-ID", id.to_string());
        }
        let resp = rb.send().await.map_err(|e| self.network_error(e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| self.network_error(e))?;
            return Err(api_error(status, &bytes));
        }
        Ok(SseStream {
            resp,
            parser: SseParser::default(),
            shown: self.shown.clone(),
        })
    }

    // ---- signals ----

    /// `POST /signals/{name}`: emits (sets) a signal.
    pub async fn emit(&self, name: &str, req: &EmitRequest) -> Result<SignalResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["signals", name], Some(req))
            .await?
            .1)
    }

    /// `GET /signals/{name}`.
    pub async fn signal(&self, name: &str) -> Result<SignalResponse, ClientError> {
        self.get(&["signals", name], &[]).await
    }

    /// `GET /signals/{name}/wait?timeout=ms&after=K`.
    pub async fn wait_signal(
        &self,
        name: &str,
        after: Option<u64>,
        timeout_ms: u64,
    ) -> Result<SignalResponse, ClientError> {
        let mut q = vec![("timeout", timeout_ms.to_string())];
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        self.poll(&["signals", name, "wait"], &q, timeout_ms).await
    }

    /// `DELETE /signals/{name}`: clears the latch.
    pub async fn clear_signal(&self, name: &str) -> Result<SignalResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::DELETE, &["signals", name], None)
            .await?
            .1)
    }

    /// `GET /signals`.
    pub async fn signals(&self) -> Result<SignalsResponse, ClientError> {
        self.get(&["signals"], &[]).await
    }

    // ---- leases ----

    /// `POST /leases`: takes a lease on path patterns for this client's peer.
    /// A conflict takes nothing: a 409 whose [`ClientError::lease_conflicts`]
    /// names the leases in the way.
    pub async fn acquire_lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["leases"], Some(req))
            .await?
            .1)
    }

    /// `GET /leases?repo=&holder=`: the held leases, of one repo and one
    /// holder when given.
    pub async fn leases(
        &self,
        repo: Option<&str>,
        holder: Option<&str>,
    ) -> Result<LeasesResponse, ClientError> {
        let mut q = Vec::new();
        if let Some(r) = repo {
            q.push(("repo", r.to_string()));
        }
        if let Some(h) = holder {
            q.push(("holder", h.to_string()));
        }
        self.get(&["leases"], &q).await
    }

    /// `GET /leases/check?repo=&path=P&path=Q`: the leases of other peers
    /// (not this client's) that cover those paths.
    pub async fn check_leases(
        &self,
        repo: &str,
        paths: &[String],
    ) -> Result<LeaseCheckResponse, ClientError> {
        let mut q = vec![("repo", repo.to_string())];
        q.extend(paths.iter().map(|p| ("path", p.clone())));
        self.get(&["leases", "check"], &q).await
    }

    /// [`Client::check_leases`] for files, plain paths whatever characters
    /// their names hold (the edit check, the git guard): each is sent as the
    /// pattern that names exactly it
    /// ([`literal_pattern`](crate::broker::lease_paths::literal_pattern)),
    /// and each conflict names the file as given.
    pub async fn check_files(
        &self,
        repo: &str,
        files: &[String],
    ) -> Result<LeaseCheckResponse, ClientError> {
        let sent: Vec<String> = files
            .iter()
            .map(|f| crate::broker::lease_paths::literal_pattern(f))
            .collect();
        let mut r = self.check_leases(repo, &sent).await?;
        for c in &mut r.conflicts {
            if let Some(i) = sent.iter().position(|s| *s == c.path) {
                c.path.clone_from(&files[i]);
            }
        }
        Ok(r)
    }

    /// `POST /leases/{id}/renew`: extends one of this peer's leases.
    pub async fn renew_lease(
        &self,
        id: &str,
        req: &RenewLeaseRequest,
    ) -> Result<LeaseResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["leases", id, "renew"], Some(req))
            .await?
            .1)
    }

    /// `POST /leases/refusals`: tells the person (an `edit_refused` event)
    /// that this peer's edit was refused because of leases.
    pub async fn report_refused_edit(&self, req: &RefusedEdit) -> Result<OkResponse, ClientError> {
        Ok(self
            .send_json(Method::POST, &["leases", "refusals"], Some(req))
            .await?
            .1)
    }

    /// `DELETE /leases/{id}`: releases a lease (its holder, or a person).
    pub async fn release_lease(&self, id: &str) -> Result<LeaseResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::DELETE, &["leases", id], None)
            .await?
            .1)
    }

    // ---- system ----

    /// `GET /status`: everything at a glance.
    pub async fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get(&["status"], &[]).await
    }

    /// `POST /reset`: clears all state.
    pub async fn reset(&self) -> Result<OkResponse, ClientError> {
        Ok(self
            .send_json::<(), _>(Method::POST, &["reset"], None)
            .await?
            .1)
    }

    /// `GET /healthz`: is anything answering (never needs the token).
    pub async fn healthz(&self) -> Result<OkResponse, ClientError> {
        self.get(&["healthz"], &[]).await
    }
}
