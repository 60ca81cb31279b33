//! The Policy tab over HTTP: the document edited and saved by registry admins (a
//! broken one is refused with its line and kept in the form), "Check lockfile" by
//! the document in the form or the saved one, and exceptions added and removed.

use reqwest::blocking::Response;
use serde_json::Value;

use crate::support::fake_upstream::FakeUpstream;
use crate::support::firewall::{package_lock, publish_with_postinstall};
use crate::support::*;
use crate::web_app::{browser, get, location, post, sign_in, text};

const BLOCK_SCRIPTS: &str = "[install_scripts]\naction = \"block\"\n";

/// The policy form as a browser sends it (`multipart/form-data`; it carries a file).
fn submit_policy(
    server: &TestServer,
    cookie: &str,
    action: &str,
    document: Option<&str>,
    lockfile: Option<&str>,
) -> Response {
    let boundary = "----gatehouse-test-boundary";
    let mut body = String::new();
    let mut field = |name: &str, file: Option<&str>, value: &str| {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(file) = file {
            body.push_str(&format!("; filename=\"{file}\"\r\nContent-Type: application/json"));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    };
    if let Some(document) = document {
        // Browsers send a textarea's line ends as CRLF.
        field("document", None, &document.replace('\n', "\r\n"));
    }
    field("lockfile", Some("package-lock.json"), lockfile.unwrap_or_default());
    field("action", None, action);
    body.push_str(&format!("--{boundary}--\r\n"));
    browser()
        .post(format!("{}/-/ui/r/default/policy", server.base))
        .header("cookie", cookie)
        .header("origin", &server.base)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .expect("post")
}

fn saved_policy(server: &TestServer, token: &str) -> String {
    let answer: Value = http()
        .get(format!("{}/-/api/v1/registries/default/policy", server.base))
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .expect("policy")
        .json()
        .expect("json");
    answer["document"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_policy_tab_edits_checks_a_lockfile_and_keeps_exceptions() {
    let fake = FakeUpstream::start();
    fake.publish("native", "1.0.0");
    publish_with_postinstall(&fake, "native", "1.1.0");
    fake.publish("plain", "2.0.0");
    let server = TestServer::start_with_config(&format!("[registries.default]\nupstreams = [\"{}\"]\n", fake.url));
    let token = server.admin_token();
    server.add_user("dana", "dana-password-1");
    server.cli_ok(&["registry", "grant", "default", "dana", "read"]);
    let admin = sign_in(&server, "admin", ADMIN_PASSWORD);
    let dana = sign_in(&server, "dana", "dana-password-1");
    let lock = package_lock(&[("native", "1.1.0"), ("plain", "2.0.0")]);
    let default_policy = saved_policy(&server, &token);

    // A reader sees the document, may check a lockfile by it, and may not change it.
    let page = text(get(&server, &dana, "/-/ui/r/default/policy"), 200);
    assert!(
        page.contains("name=\"document\" rows=\"18\" spellcheck=\"false\" readonly>"),
        "{page}"
    );
    assert!(!page.contains(">Save policy</button>") && page.contains(">Check lockfile</button>"));
    let refused = text(submit_policy(&server, &dana, "save", Some(BLOCK_SCRIPTS), None), 403);
    assert!(
        refused
            .contains("Changing the policy of default needs the admin role there; you have read. Nothing was changed."),
        "{refused}"
    );
    assert_eq!(saved_policy(&server, &token), default_policy);
    let checked = text(
        submit_policy(&server, &dana, "check", Some(BLOCK_SCRIPTS), Some(&lock)),
        200,
    );
    assert!(
        checked.contains("2 versions checked against the saved policy"),
        "{checked}"
    );
    assert!(checked.contains("Nothing would be held back."), "{checked}");

    // An admin checks the policy in the form before saving it: nothing is stored.
    let checked = text(
        submit_policy(&server, &admin, "check", Some(BLOCK_SCRIPTS), Some(&lock)),
        200,
    );
    assert!(
        checked.contains("against the policy in the form (not saved)"),
        "{checked}"
    );
    assert!(checked.contains("1 would be held back."), "{checked}");
    assert!(
        checked.contains("<td>native</td><td>1.1.0</td><td><strong>block</strong></td><td>install_scripts</td>"),
        "{checked}"
    );
    assert!(!checked.contains("<td>plain</td>"));
    assert!(
        checked.contains(">[install_scripts]\naction = \"block\"\n</textarea>"),
        "the form keeps the edit"
    );
    assert_eq!(saved_policy(&server, &token), default_policy);

    // Bad input: each refused with its reason, the form kept, nothing stored.
    let broken = "[install_scripts]\naction = \"explode\"\n";
    let refused = text(submit_policy(&server, &admin, "save", Some(broken), None), 400);
    assert!(refused.contains("Not saved: invalid policy:"), "{refused}");
    assert!(refused.contains("line 2"), "the mistake's line: {refused}");
    assert!(
        refused.contains(">[install_scripts]\naction = \"explode\"\n</textarea>"),
        "kept: {refused}"
    );
    let refused = text(submit_policy(&server, &admin, "check", Some(broken), Some(&lock)), 400);
    assert!(
        refused.contains("Not checked: the policy in the form is invalid"),
        "{refused}"
    );
    let refused = text(
        submit_policy(&server, &admin, "check", None, Some("{\"lockfileVersion\": ")),
        400,
    );
    assert!(refused.contains("Not checked: package-lock.json:"), "{refused}");
    let refused = text(submit_policy(&server, &admin, "check", None, None), 400);
    assert!(refused.contains("Choose a lockfile to check."), "{refused}");
    let garbled = browser()
        .post(format!("{}/-/ui/r/default/policy", server.base))
        .header("cookie", &admin)
        .header("origin", &server.base)
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\nsave")
        .send()
        .expect("post");
    assert!(text(garbled, 400).contains("The form could not be read"));
    assert_eq!(saved_policy(&server, &token), default_policy);

    // Saved: in force at once, and on record.
    let saved = submit_policy(&server, &admin, "save", Some(BLOCK_SCRIPTS), None);
    assert_eq!(saved.status(), 303);
    let page = text(get(&server, &admin, &location(&saved)), 200);
    assert!(page.contains("Policy saved; it applies from now on."));
    assert_eq!(saved_policy(&server, &token), BLOCK_SCRIPTS);
    let refused = expect_error(get_from(&server, "default", "native/-/native-1.1.0.tgz", &token), 403);
    assert!(refused.contains("install_scripts"), "{refused}");
    let audit = server.cli_ok(&["audit", "--action", "policy.set"]);
    assert!(audit.contains("admin") && audit.contains("default"), "{audit}");

    // Exceptions: bad ones refused, a good one waives the rule, removing it restores it.
    for (form, message) in [
        (
            vec![
                ("package", "native@1.1.0"),
                ("rule", "malware"),
                ("expires", "30d"),
                ("reason", "x"),
            ],
            "the malware rule takes no exceptions",
        ),
        (
            vec![
                ("package", "native@1.1.0"),
                ("rule", "install_scripts"),
                ("expires", "30d"),
                ("reason", " "),
            ],
            "an exception needs a reason",
        ),
        (
            vec![
                ("package", "native@1.1.0"),
                ("rule", "install_scripts"),
                ("expires", "yesterday"),
                ("reason", "x"),
            ],
            "invalid expiry \"yesterday\"",
        ),
    ] {
        let refused = text(post(&server, &admin, "/-/ui/r/default/exceptions", &form), 400);
        assert!(refused.contains(message), "{form:?}: {refused}");
    }
    let page = text(get(&server, &admin, "/-/ui/r/default/policy"), 200);
    assert!(page.contains("No exceptions: every rule applies to every package."));
    let refused = post(
        &server,
        &dana,
        "/-/ui/r/default/exceptions",
        &[
            ("package", "native@1.1.0"),
            ("rule", "install_scripts"),
            ("expires", "30d"),
            ("reason", "mine"),
        ],
    );
    assert_eq!(refused.status(), 403);

    let added = post(
        &server,
        &admin,
        "/-/ui/r/default/exceptions",
        &[
            ("package", "native@1.1.0"),
            ("rule", "install_scripts"),
            ("expires", "30d"),
            ("reason", "the script only builds docs"),
        ],
    );
    let page = text(get(&server, &admin, &location(&added)), 200);
    assert!(
        page.contains("native@1.1.0 passes the install_scripts rule until"),
        "{page}"
    );
    assert!(
        page.contains("<td><code>native@1.1.0</code></td><td>install_scripts</td><td>the script only builds docs</td>"),
        "{page}"
    );
    let id = page
        .split("/-/ui/r/default/exceptions/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a Remove button")
        .to_owned();
    let checked = text(
        submit_policy(&server, &admin, "check", Some(BLOCK_SCRIPTS), Some(&lock)),
        200,
    );
    assert!(
        checked.contains("against the saved policy") && checked.contains("Nothing would be held back."),
        "{checked}"
    );
    assert_eq!(
        get_from(&server, "default", "native/-/native-1.1.0.tgz", &token).status(),
        200
    );

    let removed = post(&server, &admin, &format!("/-/ui/r/default/exceptions/{id}/remove"), &[]);
    let page = text(get(&server, &admin, &location(&removed)), 200);
    assert!(page.contains(&format!("Exception #{id} removed")), "{page}");
    assert_eq!(
        get_from(&server, "default", "native/-/native-1.1.0.tgz", &token).status(),
        403
    );
}
