//! The account API's OpenAPI 3.1 document, served at `{mount}/openapi.json`. It is
//! assembled from `OPERATIONS`, which describes every endpoint `router` serves (a test
//! fails for a route without an entry, and for an entry without a route), and the schemas
//! of the JSON the handlers read and write.

use serde_json::{Value, json};

use super::AccountCtx;

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Caller {
    Anyone,
    /// A signed-in session (access token or cookie); API keys get 403.
    Session,
    /// Any credential (access token, cookie or API key).
    Credential,
    Admin,
}

/// One operation: what it is, what it reads, what it answers.
pub(super) struct Operation {
    pub(super) method: &'static str,
    /// The path under the mount, with `{param}`s as axum and OpenAPI both write them.
    pub(super) path: &'static str,
    summary: &'static str,
    caller: Caller,
    /// The JSON body schema, or `form` for the sign-in pages' form posts.
    body: Option<&'static str>,
    /// Success status, and the schema of its body (`None`: not JSON).
    ok: (u16, Option<&'static str>),
    /// Error statuses besides those every operation can answer.
    errors: &'static [u16],
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    caller: Caller,
    body: Option<&'static str>,
    ok: (u16, Option<&'static str>),
    errors: &'static [u16],
) -> Operation {
    Operation {
        method,
        path,
        summary,
        caller,
        body,
        ok,
        errors,
    }
}

use Caller::{Admin, Anyone, Credential, Session};

/// Every endpoint under the mount.
#[rustfmt::skip]
pub(super) const OPERATIONS: &[Operation] = &[
    op("post", "/register", "Create an account and sign in", Anyone, Some("RegisterIn"), (201, Some("Tokens")), &[400, 403, 413, 415, 422, 503]),
    op("post", "/login", "Sign in with email and password", Anyone, Some("LoginIn"), (200, Some("Tokens")), &[401, 403, 413, 415, 422, 503]),
    op("post", "/refresh", "Spend a refresh token (body or cookie) for a new pair", Anyone, Some("RefreshIn"), (200, Some("Tokens")), &[401, 403, 415, 422]),
    op("post", "/logout", "End the session (or all of the user's sessions)", Credential, Some("LogoutIn"), (200, Some("Message")), &[401, 403, 415, 422]),
    op("get", "/me", "The caller's account", Credential, None, (200, Some("User")), &[401, 403]),
    op("put", "/me", "Change the caller's name or organization", Session, Some("UpdateMeIn"), (200, Some("User")), &[401, 403, 415, 422]),
    op("post", "/change-password", "Change the password; ends the user's other sessions", Session, Some("ChangePasswordIn"), (200, Some("Message")), &[400, 401, 403, 415, 422, 503]),
    op("post", "/api-keys", "Create an API key (shown once)", Session, Some("ApiKeyIn"), (201, Some("ApiKeyCreated")), &[401, 403, 415, 422]),
    op("get", "/api-keys", "The caller's API keys, masked", Session, None, (200, Some("ApiKeyList")), &[401, 403]),
    op("delete", "/api-keys/{key_id}", "Revoke one of the caller's API keys", Session, None, (200, Some("Message")), &[401, 403, 404]),
    op("get", "/admin/users", "List users, a page at a time", Admin, None, (200, Some("UserPage")), &[401, 403, 422]),
    op("post", "/admin/users", "Create a user", Admin, Some("AdminUserIn"), (200, Some("User")), &[400, 401, 403, 415, 422]),
    op("put", "/admin/users/{user_id}", "Change a user", Admin, Some("AdminUserUpdate"), (200, Some("User")), &[400, 401, 403, 404, 415, 422]),
    op("put", "/admin/users/{user_id}/disable", "Disable a user (ends their sessions)", Admin, None, (200, Some("Message")), &[400, 401, 403, 404]),
    op("put", "/admin/users/{user_id}/enable", "Enable a user", Admin, None, (200, Some("Message")), &[401, 403, 404]),
    op("put", "/admin/users/{user_id}/role", "Change a user's role (`?role=`)", Admin, None, (200, Some("Message")), &[400, 401, 403, 404, 422]),
    op("get", "/sign-in", "The sign-in page (HTML)", Anyone, None, (200, None), &[404]),
    op("post", "/sign-in", "Sign in from the page's form; 303 to the return target", Anyone, Some("form"), (303, None), &[400, 403, 415]),
    op("get", "/sign-up", "The registration page (HTML), while registration is open", Anyone, None, (200, None), &[404]),
    op("post", "/sign-up", "Register from the page's form; 303 to the return target", Anyone, Some("form"), (303, None), &[400, 403, 404, 415]),
    op("get", "/sign-out", "The sign-out confirmation page (HTML)", Anyone, None, (200, None), &[404]),
    op("post", "/sign-out", "Sign out from the page; 303 to the sign-in page", Anyone, None, (303, None), &[403, 404]),
    op("get", "/assets/sign-in.css", "The sign-in pages' stylesheet", Anyone, None, (200, None), &[404]),
    op("get", "/openapi.json", "This document", Anyone, None, (200, None), &[]),
];

fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let maybe_time = json!({"type": ["string", "null"], "format": "date-time"});
    let role = json!({"type": "string", "enum": ["user", "admin", "researcher"]});
    json!({
        "RegisterIn": {"type": "object", "required": ["email", "password", "full_name"], "properties": {
            "email": {"type": "string", "format": "email"},
            "password": {"type": "string", "minLength": 8},
            "full_name": {"type": "string"},
            "organization": {"type": ["string", "null"]}}},
        "LoginIn": {"type": "object", "required": ["email", "password"], "properties": {
            "email": {"type": "string"}, "password": {"type": "string"}}},
        "RefreshIn": {"type": "object", "properties": {"refresh_token": {"type": "string"}}},
        "LogoutIn": {"type": "object", "properties": {
            "refresh_token": {"type": "string"}, "revoke_all": {"type": "boolean"}}},
        "UpdateMeIn": {"type": "object", "properties": {
            "full_name": {"type": "string"}, "organization": {"type": ["string", "null"]}}},
        "ChangePasswordIn": {"type": "object", "required": ["current_password", "new_password"], "properties": {
            "current_password": {"type": "string"}, "new_password": {"type": "string", "minLength": 8},
            "revoke_api_keys": {"type": "boolean", "default": false}}},
        "ApiKeyIn": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"},
            "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 365}}},
        "AdminUserIn": {"type": "object", "required": ["email", "password", "full_name"], "properties": {
            "email": {"type": "string", "format": "email"}, "password": {"type": "string"},
            "full_name": {"type": "string"}, "organization": {"type": ["string", "null"]},
            "role": role, "disabled": {"type": "boolean"}}},
        "AdminUserUpdate": {"type": "object", "properties": {
            "email": {"type": "string", "format": "email"}, "full_name": {"type": "string"},
            "organization": {"type": ["string", "null"]}, "role": role, "disabled": {"type": "boolean"}}},
        "Tokens": {"type": "object", "required": ["access_token", "refresh_token", "token_type", "expires_in"], "properties": {
            "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
            "token_type": {"const": "bearer"}, "expires_in": {"type": "integer"}}},
        "User": {"type": "object", "required": ["user_id", "email", "full_name", "role", "disabled", "email_verified", "created_at"], "properties": {
            "user_id": {"type": "string"}, "email": {"type": "string"}, "full_name": {"type": "string"},
            "organization": {"type": ["string", "null"]}, "role": role, "disabled": {"type": "boolean"},
            "email_verified": {"type": "boolean"}, "created_at": time, "last_login": maybe_time}},
        "UserPage": {"type": "object", "required": ["users", "total", "page", "page_size"], "properties": {
            "users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
            "total": {"type": "integer"}, "page": {"type": "integer"}, "page_size": {"type": "integer"}}},
        "ApiKeyCreated": {"type": "object", "required": ["api_key", "key_id", "name", "created_at"], "properties": {
            "api_key": {"type": "string", "description": "Shown once."}, "key_id": {"type": "string"},
            "name": {"type": "string"}, "created_at": time, "expires_at": maybe_time}},
        "ApiKeyList": {"type": "object", "required": ["api_keys"], "properties": {"api_keys": {"type": "array", "items": {
            "type": "object", "required": ["key_id", "name", "api_key", "created_at"], "properties": {
                "key_id": {"type": "string"}, "name": {"type": "string"},
                "api_key": {"type": "string", "description": "Masked."},
                "created_at": time, "expires_at": maybe_time, "last_used": maybe_time}}}}},
        "Message": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
        "Error": {"type": "object", "required": ["detail", "code"], "properties": {
            "detail": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}]},
            "code": {"type": "string", "description": "Stable machine-readable reason."}}},
        "FieldError": {"type": "object", "required": ["loc", "msg", "type"], "properties": {
            "loc": {"type": "array", "items": {"type": "string"}}, "msg": {"type": "string"}, "type": {"type": "string"}}},
        "SignInForm": {"type": "object", "properties": {
            "email": {"type": "string"}, "password": {"type": "string"}, "full_name": {"type": "string"},
            "organization": {"type": "string"}, "return_to": {"type": "string"}}},
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        303 => "See Other: to the return target (or the sign-in page)",
        400 => "Bad request",
        401 => "No valid credential",
        403 => "Not allowed (disabled user, API key where a session is needed, cross-site form)",
        404 => "Not found",
        405 => "Method not allowed",
        413 => "Body too large",
        415 => "Wrong content type",
        422 => "A value or the body's shape refused; `detail` lists the fields",
        503 => "Busy (password hashing queue full) or the store unavailable",
        _ => "Error",
    }
}

fn operation(o: &Operation) -> Value {
    let mut responses = serde_json::Map::new();
    let (status, schema) = o.ok;
    let mut ok = json!({"description": reason(status)});
    match (schema, o.path) {
        (Some(name), _) => {
            ok["content"] = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}});
        }
        (None, "/openapi.json") => ok["content"] = json!({"application/json": {}}),
        (None, "/assets/sign-in.css") => ok["content"] = json!({"text/css": {}}),
        (None, _) if status == 200 => ok["content"] = json!({"text/html": {}}),
        (None, _) => ok["headers"] = json!({"Location": {"schema": {"type": "string"}}}),
    }
    responses.insert(status.to_string(), ok);
    for e in o.errors.iter().chain(&[405]) {
        let content = if o.body == Some("form") || o.ok.1.is_none() {
            json!({"text/html": {}})
        } else {
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}})
        };
        responses.insert(
            e.to_string(),
            json!({"description": reason(*e), "content": content}),
        );
    }
    let mut v = json!({
        "operationId": format!("{}{}", o.method, o.path.replace(['/', '-', '.'], "_").replace(['{', '}'], "")),
        "summary": o.summary,
        "responses": responses,
    });
    v["security"] = match o.caller {
        Anyone => json!([]),
        Session => json!([{"bearer": []}, {"cookie": []}]),
        Credential | Admin => json!([{"bearer": []}, {"cookie": []}, {"apiKey": []}]),
    };
    if matches!(o.caller, Admin) {
        v["description"] = json!("Needs the admin role.");
    }
    if let Some(body) = o.body {
        let (media, schema) = match body {
            "form" => ("application/x-www-form-urlencoded", "SignInForm"),
            name => ("application/json", name),
        };
        v["requestBody"] = json!({"required": true, "content": {media: {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    let params: Vec<Value> = o
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .chain(match o.path {
            "/admin/users" if o.method == "get" => vec![
                json!({"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}}),
                json!({"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1}}),
            ],
            "/admin/users/{user_id}/role" => vec![
                json!({"name": "role", "in": "query", "required": true, "schema": {"type": "string", "enum": ["user", "admin", "researcher"]}}),
            ],
            "/sign-in" | "/sign-up" if o.method == "get" => vec![
                json!({"name": "return_to", "in": "query", "schema": {"type": "string"}}),
            ],
            _ => vec![],
        })
        .collect();
    if !params.is_empty() {
        v["parameters"] = Value::Array(params);
    }
    v
}

/// The document, for the API under `mount`.
pub(super) fn document(ctx: &AccountCtx) -> Value {
    let mut paths = serde_json::Map::new();
    for o in OPERATIONS {
        let entry = paths.entry(o.path).or_insert_with(|| json!({}));
        entry[o.method] = operation(o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis account API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Users, sessions and API keys, wire-compatible with the gateway Portcullis replaces. Errors are {detail, code}; a 422's detail lists {loc, msg, type}.",
        },
        "servers": [{"url": ctx.accounts.mount}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or pc_ API key"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "access_token"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    })
}
