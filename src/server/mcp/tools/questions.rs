//! Tools about questions for a person: ask_human, get_answer,
//! answer_question, list_questions.

use super::super::args::*;
use super::super::render::{self, Answer, Refusal};
use super::{parse_id, CipcMcp};
use crate::api::{AskRequest, QuestionStatus};
use crate::broker::Caller;
use crate::error_code::ErrorCode;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use std::time::Duration;
use uuid::Uuid;

impl CipcMcp {
    /// Waits (with progress) for question `id` to be answered or to end,
    /// and says how it ended; `cancelled` is the refusal when the client
    /// cancels the call.
    async fn await_answer(
        &self,
        ctx: &RequestContext<RoleServer>,
        caller: &Caller,
        id: Uuid,
        timeout: Duration,
        cancelled: Refusal,
    ) -> Answer {
        let broker = self.session.broker().clone();
        let what = format!("an answer to question {id}");
        let (q, _) = self
            .waiting(
                ctx,
                &what,
                timeout,
                broker.wait_question(id, timeout, caller),
            )
            .await
            .ok_or(cancelled)??;
        Ok(render::question_outcome(&q, timeout))
    }
}

#[tool_router(router = question_tools, vis = "pub(super)")]
impl CipcMcp {
    #[tool(
        description = "Ask a person (the user, who sees it in the cipc dashboard; any peer may answer too) a question and wait for the answer. Use it for decisions a person must make (an approval, a choice between options, information only the user has) instead of guessing. Give text, optionally choices (the answer is then one of them) and context (any JSON that helps decide). Waits up to timeout_seconds (default 60) and answers the person's answer first. The question is durable: if nobody answers in time, or this call is cancelled, it stays open and keeps any answer given later; call get_answer with its question_id to keep waiting.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn ask_human(
        &self,
        Parameters(args): Parameters<AskHumanArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
        let caller = self.caller(args.peer_key.as_deref())?;
        let req = AskRequest {
            text: args.text,
            choices: args.choices,
            context: args.context,
            from: None,
            ttl: args.ttl_seconds.map(|s| s.saturating_mul(1000)),
            kind: None,
        };
        let q = self.session.broker().ask(req, &caller).await?;
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let cancelled = render::ask_cancelled(q.id);
        self.await_answer(&ctx, &caller, q.id, timeout, cancelled)
            .await
    }

    #[tool(
        description = "Wait for the answer to a question asked earlier with ask_human (by its question_id), up to timeout_seconds (default 60; 0 just looks). Answers the person's answer, says it was cancelled or expired, or says it is still open so you can call again.",
        annotations(read_only_hint = true)
    )]
    async fn get_answer(
        &self,
        Parameters(args): Parameters<GetAnswerArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Answer {
        let id = parse_id(ErrorCode::UnknownQuestion, "question", &args.question_id)?;
        let caller = self.caller(args.peer_key.as_deref())?;
        let timeout = wait_for(args.timeout_seconds, DEFAULT_WAIT_SECS);
        let cancelled = render::get_answer_cancelled(id);
        self.await_answer(&ctx, &caller, id, timeout, cancelled)
            .await
    }

    #[tool(
        description = "Answer an open question (from list_questions) that another session asked; its asker is waiting for this. When the question has choices, the answer must be exactly one of them. Only answer what you really know or were told to decide; questions meant for the user are for the user.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn answer_question(&self, Parameters(args): Parameters<AnswerQuestionArgs>) -> Answer {
        let id = parse_id(ErrorCode::UnknownQuestion, "question", &args.question_id)?;
        let caller = self.caller(args.peer_key.as_deref())?;
        let q = self
            .session
            .broker()
            .answer(
                id,
                crate::api::AnswerRequest {
                    answer: args.answer,
                    by: None,
                    note: args.note,
                },
                &caller,
            )
            .await?;
        Ok(render::answer_recorded(&q))
    }

    #[tool(
        description = "List the questions sessions asked (ask_human): open ones first, oldest first, then answered, cancelled and expired ones. status filters them (\"open\", \"answered\", \"cancelled\" or \"expired\").",
        annotations(read_only_hint = true)
    )]
    async fn list_questions(&self, Parameters(args): Parameters<ListQuestionsArgs>) -> Answer {
        self.caller(args.peer_key.as_deref())?;
        let status = match args
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(raw) => Some(
                raw.parse::<QuestionStatus>()
                    .map_err(|_| render::not_a_question_status(raw))?,
            ),
        };
        let questions = self.session.broker().questions(status);
        Ok(render::questions(questions, status))
    }
}
