//! The MCP protocol side of [`CipcMcp`]: start-up, tool listing and the one
//! door every tool call passes (session bookkeeping, contact, the durability
//! barrier, and readable argument errors).

use super::render::{bad_arguments, session_ended, Refusal};
use super::tools::{CipcMcp, INSTRUCTIONS};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{tool_handler, ErrorData, RoleServer, ServerHandler};

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CipcMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("cipc", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        self.session.active();
        self.session.note_initialize(&context.extensions);
        self.session.start_watchdog();
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.session.active();
        self.session.note_request(&context.extensions);
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.session.active();
        self.session.note_request(&context.extensions);
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.session.active();
        self.session.note_request(&context.extensions);
        Ok(ListToolsResult::with_all_items(self.tool_router.list_all()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let _busy = self.session.busy();
        self.session.note_request(&context.extensions);
        if self.session.ended().is_cancelled() {
            return Ok(session_ended().into_result().into());
        }
        if let Some(p) = self.session.peer() {
            self.session.broker().touch_as(p, &self.session.caller());
        }
        let name = request.name.to_string();
        let ctx = ToolCallContext::new(self, request, context);
        let mut response = self.tool_router.call(ctx).await?;
        // Principle 8: a result shows nothing that is not saved yet.
        if let Err(e) = self.session.broker().settled().await {
            return Ok(Refusal::from(e).into_result().into());
        }
        // rmcp reports arguments that do not fit the schema as a bare serde
        // message; say which tool and what to do, with a reason like any
        // other refusal.
        if let CallToolResponse::Complete(r) = &mut response {
            if r.is_error == Some(true) && r.structured_content.is_none() {
                let detail = r.content.first().and_then(|b| b.as_text()).and_then(|t| {
                    t.text
                        .strip_prefix("failed to deserialize parameters:")
                        .map(|d| d.trim().to_string())
                });
                if let Some(detail) = detail {
                    *r = bad_arguments(&name, &detail).into_result();
                }
            }
        }
        Ok(response)
    }
}
