//! Questions: an agent asks a person (or any peer) for a decision and waits
//! for the answer, as a sender waits for a command's result. Durable like
//! commands; open ones expire by their ttl; answered ones are kept up to the
//! command retention.

use super::{Broker, BrokerError, Caller, State, WaitEnd, WakeKey};
use crate::api::{
    AnswerRequest, AskRequest, Question, QuestionKind, QuestionStatus, MAX_TTL_MS,
    PERMISSION_CHOICES,
};
use crate::error_code::ErrorCode;
use crate::store::{Commit, Mutation, TurnKind};
use crate::time::Timestamp;
use std::time::Duration;
use uuid::Uuid;

/// The longest question text.
pub const MAX_QUESTION_LEN: usize = 2000;
/// The most choices a question may offer.
pub const MAX_CHOICES: usize = 20;
/// The longest choice.
pub const MAX_CHOICE_LEN: usize = 200;
/// The longest answer.
pub const MAX_ANSWER_LEN: usize = 10_000;
/// The longest note that travels with an answer.
pub const MAX_NOTE_LEN: usize = 2000;
/// The longest `from` or `by`.
const MAX_NAME_LEN: usize = 128;

fn invalid(message: String) -> BrokerError {
    BrokerError::new(ErrorCode::InvalidQuestion, message)
}

fn unknown_question(id: Uuid) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownQuestion,
        format!("no question with id {id}; list them with `cipc questions`, the MCP tool list_questions, or GET /questions"),
    )
}

/// A permission question's choices are always `allow` and `deny`: given
/// (in any order) or left out, never anything else.
fn permission_choices(req: &AskRequest) -> Result<Vec<String>, BrokerError> {
    let standard: Vec<String> = PERMISSION_CHOICES.iter().map(ToString::to_string).collect();
    match &req.choices {
        None => Ok(standard),
        Some(given) => {
            let mut sorted: Vec<&str> = given.iter().map(|c| c.trim()).collect();
            sorted.sort_unstable();
            if sorted == ["allow", "deny"] {
                Ok(standard)
            } else {
                Err(invalid(format!(
                    "a permission question's choices are \"allow\" and \"deny\" (got {given:?}); leave choices out and they are set"
                )))
            }
        }
    }
}

/// Checks an ask before anything is stored.
fn check(req: &AskRequest) -> Result<(), BrokerError> {
    let len = req.text.trim().chars().count();
    if len == 0 || len > MAX_QUESTION_LEN {
        return Err(invalid(format!(
            "the question text must be 1-{MAX_QUESTION_LEN} characters (got {len}); ask one clear question"
        )));
    }
    if let Some(choices) = &req.choices {
        if choices.is_empty() || choices.len() > MAX_CHOICES {
            return Err(invalid(format!(
                "give 1-{MAX_CHOICES} choices (got {}), or none for a free-text answer",
                choices.len()
            )));
        }
        for (i, c) in choices.iter().enumerate() {
            let n = c.trim().chars().count();
            if n == 0 || n > MAX_CHOICE_LEN {
                return Err(invalid(format!(
                    "choice {} must be 1-{MAX_CHOICE_LEN} characters (got {n})",
                    i + 1
                )));
            }
            if choices[..i].contains(c) {
                return Err(invalid(format!("choice {c:?} is given twice")));
            }
        }
    }
    if let Some(from) = req
        .from
        .as_deref()
        .filter(|f| f.chars().count() > MAX_NAME_LEN)
    {
        return Err(invalid(format!(
            "from is {} characters long; at most {MAX_NAME_LEN}",
            from.chars().count()
        )));
    }
    if let Some(ttl) = req.ttl.filter(|t| *t > MAX_TTL_MS) {
        return Err(BrokerError::new(
            ErrorCode::TtlTooLong,
            format!("ttl={ttl} is too long: the maximum is {MAX_TTL_MS} ms (365 days); leave it out for a question that never expires"),
        ));
    }
    Ok(())
}

impl Broker {
    /// `POST /questions`: asks; the question is open until answered,
    /// cancelled or expired.
    pub async fn ask(&self, mut req: AskRequest, caller: &Caller) -> Result<Question, BrokerError> {
        check(&req)?;
        let kind = req.kind.unwrap_or_default();
        if kind == QuestionKind::Permission {
            req.choices = Some(permission_choices(&req)?);
        }
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (q, commits) = {
            let mut st = self.lock();
            let from = req
                .from
                .clone()
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .or_else(|| {
                    caller
                        .peer
                        .and_then(|p| st.peers.get(&p).map(|e| e.peer.role.clone()))
                })
                .unwrap_or_else(|| "anonymous".to_string());
            let q = Question {
                id: Uuid::now_v7(),
                from,
                text: req.text.trim().to_string(),
                choices: req.choices,
                context: req.context,
                status: QuestionStatus::Open,
                created_at: now,
                expires_at: req
                    .ttl
                    .map(|ms| now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX))),
                answer: None,
                answered_by: None,
                answered_at: None,
                origin: caller.origin(),
                kind,
                peer: caller.peer,
                note: None,
            };
            let mut commits = Vec::new();
            self.question_changed(&mut st, q.clone(), &mut commits);
            (q, commits)
        };
        Broker::committed(commits).await?;
        Ok(q)
    }

    /// `GET /questions/{id}`.
    pub fn question(&self, id: Uuid) -> Result<Question, BrokerError> {
        self.lock()
            .questions
            .get(&id)
            .cloned()
            .ok_or_else(|| unknown_question(id))
    }

    /// `GET /questions?status=`: open ones first (oldest first, the order a
    /// person should answer them), then the rest, newest first.
    pub fn questions(&self, status: Option<QuestionStatus>) -> Vec<Question> {
        let st = self.lock();
        let mut list: Vec<Question> = st
            .questions
            .values()
            .filter(|q| status.is_none_or(|s| q.status == s))
            .cloned()
            .collect();
        list.sort_by(|a, b| {
            let open = |q: &Question| q.status != QuestionStatus::Open;
            open(a).cmp(&open(b)).then_with(|| {
                if a.status == QuestionStatus::Open {
                    a.id.cmp(&b.id)
                } else {
                    b.id.cmp(&a.id)
                }
            })
        });
        list
    }

    /// `POST /questions/{id}/answer`: answers an open question; with
    /// choices, the answer must be one of them. The note travels with it
    /// (for a permission, the reason the session is shown).
    pub async fn answer(
        &self,
        id: Uuid,
        req: AnswerRequest,
        caller: &Caller,
    ) -> Result<Question, BrokerError> {
        let AnswerRequest { answer, by, note } = req;
        let answer = answer.trim().to_string();
        let note = note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = note.as_deref().filter(|n| n.chars().count() > MAX_NOTE_LEN) {
            return Err(invalid(format!(
                "the note is {} characters long; at most {MAX_NOTE_LEN}",
                n.chars().count()
            )));
        }
        let n = answer.chars().count();
        if n == 0 || n > MAX_ANSWER_LEN {
            return Err(BrokerError::new(
                ErrorCode::InvalidChoice,
                format!("the answer must be 1-{MAX_ANSWER_LEN} characters (got {n})"),
            ));
        }
        if let Some(b) = by.as_deref().filter(|b| b.chars().count() > MAX_NAME_LEN) {
            return Err(invalid(format!(
                "by is {} characters long; at most {MAX_NAME_LEN}",
                b.chars().count()
            )));
        }
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (q, commits) = {
            let mut st = self.lock();
            let q = open_question(&st, id, "nothing was changed")?;
            if q.kind == QuestionKind::Permission && !caller.is_person() {
                return Err(BrokerError::new(
                    ErrorCode::PersonOnly,
                    format!(
                        "question {id} asks a person's permission for a session's tool call, so only a person answers it: \
                         in the dashboard, or with `cipc answer` from a shell that names no peer (unset CIPC_PEER and CIPC_PEER_KEY)"
                    ),
                ));
            }
            let mut answer = answer;
            if let Some(choices) = &q.choices {
                // Spaces around a choice or an answer do not matter; the
                // answer recorded is the choice as the asker wrote it.
                if let Some(c) = choices.iter().find(|c| c.trim() == answer) {
                    answer.clone_from(c);
                } else {
                    return Err(BrokerError::new(
                        ErrorCode::InvalidChoice,
                        format!(
                            "{answer:?} is not one of the choices of question {id}: {}",
                            choices
                                .iter()
                                .map(|c| format!("{c:?}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            let by = by
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .or_else(|| {
                    caller
                        .peer
                        .and_then(|p| st.peers.get(&p).map(|e| e.peer.role.clone()))
                })
                .unwrap_or_else(|| "someone".to_string());
            let mut q = q.clone();
            q.status = QuestionStatus::Answered;
            q.answer = Some(answer);
            q.note = note;
            q.answered_by = Some(by);
            q.answered_at = Some(now);
            let mut commits = Vec::new();
            self.question_changed(&mut st, q.clone(), &mut commits);
            (q, commits)
        };
        Broker::committed(commits).await?;
        Ok(q)
    }

    /// `DELETE /questions/{id}`: withdraws an open question.
    pub async fn cancel_question(
        &self,
        id: Uuid,
        caller: &Caller,
    ) -> Result<Question, BrokerError> {
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (q, commits) = {
            let mut st = self.lock();
            let mut q = open_question(&st, id, "it can no longer be cancelled")?.clone();
            if q.kind == QuestionKind::Permission && !caller.is_person() {
                match q.peer.filter(|asker| caller.peer == Some(*asker)) {
                    Some(asker) => self.prove_in(&st, asker, caller)?,
                    None => {
                        return Err(BrokerError::new(
                            ErrorCode::PersonOnly,
                            format!(
                                "question {id} asks a person's permission for another session's tool call: \
                                 only a person or the session that asked may withdraw it"
                            ),
                        ))
                    }
                }
            }
            q.status = QuestionStatus::Cancelled;
            q.answered_at = Some(now);
            let mut commits = Vec::new();
            self.question_changed(&mut st, q.clone(), &mut commits);
            (q, commits)
        };
        Broker::committed(commits).await?;
        Ok(q)
    }

    /// `GET /questions/{id}/wait`: returns once the question is answered,
    /// cancelled or expired. The bool is true on timeout.
    pub async fn wait_question(
        &self,
        id: Uuid,
        timeout: Duration,
        caller: &Caller,
    ) -> Result<(Question, bool), BrokerError> {
        let _permit = self.acquire_waiter_for(caller)?;
        // A question asked on another node a moment ago is known here too.
        self.sync().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let armed = {
                let mut st = self.lock();
                let q = st
                    .questions
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| unknown_question(id))?;
                if q.status != QuestionStatus::Open {
                    return Ok((q, false));
                }
                vec![st.arm(WakeKey::Question(id))]
            };
            if let WaitEnd::TimedOut = self.park(armed, deadline).await {
                return Ok((self.question(id)?, true));
            }
        }
    }

    /// Stores a question's new state: persisted, announced, its waiters
    /// woken, its expiry and retention kept in step.
    fn question_changed(&self, st: &mut State, q: Question, commits: &mut Vec<Commit>) {
        st.index_question(&q);
        commits.push(self.persist(Mutation::Question(Box::new(q.clone()))));
        st.events.push("question", &q);
        if q.status != QuestionStatus::Open {
            st.wake(&WakeKey::Question(q.id));
        }
        st.questions.insert(q.id, q);
        while st.closed_questions.len() > self.inner.config.command_retention.max(1) {
            let Some(old) = st.closed_questions.pop_first() else {
                break;
            };
            if let Some(gone) = st.questions.remove(&old) {
                st.unindex_question(&gone);
            }
            commits.push(self.persist(Mutation::ForgetQuestion { id: old }));
        }
    }

    /// A peer left (disconnected, went offline, was forgotten): its open
    /// permission questions are cancelled at once, since nobody waits for
    /// them any more and no dashboard should show them.
    pub(super) fn close_permissions_of(
        &self,
        st: &mut State,
        peer: Uuid,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        for id in st.open_permissions_of(peer) {
            let Some(q) = st
                .questions
                .get(&id)
                .filter(|q| q.status == QuestionStatus::Open)
            else {
                continue;
            };
            let mut q = q.clone();
            q.status = QuestionStatus::Cancelled;
            q.answered_at = Some(now);
            self.question_changed(st, q, commits);
        }
    }

    /// Expiry pass of the sweeper: open questions past their ttl expire.
    pub(super) fn sweep_questions(
        &self,
        st: &mut State,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        while let Some(&(at, id)) = st.question_expiry.first() {
            if at > now.millis() {
                break;
            }
            st.question_expiry.remove(&(at, id));
            let Some(q) = st
                .questions
                .get(&id)
                .filter(|q| q.status == QuestionStatus::Open)
            else {
                continue;
            };
            let mut q = q.clone();
            q.status = QuestionStatus::Expired;
            q.answered_at = Some(now);
            self.question_changed(st, q, commits);
        }
    }
}

/// An open question; 404 when unknown, 409 when it is already closed.
fn open_question<'a>(st: &'a State, id: Uuid, why: &str) -> Result<&'a Question, BrokerError> {
    let q = st.questions.get(&id).ok_or_else(|| unknown_question(id))?;
    if q.status != QuestionStatus::Open {
        return Err(BrokerError::new(
            ErrorCode::AlreadyFinished,
            format!(
                "question {id} is already {}{}; {why}",
                q.status.as_str(),
                q.answer
                    .as_deref()
                    .map(|a| format!(" (answer: {a:?})"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(q)
}
