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
    assert!(text.contains("35 selected"), "every operation was tested:\n{text}");
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
