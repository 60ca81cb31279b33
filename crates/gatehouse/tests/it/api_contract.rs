//! The admin API against its own OpenAPI document, with schemathesis (pinned, from
//! PyPI, installed into `target/schemathesis` on first use): generated requests to
//! every operation, as an administrator, find no server error and no answer that
//! breaks the document (schema or content type).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The schemathesis executable, installed once into a virtual environment.
fn schemathesis_or_skip(test: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis");
    let bin = venv.join("bin/schemathesis");
    let installed = venv.join(format!("{SCHEMATHESIS}.installed"));
    if !installed.exists() {
        let venv_made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
        let pip = venv.join("bin/pip");
        let ok = venv_made.is_ok_and(|s| s.success())
            && Command::new(&pip)
                .args(["install", "--quiet", "--disable-pip-version-check", SCHEMATHESIS])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            let why = "cannot install schemathesis: needs python3 with venv (apt-get install python3-venv) and PyPI";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why}; under CI=true a test never skips");
            }
            eprintln!("{test}: skipped: {why}");
            return None;
        }
        std::fs::write(&installed, b"").expect("mark the install");
    }
    Some(bin)
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let Some(schemathesis) = schemathesis_or_skip("api_contract") else {
        return;
    };
    let server = TestServer::start();
    // A token for every registry (a login's is limited to the one it logged in to).
    let token = server.create_token(&["--user", "admin", "--name", "schemathesis"]);
    let report = tempfile::tempdir().expect("tempdir");
    let out = Command::new(schemathesis)
        .current_dir(report.path())
        .args([
            "run",
            &format!("{}/-/api/v1/openapi.json", server.base),
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--max-examples",
            "12",
            "--seed",
            "20261203",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "--no-color",
        ])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n--- server log ---\n{}",
        server.log()
    );
    let document: serde_json::Value = http()
        .get(format!("{}/-/api/v1/openapi.json", server.base))
        .send()
        .expect("document")
        .json()
        .expect("json");
    let operations: usize = document["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|methods| methods.as_object().map_or(0, |m| m.len()))
        .sum();
    assert!(operations >= 45, "{operations} operations documented");
    assert!(
        text.contains(&format!("Selected: {operations}/{operations}")),
        "every operation was tested:\n{text}"
    );
    let summary: Vec<&str> = text.lines().skip_while(|l| !l.contains("SUMMARY")).collect();
    eprintln!("api_contract: {}", summary.join("\n"));
    // Still alive and still answering as the document says.
    let ping = http().get(format!("{}/-/ping", server.base)).send().expect("ping");
    assert_eq!(ping.status(), 200);
}

#[test]
fn lists_come_in_pages_that_show_every_item_once() {
    let server = TestServer::start();
    let token = server.create_token(&["--user", "admin", "--name", "pages"]);
    let api = |path: &str| format!("{}/-/api/v1{path}", server.base);
    let get = |path: &str| -> serde_json::Value {
        let response = http().get(api(path)).bearer_auth(&token).send().expect("get");
        assert_eq!(response.status(), 200, "{path}");
        response.json().expect("json")
    };
    let mut made: Vec<String> = (0..23).map(|i| format!("paged-{i:02}")).collect();
    for name in &made {
        let created = http()
            .post(api("/registries"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .expect("create");
        assert_eq!(created.status(), 201);
    }
    made.push("default".into());
    made.sort();

    // Registries, ten at a time: three pages, every one once, in order.
    let mut seen = Vec::new();
    let mut path = "/registries?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let page = get(&path);
        pages += 1;
        seen.extend(
            page["registries"]
                .as_array()
                .expect("registries")
                .iter()
                .map(|r| r["name"].as_str().unwrap_or_default().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/registries?limit=10&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made);

    // The audit log, newest first: pages that follow each other without a gap.
    let all = get("/audit?action=registry.create&limit=1000");
    let all: Vec<serde_json::Value> = all["entries"].as_array().expect("entries").clone();
    assert_eq!(all.len(), 24, "23 created here and default at first start");
    let first = get("/audit?action=registry.create&limit=20");
    let next = first["next"].as_str().expect("a next page").to_owned();
    let second = get(&format!("/audit?action=registry.create&limit=20&cursor={next}"));
    assert!(second["next"].is_null(), "the last page");
    let paged: Vec<serde_json::Value> = [first["entries"].as_array(), second["entries"].as_array()]
        .into_iter()
        .flatten()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(paged, all);

    // A cursor nobody gave out is refused, as problem+json.
    let bad = http()
        .get(api("/audit?cursor=yesterday"))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = bad.json().expect("problem");
    assert_eq!(problem["status"], 400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is no cursor this list gave out"),
        "{problem}"
    );
}

#[test]
fn the_api_manages_upstreams_grants_and_tokens_like_the_cli() {
    let server = TestServer::start();
    let token = server.create_token(&["--user", "admin", "--name", "api"]);
    let api = |path: &str| format!("{}/-/api/v1{path}", server.base);
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = http().request(method, api(path)).bearer_auth(&token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().expect("request")
    };
    use reqwest::Method;
    let created = call(
        Method::POST,
        "/registries",
        Some(serde_json::json!({"name": "team", "upstreams": []})),
    );
    assert_eq!(created.status(), 201);

    // Upstreams: added in order, moved, flagged internal, removed; credentials never shown.
    for body in [
        serde_json::json!({"spec": "npmjs"}),
        serde_json::json!({"spec": "registry:default", "internal": true}),
        serde_json::json!({"spec": "https://npm.example.com/", "token": "s3cret-upstream-token"}),
    ] {
        assert_eq!(
            call(Method::POST, "/registries/team/upstreams", Some(body)).status(),
            201
        );
    }
    let bad = call(
        Method::POST,
        "/registries/team/upstreams",
        Some(serde_json::json!({"spec": "ftp://nope"})),
    );
    assert_eq!(bad.status(), 400);
    let listed = call(Method::GET, "/registries/team/upstreams", None)
        .text()
        .expect("text");
    assert!(!listed.contains("s3cret-upstream-token"), "{listed}");
    let order = || -> Vec<String> {
        let listed: serde_json::Value = call(Method::GET, "/registries/team/upstreams", None)
            .json()
            .expect("json");
        listed["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .map(|u| {
                format!(
                    "{}{}",
                    u["spec"].as_str().unwrap_or_default(),
                    if u["internal"] == true { "*" } else { "" }
                )
            })
            .collect()
    };
    assert_eq!(order(), ["npmjs", "registry:default*", "https://npm.example.com/"]);
    let moved = call(
        Method::PATCH,
        "/registries/team/upstreams?spec=https%3A%2F%2Fnpm.example.com%2F",
        Some(serde_json::json!({"move": "earlier", "internal": true})),
    );
    assert_eq!(moved.status(), 200);
    assert_eq!(order(), ["npmjs", "https://npm.example.com/*", "registry:default*"]);
    assert_eq!(
        call(Method::DELETE, "/registries/team/upstreams?spec=npmjs", None).status(),
        204
    );
    assert_eq!(order(), ["https://npm.example.com/*", "registry:default*"]);
    let missing = call(Method::DELETE, "/registries/team/upstreams?spec=npmjs", None);
    assert_eq!(missing.status(), 404);
    // The CLI reads the same list.
    let cli = server.cli_ok(&["registry", "upstream", "list", "team"]);
    assert!(
        cli.contains("https://npm.example.com/") && cli.contains("registry:default") && !cli.contains("npmjs"),
        "{cli}"
    );

    // Grants and the default role, on a registry with no upstream to ask.
    let created = call(
        Method::POST,
        "/registries",
        Some(serde_json::json!({"name": "crew", "upstreams": []})),
    );
    assert_eq!(created.status(), 201);
    server.add_user("lee", "lee-password-1");
    let none = call(
        Method::PATCH,
        "/registries/crew",
        Some(serde_json::json!({"default_role": "none"})),
    );
    assert_eq!(none.status(), 200);
    let lee = server.login("crew", "lee", "lee-password-1");
    let refused = publish(&server, "crew", &lee, &publish_body("lee-first", "1.0.0"));
    assert_eq!(refused.status(), 403, "no role, nothing published");
    let granted = call(
        Method::PUT,
        "/registries/crew/members/lee",
        Some(serde_json::json!({"role": "publish"})),
    );
    assert_eq!(granted.status(), 200);
    assert_eq!(
        publish(&server, "crew", &lee, &publish_body("lee-first", "1.0.0")).status(),
        201
    );
    let members: serde_json::Value = call(Method::GET, "/registries/crew/members", None)
        .json()
        .expect("json");
    assert_eq!(members["default_role"], "none");
    assert_eq!(
        members["members"],
        serde_json::json!([{"user": "lee", "role": "publish"}])
    );
    let wrong = call(
        Method::PUT,
        "/registries/crew/members/lee",
        Some(serde_json::json!({"role": "owner"})),
    );
    assert_eq!(wrong.status(), 400);
    assert_eq!(call(Method::DELETE, "/registries/crew/members/lee", None).status(), 204);
    let refused = publish(&server, "crew", &lee, &publish_body("lee-first", "1.0.1"));
    assert_eq!(refused.status(), 403, "the grant is gone");

    // Tokens: made read-only by default, listed without their value, revoked.
    let made: serde_json::Value = call(
        Method::POST,
        "/tokens",
        Some(serde_json::json!({"user": "lee", "name": "ci", "registries": ["default"], "expires": "7d"})),
    )
    .json()
    .expect("json");
    let secret = made["token"].as_str().expect("token").to_owned();
    assert_eq!(get_from(&server, "default", "-/whoami", &secret).status(), 200);
    let refused = publish(&server, "default", &secret, &publish_body("lee-pkg", "1.0.0"));
    assert_eq!(refused.status(), 403, "read-only");
    let listed = call(Method::GET, "/tokens?user=lee", None).text().expect("text");
    assert!(
        listed.contains("\"name\":\"ci\"") && !listed.contains(&secret),
        "{listed}"
    );
    let bad = call(
        Method::POST,
        "/tokens",
        Some(serde_json::json!({"user": "lee", "cidr_whitelist": ["10.0.0.0/99"]})),
    );
    assert_eq!(bad.status(), 400);
    // Housekeeping and the internal flag, as `gatehouse check`, `gc` and `package internal`.
    let checked: serde_json::Value = call(Method::GET, "/check", None).json().expect("json");
    assert_eq!(checked["clean"], true, "{checked}");
    assert!(checked["versions"].as_u64() >= Some(1), "{checked}");
    let swept: serde_json::Value = call(Method::POST, "/gc", Some(serde_json::json!({"dry_run": true})))
        .json()
        .expect("json");
    assert_eq!(swept["dry_run"], true);
    assert_eq!(swept["removed"], serde_json::json!([]), "nothing is an orphan");
    let bad = call(Method::POST, "/gc", Some(serde_json::json!({"grace": "forever"})));
    assert_eq!(bad.status(), 400);
    let flagged = call(
        Method::PATCH,
        "/registries/crew/packages/lee-first",
        Some(serde_json::json!({"internal": true})),
    );
    assert_eq!(flagged.status(), 200);
    let listed: serde_json::Value = call(Method::GET, "/registries/crew/packages", None)
        .json()
        .expect("json");
    assert_eq!(listed["packages"][0]["internal"], true, "{listed}");
    let missing = call(
        Method::PATCH,
        "/registries/crew/packages/nobody-has-this",
        Some(serde_json::json!({"internal": true})),
    );
    assert_eq!(missing.status(), 404);

    let key = made["key"].as_str().expect("key");
    assert_eq!(call(Method::DELETE, &format!("/tokens/{key}"), None).status(), 204);
    assert_eq!(get_from(&server, "default", "-/whoami", &secret).status(), 401);
}
