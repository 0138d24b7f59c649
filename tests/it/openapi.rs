//! `{mount}/openapi.json`: an OpenAPI 3.1 document whose every `$ref` resolves, whose
//! operations all have ids, success and error responses, and which lists exactly the
//! operations the server answers (each is routed; nothing routed is missing).

use http::Method;
use serde_json::Value;

use crate::harness::TestServer;

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_whole_and_matches_what_is_served() {
    let srv = TestServer::start().await;
    let r = srv.get(&srv.auth_path("/openapi.json")).send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(doc["servers"][0]["url"], "/api/v1/auth");

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }

    let mut ids = std::collections::HashSet::new();
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
            let codes: Vec<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            assert!(
                codes.iter().any(|c| (200..400).contains(c)),
                "{method} {path}"
            );
            assert!(
                codes.iter().any(|c| (400..500).contains(c)),
                "{method} {path}: no error response"
            );
            // Routed: the method is answered (any status but 405), whatever the arguments.
            let concrete = path
                .replace("{key_id}", "key_x")
                .replace("{user_id}", "user_x");
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let status = srv.req(m, &srv.auth_path(&concrete)).send().await.status;
            assert_ne!(status, 405, "{method} {path} is described but not routed");
        }
    }
    assert!(operations >= 24, "{operations}");
    // The error responses of JSON operations carry the error schema.
    let login_401 = &doc["paths"]["/login"]["post"]["responses"]["401"];
    assert_eq!(
        login_401["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    // And an undescribed method on a described path is refused.
    assert_eq!(
        srv.req(Method::PATCH, &srv.auth_path("/me"))
            .send()
            .await
            .status,
        405
    );
}
