//! `/openapi.json`: the document utoipa derives from the routes
//! ([`super::rest::ApiDoc`]), finished by one modifier that states what
//! every route shares (the errors any request can meet at the front door,
//! and the rules of names, ids and common query parameters), so no route
//! repeats them.

use crate::api::{CommandStatus, QuestionStatus};
use axum::Json;
use utoipa::OpenApi;

/// `GET /openapi.json`, with the broker's version.
pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = super::rest::ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc)
}

/// What every route shares, stated once: the errors any request can meet at
/// the front door, and the rules of names, ids and common query parameters.
pub(super) struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{Operation, ParameterIn};
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{RefOr, Required, ResponseBuilder};
        let shared = [
            ("400", "a bad header, query string or body"),
            ("401", "the broker needs its token (REST routes)"),
            ("403", "a foreign Origin or Host, a token on an MCP route, or a peer named without its key"),
            ("408", "the request body did not arrive in time"),
            ("413", "the request body is too large"),
            ("429", "too many waiters, a cap reached, or wrong tokens being slowed down"),
            ("503", "a change this answer depends on could not be saved"),
        ];
        let name_pattern = "^[A-Za-z0-9._-]{1,64}$";
        let fix = |op: &mut Operation, path: &str| {
            for (code, why) in shared {
                if path == "/healthz" && code != "503" {
                    continue;
                }
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(why)
                                .content(
                                    "application/json",
                                    utoipa::openapi::ContentBuilder::new()
                                        .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                            "ErrorResponse",
                                        )))
                                        .build(),
                                )
                                .build(),
                        )
                    });
            }
            for p in op.parameters.iter_mut().flatten() {
                let RefOr::T(p) = p else { continue };
                let schema = match (&p.parameter_in, p.name.as_str()) {
                    (ParameterIn::Path, "name") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(name_pattern)),
                    ),
                    (ParameterIn::Path, _) => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
                    ),
                    (ParameterIn::Query, "limit") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .maximum(Some(10_000)),
                    ),
                    (ParameterIn::Query, "timeout" | "wait" | "next") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0))
                            .maximum(Some(crate::api::MAX_LONG_POLL_MS)),
                    ),
                    (ParameterIn::Query, "since" | "after") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0))
                            .maximum(Some(i64::MAX)),
                    ),
                    (ParameterIn::Query, "status") if path.starts_with("/questions") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(
                                [
                                    QuestionStatus::Open,
                                    QuestionStatus::Answered,
                                    QuestionStatus::Cancelled,
                                    QuestionStatus::Expired,
                                ]
                                .map(QuestionStatus::as_str),
                            )),
                    ),
                    (ParameterIn::Query, "status") => Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(CommandStatus::ALL.iter().map(|s| s.as_str()))),
                    ),
                    _ => None,
                };
                if let Some(schema) = schema {
                    p.schema = Some(RefOr::T(schema.build().into()));
                    if p.parameter_in == ParameterIn::Path {
                        p.required = Required::True;
                    }
                }
            }
        };
        // Bodies that may be left out entirely.
        for path in ["/commands/{commandId}/ack", "/signals/{name}"] {
            if let Some(RefOr::T(body)) = doc
                .paths
                .paths
                .get_mut(path)
                .and_then(|i| i.post.as_mut())
                .and_then(|op| op.request_body.as_mut())
            {
                body.required = Some(Required::False);
            }
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                fix(op, path);
            }
        }
    }
}
