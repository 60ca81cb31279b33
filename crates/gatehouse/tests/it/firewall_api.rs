//! The firewall's admin REST API (`/-/api/v1/…`): policies, `policy/check`,
//! decisions and the quarantine queue, exceptions, the advisory database. Each test
//! checks what the call changes (or, refused, that nothing changed), through the
//! registry's answers where it can.

use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{Value, json};

use crate::support::fake_upstream::FakeUpstream;
use crate::support::firewall::{osv_fixtures, package_lock, policy_in_config, publish_with_postinstall, zip_of};
use crate::support::*;

const DENY_EVT: &str = "[[deny]]\npackage = \"evt\"\nrange = \"1.1.0\"\nreason = \"compromised release\"\n";

/// A server whose `default` registry proxies `fake`, with `policy` (if any) in its
/// config file as `[registries.default.policy]`.
fn proxying(fake: &FakeUpstream, policy: Option<&str>) -> TestServer {
    let mut config = format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    );
    if let Some(policy) = policy {
        config.push_str(&policy_in_config("default", policy));
    }
    TestServer::start_with_config(&config)
}

/// `evt` 1.0.0 and 1.1.0 (latest) upstream.
fn evt_upstream() -> FakeUpstream {
    let fake = FakeUpstream::start();
    fake.publish("evt", "1.0.0");
    fake.publish("evt", "1.1.0");
    fake
}

fn api(server: &TestServer, path: &str) -> String {
    format!("{}/-/api/v1/{path}", server.base)
}

fn send(request: RequestBuilder, token: &str) -> Response {
    request.bearer_auth(token).send().expect("request")
}

/// Sends a body the server refuses before reading it all. The server answers and
/// closes; a client still writing may see the connection reset before it reads the
/// answer (a race in the OS, not an answer), so a reset is tried again, a few times.
fn refused_body(request: impl Fn() -> RequestBuilder, token: &str) -> Response {
    for _ in 0..4 {
        if let Ok(response) = request().bearer_auth(token).send() {
            return response;
        }
    }
    send(request(), token)
}

/// A 2xx JSON answer with the expected status.
fn ok_json(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(actual, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

fn get_api(server: &TestServer, path: &str, token: &str) -> Value {
    ok_json(send(http().get(api(server, path)), token), 200)
}

fn status_of(server: &TestServer, path: &str, token: &str) -> u16 {
    get_from(server, "default", path, token).status().as_u16()
}

fn latest(server: &TestServer, token: &str, name: &str) -> Value {
    packument(server, "default", token, name).expect("packument")["dist-tags"]["latest"].clone()
}

/// A 403 from the policy naming `rule`.
fn assert_policy_refusal(response: Response, rule: &str) {
    let status = response.status().as_u16();
    let body: Value = response.json().expect("json");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "EPOLICY", "{body}");
    assert_eq!(body["rule"], rule, "{body}");
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(osv_fixtures().join(path)).expect("fixture")
}

fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).expect("fixture json")
}

/// The four GitHub-reviewed records, as one JSON array.
fn github_reviewed() -> Vec<u8> {
    let records: Vec<Value> = [
        "2021/05/GHSA-35jh-r3h4-6jhm/GHSA-35jh-r3h4-6jhm.json",
        "2020/07/GHSA-p6mc-m468-83gw/GHSA-p6mc-m468-83gw.json",
        "2022/01/GHSA-29mw-wpgm-hmr9/GHSA-29mw-wpgm-hmr9.json",
        "2018/11/GHSA-mh6f-8j2x-4483/GHSA-mh6f-8j2x-4483.json",
    ]
    .iter()
    .map(|p| fixture_json(&format!("github-reviewed/{p}")))
    .collect();
    serde_json::to_vec(&records).expect("json")
}

fn import(server: &TestServer, token: &str, query: &str, body: Vec<u8>) -> Response {
    send(
        http()
            .post(api(server, &format!("advisories/import{query}")))
            .body(body),
        token,
    )
}

#[test]
fn a_policy_put_over_the_api_applies_at_once_shows_back_and_delete_restores_the_default() {
    let fake = evt_upstream();
    let server = proxying(&fake, None);
    let token = server.admin_token();
    let url = api(&server, "registries/default/policy");

    let shown = get_api(&server, "registries/default/policy", &token);
    assert_eq!(shown["registry"], "default");
    assert_eq!(shown["default"], true, "{shown}");
    let default_document = shown["document"].as_str().expect("document").to_owned();
    assert_eq!(latest(&server, &token, "evt"), "1.1.0");

    // The raw TOML as the body, whatever its content type says.
    let set = ok_json(
        send(
            http()
                .put(&url)
                .header("content-type", "application/toml")
                .body(DENY_EVT),
            &token,
        ),
        200,
    );
    assert_eq!(
        set,
        json!({"registry": "default", "document": DENY_EVT, "default": false})
    );
    assert_eq!(latest(&server, &token, "evt"), "1.0.0", "in force at once");
    assert_policy_refusal(get_from(&server, "default", "evt/-/evt-1.1.0.tgz", &token), "deny");
    assert_eq!(fake.hits("evt/-/evt-1.1.0.tgz"), 0, "never pulled");
    assert_eq!(status_of(&server, "evt/-/evt-1.0.0.tgz", &token), 200);
    let shown = get_api(&server, "registries/default/policy", &token);
    assert_eq!(
        (shown["document"].as_str(), &shown["default"]),
        (Some(DENY_EVT), &json!(false))
    );

    // Or as JSON.
    let wider = "[[deny]]\npackage = \"evt\"\nreason = \"abandoned\"\n";
    ok_json(send(http().put(&url).json(&json!({ "document": wider })), &token), 200);
    assert_eq!(get_api(&server, "registries/default/policy", &token)["document"], wider);
    assert_policy_refusal(get_from(&server, "default", "evt/-/evt-1.0.0.tgz", &token), "deny");

    let reset = ok_json(send(http().delete(&url), &token), 200);
    assert_eq!(reset["default"], true, "{reset}");
    assert_eq!(reset["document"], default_document.as_str());
    assert_eq!(latest(&server, &token, "evt"), "1.1.0");
    assert_eq!(status_of(&server, "evt/-/evt-1.1.0.tgz", &token), 200);

    // Audited by the services, as the administrator who called.
    let audit = get_api(&server, "audit?action=policy.set", &token);
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{audit}");
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == "admin" && e["registry"] == "default"),
        "{audit}"
    );
}

#[test]
fn a_policy_with_errors_is_refused_with_its_line_and_the_old_one_stays_in_force() {
    let fake = evt_upstream();
    let server = proxying(&fake, Some(DENY_EVT));
    let token = server.admin_token();
    let url = api(&server, "registries/default/policy");
    for (body, said) in [
        ("[release_age]\nmin = \"3 days\"\n", "line 2"),
        ("not toml at all [", "line 1"),
        ("[vulnerabilities]\nblock = true\n", "unknown field `block`"),
    ] {
        let error = expect_error(send(http().put(&url).body(body), &token), 400);
        assert!(
            error.contains(said) && error.contains("the policy of default is unchanged"),
            "{body:?}: {error}"
        );
    }
    let error = expect_error(send(http().put(&url).json(&json!({"policy": DENY_EVT})), &token), 400);
    assert!(error.contains("expected {\"document\""), "{error}");
    let error = expect_error(
        send(
            http()
                .put(&url)
                .json(&json!({"document": "[licenses]\nallow = [\"Apache2\"]\n"})),
            &token,
        ),
        400,
    );
    assert!(error.contains("\"Apache2\" is not an SPDX license id"), "{error}");
    let error = expect_error(send(http().put(&url).body(vec![0xff, 0xfe, 0x00]), &token), 400);
    assert!(error.contains("not UTF-8"), "{error}");

    let shown = get_api(&server, "registries/default/policy", &token);
    assert_eq!(shown["default"], false);
    assert!(
        shown["document"]
            .as_str()
            .expect("document")
            .contains("compromised release"),
        "{shown}"
    );
    assert_eq!(latest(&server, &token, "evt"), "1.0.0");
    assert_policy_refusal(get_from(&server, "default", "evt/-/evt-1.1.0.tgz", &token), "deny");
}

#[test]
fn the_firewall_api_is_for_administrators_and_names_unknown_registries() {
    let fake = evt_upstream();
    let server = proxying(&fake, None);
    let admin = server.admin_token();
    server.add_user("alice", "alice-password-1");
    let alice = server.create_token(&["--user", "alice"]);
    let lock = package_lock(&[("evt", "1.1.0")]);
    let calls = |registry: &str| -> Vec<(&'static str, RequestBuilder)> {
        let at = |path: &str| api(&server, &format!("registries/{registry}/{path}"));
        vec![
            ("GET policy", http().get(at("policy"))),
            ("PUT policy", http().put(at("policy")).body(DENY_EVT)),
            ("DELETE policy", http().delete(at("policy"))),
            ("POST policy/check", http().post(at("policy/check")).body(lock.clone())),
            ("GET decisions", http().get(at("decisions"))),
            ("GET quarantine", http().get(at("quarantine"))),
            (
                "POST quarantine/approve",
                http()
                    .post(at("quarantine/approve"))
                    .json(&json!({"package": "evt", "version": "1.1.0"})),
            ),
            (
                "POST quarantine/reject",
                http()
                    .post(at("quarantine/reject"))
                    .json(&json!({"package": "evt", "version": "1.1.0"})),
            ),
            ("GET exceptions", http().get(at("exceptions"))),
            (
                "POST exceptions",
                http()
                    .post(at("exceptions"))
                    .json(&json!({"package": "evt@1.1.0", "rule": "deny", "expires": "1d", "reason": "x"})),
            ),
            ("DELETE exceptions/1", http().delete(at("exceptions/1"))),
        ]
    };
    let everywhere = |registry: &str| {
        let mut all = calls(registry);
        all.push(("GET advisories", http().get(api(&server, "advisories"))));
        all.push((
            "POST advisories/import",
            http().post(api(&server, "advisories/import")).body(github_reviewed()),
        ));
        all
    };

    for (what, request) in everywhere("default") {
        let error = expect_error(send(request, &alice), 403);
        assert!(error.contains("the admin API is for administrators"), "{what}: {error}");
    }
    for (what, request) in everywhere("default") {
        let response = request.send().expect("anonymous");
        assert_eq!(response.status(), 401, "{what}");
    }
    // (A login token is for the registry it logged in to; this one is for any.)
    let any_registry = server.create_token(&["--user", "admin"]);
    for (what, request) in calls("nope") {
        let error = expect_error(send(request, &any_registry), 404);
        assert!(error.contains("nope"), "{what}: {error}");
    }

    // Nothing changed.
    assert_eq!(get_api(&server, "registries/default/policy", &admin)["default"], true);
    assert_eq!(get_api(&server, "advisories", &admin)["advisories"], 0);
    assert_eq!(
        get_api(&server, "registries/default/exceptions", &admin),
        json!({"exceptions": []})
    );
    assert_eq!(latest(&server, &admin, "evt"), "1.1.0");
}

#[test]
fn a_lockfile_checked_over_the_api_lists_what_the_policy_would_hold_back() {
    let fake = evt_upstream();
    fake.publish("ok", "2.0.0");
    let server = proxying(&fake, Some(DENY_EVT));
    let token = server.admin_token();
    let check = |body: String| {
        send(
            http().post(api(&server, "registries/default/policy/check")).body(body),
            &token,
        )
    };

    let report = ok_json(check(package_lock(&[("evt", "1.1.0"), ("ok", "2.0.0")])), 200);
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["registry"], "default");
    assert_eq!(report["lockfile"], "package-lock.json");
    assert_eq!(report["checked"], 2);
    let held = report["held_back"].as_array().expect("held_back");
    assert_eq!(held.len(), 1, "{report}");
    assert_eq!(
        (held[0]["name"].as_str(), held[0]["version"].as_str()),
        (Some("evt"), Some("1.1.0"))
    );
    assert_eq!(held[0]["decision"], "block");
    assert_eq!(held[0]["rule"], "deny");
    assert!(
        held[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("compromised release"),
        "{report}"
    );

    let clean = ok_json(check(package_lock(&[("evt", "1.0.0"), ("ok", "2.0.0")])), 200);
    assert_eq!(clean["ok"], true, "{clean}");
    assert_eq!(clean["held_back"], json!([]));

    let error = expect_error(check("hello, not a lockfile".into()), 400);
    assert!(error.contains("not a lockfile Gatehouse reads"), "{error}");
    let error = expect_error(check("{\"lockfileVersion\": 3, \"packages\": 7".into()), 400);
    assert!(!error.is_empty());
}

#[test]
fn quarantined_versions_are_listed_and_reviewed_over_the_api() {
    let fake = FakeUpstream::start();
    fake.publish("native", "1.0.0");
    publish_with_postinstall(&fake, "native", "1.1.0");
    publish_with_postinstall(&fake, "native", "1.2.0");
    let server = proxying(&fake, Some("[install_scripts]\naction = \"quarantine\"\n"));
    let token = server.admin_token();
    let queue = || get_api(&server, "registries/default/quarantine", &token)["decisions"].clone();
    assert_eq!(queue(), json!([]), "nothing asked for yet");

    // Asked for, so in the queue.
    for version in ["1.1.0", "1.2.0"] {
        assert_policy_refusal(
            get_from(&server, "default", &format!("native/-/native-{version}.tgz"), &token),
            "install_scripts",
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || queue()
            .as_array()
            .is_some_and(|q| q.len() == 2)),
        "{}",
        queue()
    );
    let listed = queue();
    for entry in listed.as_array().expect("queue") {
        assert_eq!(entry["package"], "native");
        assert_eq!(entry["decision"], "quarantine", "{entry}");
        assert_eq!(entry["rule"], "install_scripts", "{entry}");
        assert!(
            entry["reason"].as_str().expect("reason").contains("postinstall"),
            "{entry}"
        );
        assert!(
            entry["decided_at"].as_str().expect("decided_at").ends_with('Z'),
            "{entry}"
        );
        assert!(
            entry["findings"].is_array() || entry["findings"].is_object(),
            "parsed: {entry}"
        );
    }

    // The decisions list them too, by package and with a limit.
    let decisions = get_api(&server, "registries/default/decisions?package=native", &token);
    let versions: Vec<&str> = decisions["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter_map(|d| d["version"].as_str())
        .collect();
    assert!(
        versions.contains(&"1.1.0") && versions.contains(&"1.2.0"),
        "{decisions}"
    );
    let one = get_api(&server, "registries/default/decisions?package=native&limit=1", &token);
    assert_eq!(one["decisions"].as_array().map(Vec::len), Some(1), "{one}");
    let other = get_api(&server, "registries/default/decisions?package=evt", &token);
    assert_eq!(other, json!({"decisions": []}));
    let review = |action: &str, body: Value| {
        send(
            http()
                .post(api(&server, &format!("registries/default/quarantine/{action}")))
                .json(&body),
            &token,
        )
    };
    let error = expect_error(review("approve", json!({"package": "native", "version": "9.9.9"})), 404);
    assert!(
        error.contains("native@9.9.9 is not in the quarantine queue of registry default"),
        "{error}"
    );
    let error = expect_error(review("approve", json!({"package": "native@1.2.0"})), 400);
    assert!(
        error.contains("expected {\"package\": NAME, \"version\": VERSION"),
        "{error}"
    );
    assert_eq!(queue().as_array().map(Vec::len), Some(2), "nothing reviewed");

    assert_eq!(
        ok_json(
            review(
                "approve",
                json!({"package": "native", "version": "1.2.0", "reason": "reviewed setup.js"})
            ),
            200
        ),
        json!({"ok": true})
    );
    ok_json(
        review(
            "reject",
            json!({"package": "native", "version": "1.1.0", "reason": "phones home"}),
        ),
        200,
    );
    assert_eq!(status_of(&server, "native/-/native-1.2.0.tgz", &token), 200);
    assert_eq!(latest(&server, &token, "native"), "1.2.0");
    let rejected = get_from(&server, "default", "native/-/native-1.1.0.tgz", &token);
    assert_eq!(rejected.status(), 403);
    let body: Value = rejected.json().expect("json");
    assert_eq!(body["rule"], "review", "{body}");
    assert!(body["error"].as_str().expect("error").contains("phones home"), "{body}");
    assert_eq!(queue(), json!([]), "reviewed versions leave the queue");

    let error = expect_error(
        send(
            http().get(api(&server, "registries/default/decisions?limit=many")),
            &token,
        ),
        400,
    );
    assert!(error.contains("invalid query"), "{error}");
}

#[test]
fn exceptions_are_added_listed_and_removed_over_the_api() {
    let fake = evt_upstream();
    let server = proxying(&fake, Some(DENY_EVT));
    let token = server.admin_token();
    let url = api(&server, "registries/default/exceptions");
    let add = |body: Value| send(http().post(&url).json(&body), &token);
    let list = || get_api(&server, "registries/default/exceptions", &token)["exceptions"].clone();

    for (body, said) in [
        (
            json!({"package": "evt@1.1.0", "rule": "deny", "expires": "2020-01-01T00:00:00Z", "reason": "x"}),
            "is in the past",
        ),
        (
            json!({"package": "evt@1.1.0", "rule": "speed", "expires": "1d", "reason": "x"}),
            "unknown rule \"speed\"",
        ),
        (
            json!({"package": "evt@1.1.0", "rule": "malware", "expires": "1d", "reason": "x"}),
            "malware",
        ),
        (
            json!({"package": "evt@1.1.0", "rule": "deny", "expires": "1d", "reason": "  "}),
            "an exception needs a reason",
        ),
        (
            json!({"package": "evt", "rule": "deny", "expires": "1d", "reason": "x"}),
            "expected NAME@VERSION",
        ),
        (json!({"package": "evt@1.1.0", "rule": "deny"}), "expected {\"package\""),
    ] {
        let error = expect_error(add(body.clone()), 400);
        assert!(error.contains(said), "{body}: {error}");
    }
    assert_eq!(list(), json!([]), "nothing added");
    assert_policy_refusal(get_from(&server, "default", "evt/-/evt-1.1.0.tgz", &token), "deny");

    let added = ok_json(
        add(json!({"package": "evt@1.1.0", "rule": "deny", "expires": "1d", "reason": "vendor confirmed it is clean"})),
        201,
    );
    let id = added["id"].as_i64().expect("id");
    assert_eq!(added["package"], "evt");
    assert_eq!(added["range"], "1.1.0");
    assert_eq!(added["rule"], "deny");
    assert_eq!(added["expired"], false);
    assert_eq!(added["created_by"], "admin");
    assert_eq!(added["reason"], "vendor confirmed it is clean");
    assert!(
        added["expires_at"].as_str().expect("expires_at").ends_with('Z'),
        "{added}"
    );
    assert_eq!(status_of(&server, "evt/-/evt-1.1.0.tgz", &token), 200, "waived at once");
    assert_eq!(latest(&server, &token, "evt"), "1.1.0");

    // A short one, listed as expired once its time passes.
    let short = ok_json(
        add(json!({"package": "evt@1.0.0", "rule": "deny", "expires": "1s", "reason": "briefly"})),
        201,
    );
    let listed = list();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(listed.as_array().expect("list").contains(&added), "{listed}");
    assert!(
        eventually(Duration::from_secs(5), || {
            list()
                .as_array()
                .expect("list")
                .iter()
                .any(|e| e["id"] == short["id"] && e["expired"] == true)
        }),
        "{}",
        list()
    );

    let removed = ok_json(send(http().delete(format!("{url}/{id}")), &token), 200);
    assert_eq!(removed["ok"], true);
    assert_eq!(removed["removed"]["id"], id);
    assert_policy_refusal(get_from(&server, "default", "evt/-/evt-1.1.0.tgz", &token), "deny");
    let error = expect_error(send(http().delete(format!("{url}/{id}")), &token), 404);
    assert!(
        error.contains(&format!("registry default has no exception #{id}")),
        "{error}"
    );
    expect_error(send(http().delete(format!("{url}/abc")), &token), 404);
    assert_eq!(list().as_array().map(Vec::len), Some(1));
}

#[test]
fn advisories_imported_over_the_api_take_effect_and_a_malformed_import_changes_nothing() {
    let fake = FakeUpstream::start();
    for v in ["4.17.20", "4.17.21"] {
        fake.publish("lodash", v);
    }
    let server = proxying(
        &fake,
        Some("[vulnerabilities]\naction = \"block\"\nmin_severity = \"high\"\n"),
    );
    let token = server.admin_token();
    let stats = || get_api(&server, "advisories", &token);
    assert_eq!(
        stats(),
        json!({"advisories": 0, "packages": 0, "newest_modified": null, "last_import": null})
    );
    assert_eq!(status_of(&server, "lodash/-/lodash-4.17.20.tgz", &token), 200);
    // Pulled and stored: the new data must reach a version already held, too.

    let imported = ok_json(import(&server, &token, "", github_reviewed()), 200);
    assert_eq!(imported["imported"], 4, "{imported}");
    assert_eq!(imported["added"], 4, "{imported}");
    assert_eq!(imported["removed"], 0);
    assert_eq!(imported["skipped"], json!([]));
    let after = stats();
    assert_eq!(after["advisories"], 4, "{after}");
    assert!(
        after["newest_modified"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{after}"
    );
    assert_eq!(after["last_import"]["added"], 4, "{after}");
    assert_eq!(after["last_import"]["replaced"], false, "{after}");
    assert_policy_refusal(
        get_from(&server, "default", "lodash/-/lodash-4.17.20.tgz", &token),
        "vulnerabilities",
    );
    assert_eq!(status_of(&server, "lodash/-/lodash-4.17.21.tgz", &token), 200);

    // The same record again: nothing new.
    let again = ok_json(
        import(
            &server,
            &token,
            "?replace=false",
            fixture("github-reviewed/2021/05/GHSA-35jh-r3h4-6jhm/GHSA-35jh-r3h4-6jhm.json"),
        ),
        200,
    );
    assert_eq!(
        (again["added"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(1)),
        "{again}"
    );

    // Refusals: malformed JSON, an unsafe zip, a bad query. The database is as it was.
    let before = stats();
    let error = expect_error(
        import(&server, &token, "?replace=true", fixture("bad/malformed.json")),
        400,
    );
    assert!(
        error.contains("not an OSV record") && error.contains("the advisory database is unchanged"),
        "{error}"
    );
    let evil = zip_of(&[
        ("MAL-2025-6974.json", &fixture("malicious/MAL-2025-6974.json")),
        ("../../etc/evil.json", &fixture("malicious/MAL-2025-6974.json")),
    ]);
    let error = expect_error(import(&server, &token, "?replace=true", evil), 400);
    assert!(error.contains("../../etc/evil.json"), "{error}");
    let error = expect_error(import(&server, &token, "", Vec::new()), 400);
    assert!(error.contains("the advisory database is unchanged"), "{error}");
    let error = expect_error(import(&server, &token, "?replace=maybe", github_reviewed()), 400);
    assert!(error.contains("invalid query"), "{error}");
    assert_eq!(stats(), before, "the database is unchanged");
    assert_policy_refusal(
        get_from(&server, "default", "lodash/-/lodash-4.17.20.tgz", &token),
        "vulnerabilities",
    );

    // A zip, with a record that cannot be used: skipped by id, the rest imported.
    let zip = zip_of(&[
        ("MAL-2025-191025.json", &fixture("malicious/MAL-2025-191025.json")),
        ("invalid-range.json", &fixture("bad/invalid-range.json")),
        ("withdrawn.json", &fixture("bad/withdrawn.json")),
    ]);
    let zipped = ok_json(import(&server, &token, "", zip), 200);
    assert_eq!(
        (zipped["imported"].as_u64(), zipped["added"].as_u64()),
        (Some(1), Some(1)),
        "{zipped}"
    );
    assert_eq!(zipped["ignored"], 1, "withdrawn: {zipped}");
    assert_eq!(zipped["skipped"][0]["id"], "GHSA-xxxx-bad0-rnge", "{zipped}");
    assert!(
        zipped["skipped"][0]["why"].as_str().is_some_and(|w| !w.is_empty()),
        "{zipped}"
    );
    assert_eq!(stats()["advisories"], 5);

    // Replace: the database becomes exactly the import, and lodash 4.17.20 is served again.
    let replaced = ok_json(
        import(
            &server,
            &token,
            "?replace=true",
            fixture("malicious/MAL-2025-6974.json"),
        ),
        200,
    );
    assert_eq!(replaced["removed"], 5, "{replaced}");
    let after = stats();
    assert_eq!(after["advisories"], 1, "{after}");
    assert_eq!(after["last_import"]["replaced"], true, "{after}");
    assert_eq!(status_of(&server, "lodash/-/lodash-4.17.20.tgz", &token), 200);

    let audit = get_api(&server, "audit?action=advisories.import", &token);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(4),
        "only imports that happened: {audit}"
    );
}

#[test]
fn bodies_over_the_configured_limit_are_refused_and_change_nothing() {
    let fake = evt_upstream();
    let server = TestServer::start_with_config(&format!(
        "[limits]\nmax_body_bytes = 4096\n[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ));
    let token = server.admin_token();
    let big = github_reviewed();
    assert!(big.len() > 4096);
    let error = expect_error(
        refused_body(
            || http().post(api(&server, "advisories/import")).body(big.clone()),
            &token,
        ),
        413,
    );
    assert!(error.contains("4096"), "{error}");
    assert_eq!(get_api(&server, "advisories", &token)["advisories"], 0);

    // Streamed without a length, the limit still holds.
    let streamed = refused_body(
        || {
            http()
                .post(api(&server, "advisories/import"))
                .body(reqwest::blocking::Body::new(std::io::Cursor::new(big.clone())))
        },
        &token,
    );
    expect_error(streamed, 413);

    let padded = format!("{DENY_EVT}{}", "# padding\n".repeat(500));
    expect_error(
        refused_body(
            || {
                http()
                    .put(api(&server, "registries/default/policy"))
                    .body(padded.clone())
            },
            &token,
        ),
        413,
    );
    assert_eq!(get_api(&server, "registries/default/policy", &token)["default"], true);
    assert_eq!(latest(&server, &token, "evt"), "1.1.0");
}
