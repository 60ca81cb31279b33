//! The firewall over HTTP and the CLI: policies, both enforcement points (packument
//! and tarball), advisories and `npm audit`, quarantine, exceptions, freeze, audit
//! mode, registry chains and `policy check`. Real clients are in `firewall_clients`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_upstream::FakeUpstream;
use crate::support::firewall::{osv_fixtures, package_lock, policy_in_config, publish_with_postinstall, zip_of};
use crate::support::*;

/// A server whose `default` registry proxies `fake`, with `policy` (a policy
/// document) as `[registries.default.policy]` in its config file.
fn guarded(fake: &FakeUpstream, policy: &str) -> TestServer {
    TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n{}",
        fake.url,
        policy_in_config("default", policy)
    ))
}

fn get(server: &TestServer, path: &str, token: &str) -> reqwest::blocking::Response {
    get_from(server, "default", path, token)
}

/// `gatehouse ARGS` that must fail: its exit code and everything it printed.
fn cli_failing(server: &TestServer, args: &[&str]) -> (i32, String) {
    let out = server.cli(args, "");
    assert!(!out.status.success(), "gatehouse {args:?} should fail");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A 403 from the policy: the body says the rule and why, npm-notice repeats it.
fn assert_withheld(response: reqwest::blocking::Response, rule: &str, reason: &str) -> String {
    let notice = response
        .headers()
        .get("npm-notice")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let rule_header = response
        .headers()
        .get("x-gatehouse-rule")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    let body: Value = response.json().expect("json body");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "EPOLICY", "{body}");
    assert_eq!(body["rule"], rule, "{body}");
    let error = body["error"].as_str().expect("error").to_owned();
    assert!(
        error.contains(reason) && error.contains(&format!("({rule})")),
        "{error}"
    );
    assert_eq!(notice.as_deref(), Some(error.as_str()), "npm prints npm-notice");
    assert_eq!(rule_header.as_deref(), Some(rule));
    error
}

#[test]
fn a_denied_version_is_withheld_from_packuments_and_its_tarball_refused() {
    let fake = FakeUpstream::start();
    for v in ["1.0.0", "1.1.0", "2.0.0-beta.1"] {
        fake.publish("evt", v);
    }
    fake.edit("evt", |doc| {
        doc["dist-tags"] = json!({"latest": "1.1.0", "next": "2.0.0-beta.1"});
    });
    let server = guarded(
        &fake,
        "[[deny]]\npackage = \"evt\"\nrange = \"1.1.0\"\nreason = \"compromised release\"\n",
    );
    let token = server.admin_token();

    let full: Value = get(&server, "evt", &token).json().expect("json");
    assert!(full["versions"].get("1.1.0").is_none() && full["time"].get("1.1.0").is_none());
    assert_eq!(
        full["dist-tags"]["latest"], "1.0.0",
        "latest moves to the highest served stable version below"
    );
    assert_eq!(full["dist-tags"]["next"], "2.0.0-beta.1");
    let restricted = &full["policyRestrictions"];
    assert_eq!(restricted["versions"]["1.1.0"]["version"], "1.1.0");
    assert!(
        restricted["message"]
            .as_str()
            .expect("message")
            .contains("compromised release")
    );
    let abbreviated: Value = http()
        .get(format!("{}evt", server.registry_url("default")))
        .bearer_auth(&token)
        .header("accept", "application/vnd.npm.install-v1+json")
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert!(abbreviated["versions"].get("1.1.0").is_none());
    assert_eq!(abbreviated["dist-tags"]["latest"], "1.0.0");
    assert!(abbreviated["policyRestrictions"]["versions"].get("1.1.0").is_some());

    // Lockfile installs ask for the tarball directly: refused before anything is pulled.
    let error = assert_withheld(
        get(&server, "evt/-/evt-1.1.0.tgz", &token),
        "deny",
        "compromised release",
    );
    assert!(
        error.contains("evt@1.1.0 is blocked by the policy of registry \"default\""),
        "{error}"
    );
    assert!(
        error.contains("gatehouse policy exception add default evt@1.1.0 --rule deny"),
        "{error}"
    );
    assert_eq!(fake.hits("evt/-/evt-1.1.0.tgz"), 0, "never pulled");
    assert_withheld(get(&server, "evt/1.1.0", &token), "deny", "compromised release");
    assert_eq!(get(&server, "evt/-/evt-1.0.0.tgz", &token).status(), 200);
    assert_eq!(
        get(&server, "evt/latest", &token).json::<Value>().expect("json")["version"],
        "1.0.0"
    );

    // The refusal is recorded, and audited.
    let decisions = server.cli_ok(&["policy", "decisions", "default"]);
    assert!(decisions.contains("evt\t1.1.0\tblock\tblock\tdeny"), "{decisions}");
    let audit = server.cli_ok(&["audit"]);
    assert!(audit.contains("policy.decision"), "{audit}");
}

#[test]
fn a_package_with_no_version_served_answers_with_the_reason() {
    let fake = FakeUpstream::start();
    fake.publish("gone", "1.0.0");
    let server = guarded(
        &fake,
        "[[deny]]\npackage = \"gone\"\nreason = \"abandoned, use other\"\n",
    );
    let token = server.admin_token();
    let error = assert_withheld(get(&server, "gone", &token), "deny", "abandoned, use other");
    assert!(error.starts_with("no version of gone is served here."), "{error}");
}

#[test]
fn a_policy_with_errors_is_refused_with_its_line_and_the_old_one_stays() {
    let fake = FakeUpstream::start();
    let server = guarded(&fake, "[[deny]]\npackage = \"evt\"\nreason = \"first\"\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    for (text, said) in [
        ("[release_age]\nmin = \"3 days\"\n", "line 2"),
        (
            "\n[licenses]\nallow = [\"MIT\", \"Apache2\"]\n",
            "\"Apache2\" is not an SPDX license id",
        ),
        (
            "[[deny]]\npackage = \"x\"\nrange = \"not a range\"\n",
            "invalid version range",
        ),
        ("[vulnerabilities]\nblock = true\n", "unknown field `block`"),
        ("not toml at all [", "line 1"),
    ] {
        std::fs::write(&bad, text).expect("write");
        let (code, output) = cli_failing(
            &server,
            &["policy", "set", "default", "--file", bad.to_str().expect("path")],
        );
        assert_eq!(code, 1);
        assert!(
            output.contains(said) && output.contains("the policy of default is unchanged"),
            "{text:?}: {output}"
        );
    }
    let shown = server.cli_ok(&["policy", "show", "default"]);
    assert!(shown.contains("reason = \"first\""), "{shown}");
}

#[test]
fn a_policy_set_from_the_cli_applies_without_a_restart_and_shows_back() {
    let fake = FakeUpstream::start();
    fake.publish("evt", "1.0.0");
    fake.publish("evt", "1.1.0");
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ));
    let token = server.admin_token();
    let shown = server.cli_ok(&["policy", "show", "default"]);
    assert!(
        shown.starts_with("# registry default has the default policy"),
        "{shown}"
    );
    assert_eq!(
        packument(&server, "default", &token, "evt").expect("doc")["dist-tags"]["latest"],
        "1.1.0"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("policy.toml");
    std::fs::write(
        &file,
        "[[deny]]\npackage = \"evt\"\nrange = \">=1.1.0\"\nreason = \"under review\"\n",
    )
    .expect("write");
    server.cli_ok(&["policy", "set", "default", "--file", file.to_str().expect("path")]);
    assert!(
        eventually(Duration::from_secs(5), || {
            packument(&server, "default", &token, "evt").expect("doc")["dist-tags"]["latest"] == "1.0.0"
        }),
        "the server follows the change log"
    );
    assert!(server.cli_ok(&["policy", "show", "default"]).contains("under review"));
    server.cli_ok(&["policy", "set", "default", "--default"]);
    assert!(eventually(Duration::from_secs(5), || {
        packument(&server, "default", &token, "evt").expect("doc")["dist-tags"]["latest"] == "1.1.0"
    }));
}

#[test]
fn a_young_version_is_held_back_until_it_is_old_enough_then_appears_by_itself() {
    let fake = FakeUpstream::start();
    fake.publish("fresh", "1.0.0");
    fake.publish("fresh", "1.0.1");
    let just_now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    fake.edit("fresh", |doc| doc["time"]["1.0.1"] = json!(just_now));
    let server = guarded(&fake, "[release_age]\nmin = \"3s\"\n");
    let token = server.admin_token();

    let doc = packument(&server, "default", &token, "fresh").expect("doc");
    assert_eq!(
        doc["dist-tags"]["latest"], "1.0.0",
        "never without a latest while an older version is allowed"
    );
    assert!(doc["versions"].get("1.0.1").is_none());
    let error = assert_withheld(
        get(&server, "fresh/-/fresh-1.0.1.tgz", &token),
        "release_age",
        "minimum release age of 3s",
    );
    assert!(
        error.contains("is held back") && error.contains("served from"),
        "{error}"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            packument(&server, "default", &token, "fresh").expect("doc")["dist-tags"]["latest"] == "1.0.1"
        }),
        "once old enough it is served, with no change and no restart"
    );
    assert_eq!(get(&server, "fresh/-/fresh-1.0.1.tgz", &token).status(), 200);
}

#[test]
fn versions_published_here_are_exempt_from_release_age_but_not_from_other_rules() {
    let server = TestServer::start_with_config(&format!(
        "[registries.default]\nupstreams = []\n{}",
        policy_in_config(
            "default",
            "[release_age]\nmin = \"3d\"\n[[deny]]\npackage = \"@acme/bad\"\nrange = \"2.0.0\"\nreason = \"do not ship 2.0.0\"\n"
        )
    ));
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "@acme/fine", "1.0.0");
    assert_eq!(
        packument(&server, "default", &token, "@acme/fine").expect("doc")["dist-tags"]["latest"],
        "1.0.0"
    );
    publish_ok(&server, "default", &token, "@acme/bad", "1.0.0");
    let blobs = blob_count(&server);
    let response = publish(&server, "default", &token, &publish_body("@acme/bad", "2.0.0"));
    assert_withheld(response, "deny", "do not ship 2.0.0");
    assert_eq!(blob_count(&server), blobs, "nothing stored");
    let doc = packument(&server, "default", &token, "@acme/bad").expect("doc");
    assert!(doc["versions"].get("2.0.0").is_none() && doc["time"].get("2.0.0").is_none());
}

#[test]
fn imported_advisories_block_vulnerable_versions_and_npm_audit_reports_them() {
    let fake = FakeUpstream::start();
    for v in ["4.17.20", "4.17.21"] {
        fake.publish("lodash", v);
    }
    let server = guarded(
        &fake,
        "[vulnerabilities]\naction = \"block\"\nmin_severity = \"high\"\n",
    );
    let token = server.admin_token();

    // No data yet: the audit says so rather than claiming safety.
    let bulk = |body: Value| {
        http()
            .post(format!(
                "{}-/npm/v1/security/advisories/bulk",
                server.registry_url("default")
            ))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .expect("bulk")
    };
    let empty = bulk(json!({"lodash": ["4.17.20"]}));
    let notice = empty
        .headers()
        .get("npm-notice")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(empty.json::<Value>().expect("json"), json!({}));
    assert!(notice.is_some_and(|n| n.contains("advisory database is empty")));
    assert_eq!(
        packument(&server, "default", &token, "lodash").expect("doc")["dist-tags"]["latest"],
        "4.17.21"
    );

    let out = server.cli_ok(&[
        "advisories",
        "import",
        osv_fixtures().join("github-reviewed").to_str().expect("path"),
    ]);
    assert!(out.contains("imported 4 npm advisories"), "{out}");
    let stats = server.cli_ok(&["advisories", "stats"]);
    assert!(stats.contains("advisories\t4"), "{stats}");

    assert!(eventually(Duration::from_secs(5), || {
        packument(&server, "default", &token, "lodash").expect("doc")["versions"]
            .get("4.17.20")
            .is_none()
    }));
    let error = assert_withheld(
        get(&server, "lodash/-/lodash-4.17.20.tgz", &token),
        "vulnerabilities",
        "GHSA-35jh-r3h4-6jhm (high)",
    );
    assert!(error.contains("fixed in"), "{error}");
    assert_eq!(get(&server, "lodash/-/lodash-4.17.21.tgz", &token).status(), 200);

    let report = bulk(json!({"lodash": ["4.17.20"], "left-pad": ["1.3.0"]}));
    assert!(
        report.headers().get("npm-notice").is_none(),
        "fresh data: nothing to warn about"
    );
    let report: Value = report.json().expect("json");
    let ids: Vec<&str> = report["lodash"]
        .as_array()
        .expect("lodash findings")
        .iter()
        .filter_map(|a| a["url"].as_str())
        .collect();
    assert!(ids.iter().any(|u| u.ends_with("GHSA-35jh-r3h4-6jhm")), "{report}");
    assert!(report.get("left-pad").is_none());
    let fixed: Value = bulk(json!({"lodash": ["4.17.21"]})).json().expect("json");
    assert!(
        fixed.get("lodash").is_none_or(|f| f.as_array().is_some_and(|a| a
            .iter()
            .all(|x| x["url"].as_str() != Some("https://github.com/advisories/GHSA-35jh-r3h4-6jhm")))),
        "{fixed}"
    );

    // The same report at the host root, gzipped as npm sends it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, br#"{"lodash":["4.17.20"]}"#).expect("gzip");
    let root: Value = http()
        .post(format!("{}/-/npm/v1/security/advisories/bulk", server.base))
        .bearer_auth(&token)
        .header("content-encoding", "gzip")
        .header("content-type", "application/json")
        .body(gz.finish().expect("gzip"))
        .send()
        .expect("root bulk")
        .json()
        .expect("json");
    assert!(root["lodash"].as_array().is_some_and(|a| !a.is_empty()), "{root}");
}

#[test]
fn a_malformed_advisory_import_changes_nothing() {
    let server = TestServer::start();
    server.cli_ok(&[
        "advisories",
        "import",
        osv_fixtures().join("github-reviewed").to_str().expect("path"),
    ]);
    let before = server.cli_ok(&["advisories", "stats"]);
    let (code, output) = cli_failing(
        &server,
        &[
            "advisories",
            "import",
            osv_fixtures().join("bad/malformed.json").to_str().expect("path"),
            "--replace",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        output.contains("malformed.json") && output.contains("advisory database is unchanged"),
        "{output}"
    );
    let (_, output) = cli_failing(&server, &["advisories", "import", "/nonexistent/osv.zip"]);
    assert!(output.contains("/nonexistent/osv.zip"), "{output}");

    // A zip with a traversal name is refused as a whole.
    let dir = tempfile::tempdir().expect("tempdir");
    let zip_path = dir.path().join("evil.zip");
    let good = std::fs::read(osv_fixtures().join("malicious/MAL-2025-6974.json")).expect("fixture");
    std::fs::write(
        &zip_path,
        zip_of(&[("MAL-2025-6974.json", &good), ("../../etc/evil.json", &good)]),
    )
    .expect("write zip");
    let (_, output) = cli_failing(&server, &["advisories", "import", zip_path.to_str().expect("path")]);
    assert!(output.contains("../../etc/evil.json"), "{output}");
    assert_eq!(
        server.cli_ok(&["advisories", "stats"]),
        before,
        "the database is as it was"
    );

    // A record whose range cannot be parsed is skipped, named, and counted; the rest is imported.
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "bad/invalid-range.json",
        "bad/withdrawn.json",
        "malicious/MAL-2025-6974.json",
    ] {
        std::fs::copy(osv_fixtures().join(file), dir.path().join(file.replace('/', "-"))).expect("copy");
    }
    let out = server.cli(&["advisories", "import", dir.path().to_str().expect("path")], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("warning: skipped GHSA-xxxx-bad0-rnge") && stderr.contains("one point two"),
        "{stderr}"
    );
    assert!(
        stdout.contains("imported 1 npm advisories") && stdout.contains("1 records skipped, 1 ignored"),
        "{stdout}"
    );
    assert!(server.cli_ok(&["advisories", "stats"]).contains("advisories\t5"));
}

#[test]
fn malware_is_blocked_in_audit_mode_and_takes_no_exception() {
    let fake = FakeUpstream::start();
    let advisory: Value =
        serde_json::from_slice(&std::fs::read(osv_fixtures().join("malicious/MAL-2025-6974.json")).expect("fixture"))
            .expect("json");
    let name = advisory["affected"][0]["package"]["name"]
        .as_str()
        .expect("name")
        .to_owned();
    fake.publish(&name, "1.0.0");
    let server = guarded(&fake, "mode = \"audit\"\n");
    let token = server.admin_token();
    server.cli_ok(&[
        "advisories",
        "import",
        osv_fixtures().join("malicious").to_str().expect("path"),
    ]);
    assert!(eventually(Duration::from_secs(5), || {
        get(&server, &format!("{name}/-/{name}-1.0.0.tgz"), &token).status() == 403
    }));
    assert_withheld(
        get(&server, &format!("{name}/-/{name}-1.0.0.tgz"), &token),
        "malware",
        "MAL-2025-6974",
    );
    let (_, output) = cli_failing(
        &server,
        &[
            "policy",
            "exception",
            "add",
            "default",
            &format!("{name}@*"),
            "--rule",
            "malware",
            "--expires",
            "1d",
            "--reason",
            "x",
        ],
    );
    assert!(
        output.contains("unknown rule \"malware\"") || output.contains("malware is always blocked"),
        "{output}"
    );
}

#[test]
fn audit_mode_serves_what_it_would_block_and_records_it() {
    let fake = FakeUpstream::start();
    fake.publish("evt", "1.0.0");
    let server = guarded(
        &fake,
        "mode = \"audit\"\n[[deny]]\npackage = \"evt\"\nreason = \"trial run\"\n",
    );
    let token = server.admin_token();
    let response = get(&server, "evt/-/evt-1.0.0.tgz", &token);
    assert_eq!(response.status(), 200, "audit mode serves");
    // The pulled version is held now; its decision is recorded as what enforce would do.
    assert!(eventually(Duration::from_secs(5), || {
        let decisions = server.cli_ok(&["policy", "decisions", "default"]);
        decisions.contains("evt\t1.0.0\tallow\tblock\tdeny")
    }));
}

#[test]
fn quarantined_versions_wait_for_review_and_approval_makes_them_installable() {
    let fake = FakeUpstream::start();
    fake.publish("native", "1.0.0");
    publish_with_postinstall(&fake, "native", "1.1.0");
    publish_with_postinstall(&fake, "native", "1.2.0");
    let server = guarded(&fake, "[install_scripts]\naction = \"quarantine\"\n");
    let token = server.admin_token();

    assert_eq!(
        packument(&server, "default", &token, "native").expect("doc")["dist-tags"]["latest"],
        "1.0.0"
    );
    let error = assert_withheld(
        get(&server, "native/-/native-1.2.0.tgz", &token),
        "install_scripts",
        "postinstall",
    );
    assert!(
        error.contains("gatehouse quarantine approve default native@1.2.0"),
        "{error}"
    );
    assert_withheld(
        get(&server, "native/-/native-1.1.0.tgz", &token),
        "install_scripts",
        "postinstall",
    );
    // Asked for, so in the queue.
    assert!(eventually(Duration::from_secs(5), || {
        let queue = server.cli_ok(&["quarantine", "list", "default"]);
        queue.contains("native\t1.2.0\tinstall_scripts") && queue.contains("native\t1.1.0")
    }));
    let (_, output) = cli_failing(&server, &["quarantine", "approve", "default", "native@9.9.9"]);
    assert!(
        output.contains("native@9.9.9 is not in the quarantine queue of registry default"),
        "{output}"
    );

    server.cli_ok(&[
        "quarantine",
        "approve",
        "default",
        "native@1.2.0",
        "--reason",
        "reviewed setup.js",
    ]);
    server.cli_ok(&[
        "quarantine",
        "reject",
        "default",
        "native@1.1.0",
        "--reason",
        "phones home",
    ]);
    assert!(eventually(Duration::from_secs(5), || get(
        &server,
        "native/-/native-1.2.0.tgz",
        &token
    )
    .status()
        == 200));
    assert_eq!(
        packument(&server, "default", &token, "native").expect("doc")["dist-tags"]["latest"],
        "1.2.0"
    );
    assert_withheld(
        get(&server, "native/-/native-1.1.0.tgz", &token),
        "review",
        "phones home",
    );
    let queue = server.cli_ok(&["quarantine", "list"]);
    assert!(
        !queue.contains("native\t1.2.0") && !queue.contains("native\t1.1.0"),
        "{queue}"
    );
    let audit = server.cli_ok(&["audit"]);
    assert!(
        audit.contains("quarantine.approve") && audit.contains("quarantine.reject"),
        "{audit}"
    );
}

#[test]
fn an_exception_waives_one_rule_until_it_expires_then_the_rule_applies_again() {
    let fake = FakeUpstream::start();
    fake.publish("evt", "1.0.0");
    fake.publish("evt", "1.1.0");
    let server = guarded(
        &fake,
        "[[deny]]\npackage = \"evt\"\nrange = \"1.1.0\"\nreason = \"compromised\"\n",
    );
    let token = server.admin_token();

    let (_, output) = cli_failing(
        &server,
        &[
            "policy",
            "exception",
            "add",
            "default",
            "evt@1.1.0",
            "--rule",
            "deny",
            "--expires",
            "2020-01-01T00:00:00Z",
            "--reason",
            "x",
        ],
    );
    assert!(output.contains("is in the past"), "{output}");
    let (_, output) = cli_failing(
        &server,
        &[
            "policy",
            "exception",
            "add",
            "default",
            "evt@1.1.0",
            "--rule",
            "speed",
            "--expires",
            "1d",
            "--reason",
            "x",
        ],
    );
    assert!(output.contains("unknown rule \"speed\""), "{output}");
    assert!(
        server
            .cli_ok(&["policy", "exception", "list", "default"])
            .lines()
            .count()
            == 1,
        "nothing added"
    );

    let added = server.cli_ok(&[
        "policy",
        "exception",
        "add",
        "default",
        "evt@1.1.0",
        "--rule",
        "deny",
        "--expires",
        "4s",
        "--reason",
        "vendor confirmed it is clean",
    ]);
    assert!(
        added.contains("exception #") && added.contains("evt@1.1.0 is exempt from deny"),
        "{added}"
    );
    assert!(eventually(Duration::from_secs(5), || get(
        &server,
        "evt/-/evt-1.1.0.tgz",
        &token
    )
    .status()
        == 200));
    let listed = server.cli_ok(&["policy", "exception", "list", "default"]);
    assert!(
        listed.contains("evt\t1.1.0\tdeny") && listed.contains("vendor confirmed"),
        "{listed}"
    );
    // Held now, but an expired exception blocks it again, by itself.
    assert!(
        eventually(Duration::from_secs(10), || get(&server, "evt/-/evt-1.1.0.tgz", &token)
            .status()
            == 403),
        "the exception expired"
    );
    assert!(
        server
            .cli_ok(&["policy", "exception", "list", "default"])
            .contains("(expired)")
    );
    let id = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split('\t').next())
        .expect("an id")
        .to_owned();
    server.cli_ok(&["policy", "exception", "remove", "default", &id]);
    let (_, output) = cli_failing(&server, &["policy", "exception", "remove", "default", &id]);
    assert!(output.contains(&format!("no exception #{id}")), "{output}");
}

#[test]
fn a_downstream_registry_never_serves_what_its_upstream_registry_withholds() {
    let fake = FakeUpstream::start();
    fake.publish("evt", "1.0.0");
    fake.publish("evt", "1.1.0");
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n\
         {}[registries.team]\nupstreams = [\"registry:default\"]\n[registries.team.policy]\n",
        fake.url,
        policy_in_config(
            "default",
            "[[deny]]\npackage = \"evt\"\nrange = \"1.1.0\"\nreason = \"compromised\"\n"
        )
    ));
    let token = server.create_token(&["--user", "admin"]);
    let doc = packument(&server, "team", &token, "evt").expect("doc");
    assert!(doc["versions"].get("1.1.0").is_none(), "{doc}");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    let status = get_from(&server, "team", "evt/-/evt-1.1.0.tgz", &token)
        .status()
        .as_u16();
    assert!(status == 403 || status == 404, "{status}");
    assert_eq!(fake.hits("evt/-/evt-1.1.0.tgz"), 0);
    assert_eq!(get_from(&server, "team", "evt/-/evt-1.0.0.tgz", &token).status(), 200);
}

#[test]
fn a_frozen_registry_keeps_what_it_holds_and_takes_nothing_new() {
    let fake = FakeUpstream::start();
    fake.publish("kept", "1.0.0");
    fake.publish("never", "1.0.0");
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ));
    let token = server.admin_token();
    assert_eq!(get(&server, "kept/-/kept-1.0.0.tgz", &token).status(), 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("freeze.toml");
    std::fs::write(&file, "freeze = true\n").expect("write");
    server.cli_ok(&["policy", "set", "default", "--file", file.to_str().expect("path")]);
    fake.publish("kept", "1.1.0");
    assert!(eventually(Duration::from_secs(5), || get(&server, "never", &token)
        .status()
        == 404));
    let error = expect_error(get(&server, "never", &token), 404);
    assert!(error.contains("registry default is frozen"), "{error}");
    let hits = fake.hits("kept");
    let doc = packument(&server, "default", &token, "kept").expect("doc");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    assert!(doc["versions"].get("1.1.0").is_none());
    assert_eq!(fake.hits("kept"), hits, "upstreams are not asked");
    assert_eq!(get(&server, "kept/-/kept-1.0.0.tgz", &token).status(), 200);
    server.cli_ok(&["package", "claim", "default", "@acme/*"]);
    let response = publish(&server, "default", &token, &publish_body("@acme/new", "1.0.0"));
    assert_withheld(response, "freeze", "the registry is frozen");
}

#[test]
fn policy_check_lists_what_a_lockfile_pins_that_would_not_be_served() {
    let fake = FakeUpstream::start();
    for v in ["1.0.0", "1.1.0"] {
        fake.publish("evt", v);
    }
    fake.publish("ok", "2.0.0");
    let server = guarded(
        &fake,
        "[[deny]]\npackage = \"evt\"\nrange = \"1.1.0\"\nreason = \"compromised\"\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let lockfile = |pins: &[(&str, &str)]| {
        let path = dir.path().join("package-lock.json");
        std::fs::write(&path, package_lock(pins)).expect("write");
        path.to_str().expect("path").to_owned()
    };

    let held = lockfile(&[("evt", "1.1.0"), ("ok", "2.0.0")]);
    let (code, output) = cli_failing(&server, &["policy", "check", "default", "--lockfile", &held]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("block\tevt@1.1.0\t") && output.contains("compromised"),
        "{output}"
    );
    assert!(
        output.contains("1 of 2 package versions (package-lock.json) would not be served by default"),
        "{output}"
    );
    let out = server.cli(&["policy", "check", "default", "--lockfile", &held, "--json"], "");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["held_back"][0]["name"], "evt");
    assert_eq!(report["held_back"][0]["rule"], "deny");

    // A candidate policy, before it goes live.
    let candidate = dir.path().join("candidate.toml");
    std::fs::write(&candidate, "[[deny]]\npackage = \"ok\"\nreason = \"replaced by ok2\"\n").expect("write");
    let (code, output) = cli_failing(
        &server,
        &[
            "policy",
            "check",
            "default",
            "--lockfile",
            &held,
            "--policy",
            candidate.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        output.contains("ok@2.0.0") && output.contains("replaced by ok2") && !output.contains("evt@1.1.0"),
        "{output}"
    );

    let clean = lockfile(&[("evt", "1.0.0"), ("ok", "2.0.0")]);
    let output = server.cli_ok(&["policy", "check", "default", "--lockfile", &clean]);
    assert!(output.contains("0 of 2 package versions"), "{output}");

    let not_a_lockfile = dir.path().join("notes.txt");
    std::fs::write(&not_a_lockfile, "hello").expect("write");
    for json in [false, true] {
        let mut args = vec![
            "policy",
            "check",
            "default",
            "--lockfile",
            not_a_lockfile.to_str().expect("path"),
        ];
        if json {
            args.push("--json");
        }
        let (code, output) = cli_failing(&server, &args);
        assert_eq!(code, 2, "{output}");
        assert!(output.contains("notes.txt"), "{output}");
    }
}

/// The first download of a version whose tarball the rules refuse is cut short (the
/// rules could not know before its bytes arrived); it is recorded, and from then on
/// refused with the reason before the first byte.
fn refused_once_pulled(fake: &FakeUpstream, server: &TestServer, name: &str, version: &str, rule: &str, reason: &str) {
    let token = server.admin_token();
    let path = format!("{name}/-/{name}-{version}.tgz");
    let first = get(server, &path, &token);
    if first.status() == 200 {
        assert!(first.bytes().is_err(), "the download is cut short, never completed");
    } else {
        assert_eq!(first.status(), 403);
    }
    assert!(eventually(Duration::from_secs(5), || get(server, &path, &token)
        .status()
        == 403));
    assert_withheld(get(server, &path, &token), rule, reason);
    let hits = fake.hits(&path);
    assert_withheld(get(server, &path, &token), rule, reason);
    assert_eq!(fake.hits(&path), hits, "refused without asking the upstream again");
    let doc = get(server, name, &token);
    if doc.status() == 200 {
        let doc: Value = doc.json().expect("json");
        assert!(
            doc["versions"].get(version).is_none(),
            "withheld from the packument too: {doc}"
        );
    } else {
        assert_eq!(doc.status(), 403, "no version left to serve");
    }
    let decisions = server.cli_ok(&["policy", "decisions", "default"]);
    assert!(decisions.contains(&format!("{name}\t{version}\tblock")), "{decisions}");
}

#[test]
fn a_pulled_version_whose_tarball_differs_from_its_manifest_is_refused() {
    let fake = FakeUpstream::start();
    fake.publish("confused", "1.0.0");
    // The tarball installs a dependency the served manifest does not show.
    let packed = json!({"name": "confused", "version": "1.1.0", "dependencies": {"evil": "1.0.0"}});
    let bytes = tarball(&[("package/package.json", packed.to_string().as_bytes())]);
    fake.publish_bytes("confused", "1.1.0", &bytes, &bytes);
    let server = guarded(&fake, "[manifest]\naction = \"block\"\n");
    refused_once_pulled(&fake, &server, "confused", "1.1.0", "manifest", "manifest confusion");
    assert_eq!(blob_count(&server), 0, "nothing of 1.1.0 is stored");
}

#[test]
fn a_pulled_version_with_a_binding_gyp_runs_an_install_script() {
    let fake = FakeUpstream::start();
    let packed = json!({"name": "gyp", "version": "1.0.0"});
    let bytes = tarball(&[
        ("package/package.json", packed.to_string().as_bytes()),
        ("package/binding.gyp", b"{\"targets\": []}\n"),
    ]);
    fake.publish_bytes("gyp", "1.0.0", &bytes, &bytes);
    fake.edit("gyp", |doc| {
        doc["versions"]["1.0.0"]["scripts"] = json!({"install": "node-gyp rebuild"})
    });
    // 1.0.1: a manifest that keeps quiet about it; the tarball tells.
    let packed = json!({"name": "gyp", "version": "1.0.1"});
    let quiet = tarball(&[
        ("package/package.json", packed.to_string().as_bytes()),
        ("package/binding.gyp", b"{\"targets\": []}\n"),
    ]);
    fake.publish_bytes("gyp", "1.0.1", &quiet, &quiet);
    let server = guarded(&fake, "[install_scripts]\naction = \"block\"\nallow = [\"sharp\"]\n");
    let token = server.admin_token();
    // The upstream's manifest says so: refused before the first byte.
    assert_withheld(
        get(&server, "gyp/-/gyp-1.0.0.tgz", &token),
        "install_scripts",
        "install",
    );
    refused_once_pulled(
        &fake,
        &server,
        "gyp",
        "1.0.1",
        "install_scripts",
        "node-gyp rebuild (binding.gyp)",
    );
}

#[test]
fn advisories_sync_on_a_schedule_from_a_folder_or_a_url() {
    let server = TestServer::start_with_config(&format!(
        "[advisories]\nsync_url = \"{}\"\nsync_every = \"1h\"\n",
        osv_fixtures().join("github-reviewed").display()
    ));
    assert!(
        eventually(Duration::from_secs(10), || server
            .cli_ok(&["advisories", "stats"])
            .contains("advisories\t4")),
        "synced at start"
    );

    // A zip of the malicious-packages records, served over HTTP.
    let records: Vec<(String, Vec<u8>)> = std::fs::read_dir(osv_fixtures().join("malicious"))
        .expect("fixtures")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
            (name, std::fs::read(&path).expect("read"))
        })
        .collect();
    let entries: Vec<(&str, &[u8])> = records.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let bytes = zip_of(&entries);
    let fake = FakeUpstream::start();
    fake.publish_bytes("osv", "1.0.0", &bytes, &bytes);
    let server = TestServer::start_with_config(&format!(
        "[advisories]\nsync_url = \"{}osv/-/osv-1.0.0.tgz\"\nsync_every = \"1h\"\n",
        fake.url
    ));
    assert!(eventually(Duration::from_secs(10), || {
        let stats = server.cli_ok(&["advisories", "stats"]);
        stats.contains("advisories\t2") && stats.contains("(--replace)")
    }));

    // A sync that cannot read its source changes nothing, and says why in the log.
    let server = TestServer::start_with_config(&format!(
        "[advisories]\nsync_url = \"{}missing.zip\"\nsync_every = \"1h\"\n",
        fake.url
    ));
    assert!(eventually(Duration::from_secs(10), || server
        .log()
        .contains("advisory sync failed")));
    assert!(server.cli_ok(&["advisories", "stats"]).contains("advisories\t0"));
    let (_, output) = {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, "[advisories]\nsync_every = \"1h\"\n").expect("write");
        let out = std::process::Command::new(BIN)
            .args(["--config", config.to_str().expect("path"), "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert!(output.contains("sync_url and sync_every go together"), "{output}");
}
