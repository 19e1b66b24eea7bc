//! The OpenAPI 3 document of the REST router (`GET /api/openapi.json`),
//! written by hand from one table of endpoints. `tests/directory.rs` checks
//! that every route of the router appears here.

use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Public,
    User,
    Admin,
}

/// One operation: method, path, who may call it, summary, query parameters,
/// request body schema, success status and response schema.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    auth: Auth,
    summary: &'static str,
    query: &'static [(&'static str, &'static str, &'static str)],
    body: Option<&'static str>,
    status: u16,
    response: Option<Value>,
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema(name) })
}

fn endpoints() -> Vec<Endpoint> {
    use Auth::*;
    let e = |method, path, auth, summary, body, status, response| Endpoint {
        method,
        path,
        auth,
        summary,
        query: &[],
        body,
        status,
        response,
    };
    let text = Some(json!({ "type": "string" }));
    vec![
        e(
            "get",
            "/healthz",
            Public,
            "Liveness: answers ok",
            None,
            200,
            text.clone(),
        ),
        e(
            "get",
            "/readyz",
            Public,
            "Readiness: answers ready",
            None,
            200,
            text.clone(),
        ),
        e(
            "get",
            "/metrics",
            Public,
            "Prometheus metrics (text format)",
            None,
            200,
            text,
        ),
        e(
            "get",
            "/ws",
            Public,
            "WebSocket upgrade: binary frames are protobuf, text frames JSON",
            None,
            101,
            None,
        ),
        e(
            "post",
            "/api/v1/login",
            Public,
            "Logs in; returns a bearer token",
            Some("LoginRequest"),
            200,
            Some(schema("LoginReply")),
        ),
        e(
            "post",
            "/api/v1/logout",
            User,
            "Revokes the caller's token",
            None,
            204,
            None,
        ),
        e(
            "get",
            "/api/v1/me",
            User,
            "The caller's user record",
            None,
            200,
            Some(schema("User")),
        ),
        e(
            "post",
            "/api/v1/users",
            Admin,
            "Creates a user (departments are department ids)",
            Some("CreateUser"),
            201,
            Some(schema("User")),
        ),
        e(
            "get",
            "/api/v1/users",
            Admin,
            "Lists every user",
            None,
            200,
            Some(array_of("User")),
        ),
        e(
            "patch",
            "/api/v1/users/{id}",
            Admin,
            "Changes profile fields, disables or enables, replaces posts",
            Some("UpdateUser"),
            200,
            Some(schema("User")),
        ),
        e(
            "delete",
            "/api/v1/users/{id}",
            Admin,
            "Deletes a user (CONFLICT while the user owns a group)",
            None,
            204,
            None,
        ),
        e(
            "post",
            "/api/v1/departments",
            Admin,
            "Creates a department",
            Some("CreateDepartment"),
            201,
            Some(schema("Department")),
        ),
        e(
            "get",
            "/api/v1/departments/tree",
            User,
            "The whole org tree with member counts",
            None,
            200,
            Some(array_of("DepartmentNode")),
        ),
        e(
            "patch",
            "/api/v1/departments/{id}",
            Admin,
            "Renames or reorders a department",
            Some("UpdateDepartment"),
            200,
            Some(schema("Department")),
        ),
        e(
            "delete",
            "/api/v1/departments/{id}",
            Admin,
            "Deletes a department (CONFLICT while it has sub-departments or members)",
            None,
            204,
            None,
        ),
        e(
            "post",
            "/api/v1/departments/{id}/move",
            Admin,
            "Moves a department under a new parent (CONFLICT on a cycle)",
            Some("MoveDepartment"),
            200,
            Some(schema("Department")),
        ),
        Endpoint {
            query: &[
                (
                    "q",
                    "string",
                    "name substring, account prefix or pinyin initials",
                ),
                (
                    "limit",
                    "integer",
                    "at most this many results (default 50, max 200)",
                ),
            ],
            ..e(
                "get",
                "/api/v1/contacts",
                User,
                "Searches contacts",
                None,
                200,
                Some(array_of("Contact")),
            )
        },
        Endpoint {
            query: &[
                (
                    "limit",
                    "integer",
                    "at most this many entries (default 100, max 1000)",
                ),
                ("before", "integer", "only entries with a smaller seq"),
            ],
            ..e(
                "get",
                "/api/v1/admin/audit",
                Admin,
                "The audit trail, newest first",
                None,
                200,
                Some(array_of("AuditEntry")),
            )
        },
        e(
            "get",
            "/api/openapi.json",
            Public,
            "This document",
            None,
            200,
            Some(json!({ "type": "object" })),
        ),
        e(
            "post",
            "/api/v1/groups",
            User,
            "Creates a group owned by the caller",
            Some("CreateGroup"),
            201,
            Some(schema("Group")),
        ),
        e(
            "get",
            "/api/v1/groups/{id}/members",
            User,
            "Member ids of a group (members and admins)",
            None,
            200,
            Some(json!({ "type": "array", "items": { "type": "integer" } })),
        ),
        e(
            "post",
            "/api/v1/groups/{id}/members",
            User,
            "Adds and removes members (owner or admin)",
            Some("ChangeMembers"),
            200,
            Some(schema("Group")),
        ),
        Endpoint {
            query: &[
                ("after_seq", "integer", "messages after this seq"),
                ("limit", "integer", "at most this many messages"),
            ],
            ..e(
                "get",
                "/api/v1/conversations/{id}/messages",
                User,
                "Message history of a conversation",
                None,
                200,
                Some(json!({ "type": "object" })),
            )
        },
        e(
            "put",
            "/api/v1/admin/log-level",
            Admin,
            "Changes this node's log filter",
            Some("LogLevel"),
            200,
            Some(json!({ "type": "object" })),
        ),
        e(
            "get",
            "/api/v1/admin/cluster",
            Admin,
            "Nodes, placement and Raft state as this node sees them",
            None,
            200,
            Some(json!({ "type": "object" })),
        ),
        e(
            "delete",
            "/api/v1/admin/nodes/{id}",
            Admin,
            "Decommissions a node",
            None,
            204,
            None,
        ),
    ]
}

fn operation(endpoint: &Endpoint) -> Value {
    let mut parameters: Vec<Value> = Vec::new();
    if endpoint.path.contains("{id}") {
        parameters.push(json!({
            "name": "id", "in": "path", "required": true,
            "schema": { "type": "integer", "format": "uint64" }
        }));
    }
    for (name, kind, description) in endpoint.query {
        parameters.push(json!({
            "name": name, "in": "query", "required": *name == "q",
            "description": description, "schema": { "type": kind }
        }));
    }
    let mut success = json!({ "description": "success" });
    if let Some(response) = &endpoint.response {
        success["content"] = json!({ "application/json": { "schema": response } });
    }
    let mut responses = serde_json::Map::new();
    responses.insert(endpoint.status.to_string(), success);
    responses.insert(
        "default".into(),
        json!({
            "description": "an error: UNAUTHENTICATED 401, FORBIDDEN 403, NOT_FOUND 404, INVALID 400, CONFLICT 409, TOO_LARGE 413, RATE_LIMITED 429, UNAVAILABLE_RETRY 503, INTERNAL 500",
            "content": { "application/json": { "schema": schema("Error") } }
        }),
    );
    let mut op = json!({
        "summary": endpoint.summary,
        "parameters": parameters,
        "responses": responses,
    });
    match endpoint.auth {
        Auth::Public => op["security"] = json!([]),
        Auth::User => {}
        Auth::Admin => op["description"] = json!("Admin only: FORBIDDEN for other users."),
    }
    if let Some(body) = endpoint.body {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema(body) } }
        });
    }
    op
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

fn schemas() -> Value {
    let int = json!({ "type": "integer" });
    let string = json!({ "type": "string" });
    let boolean = json!({ "type": "boolean" });
    let post = object(
        json!({ "department_id": int, "title": string }),
        &["department_id"],
    );
    json!({
        "Error": object(json!({ "code": string, "message": string }), &["code", "message"]),
        "LoginRequest": object(
            json!({ "account": string, "password": string, "device_class": { "type": "string", "enum": ["pc", "mobile", "web"] } }),
            &["account", "password", "device_class"],
        ),
        "LoginReply": object(json!({
            "token": string, "user_id": int, "account": string, "device_class": string, "expires_at_ms": int
        }), &[]),
        "Post": post,
        "User": object(json!({
            "user_id": int, "account": string, "display_name": string, "admin": boolean,
            "disabled": boolean, "title": string, "phone": string, "email": string, "mobile": string,
            "departments": { "type": "array", "items": int },
            "posts": array_of("Post"),
        }), &[]),
        "CreateUser": object(json!({
            "account": string, "password": string, "display_name": string, "admin": boolean,
            "departments": { "type": "array", "items": int },
        }), &["account", "password"]),
        "UpdateUser": object(json!({
            "display_name": string, "title": string, "phone": string, "email": string,
            "mobile": string, "disabled": boolean, "posts": array_of("Post"),
        }), &[]),
        "Department": object(json!({
            "department_id": int, "parent_id": int, "name": string, "order": int, "created_at_ms": int
        }), &[]),
        "DepartmentNode": object(json!({
            "department_id": int, "parent_id": int, "name": string, "order": int,
            "member_count": int, "total_count": int, "online_count": int, "online_total": int, "children": array_of("DepartmentNode"),
        }), &[]),
        "CreateDepartment": object(json!({ "name": string, "parent_id": int, "order": int }), &["name"]),
        "UpdateDepartment": object(json!({ "name": string, "order": int }), &[]),
        "MoveDepartment": object(json!({ "parent_id": int }), &["parent_id"]),
        "Contact": object(json!({
            "user_id": int, "account": string, "display_name": string,
            "departments": { "type": "array", "items": object(json!({ "department_id": int, "name": string, "title": string }), &[]) },
        }), &[]),
        "AuditEntry": object(json!({
            "seq": int, "actor": int, "action": string, "target": string,
            "detail": { "type": "object" }, "ip": string, "at_ms": int,
        }), &[]),
        "CreateGroup": object(json!({ "name": string, "members": { "type": "array", "items": int } }), &["name"]),
        "ChangeMembers": object(json!({
            "add": { "type": "array", "items": int }, "remove": { "type": "array", "items": int }
        }), &[]),
        "Group": object(json!({
            "group_id": int, "conversation": string, "name": string, "owner": int,
            "members": { "type": "array", "items": int },
        }), &[]),
        "LogLevel": object(json!({ "level": string }), &["level"]),
    })
}

/// Returns the OpenAPI 3 document of every REST endpoint.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for endpoint in endpoints() {
        let item = paths
            .entry(endpoint.path.to_string())
            .or_insert_with(|| json!({}));
        item[endpoint.method] = operation(&endpoint);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Chorus REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "JSON over HTTP; errors are {\"code\", \"message\"}. See docs/protocol.md."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [{ "bearer": [] }],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_reference_resolves() {
        let doc = super::document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("#/components/schemas/").skip(1) {
            let name: String = reference
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            assert!(schemas.contains_key(&name), "missing schema {name}");
        }
    }
}
