//! The npm registry protocol over HTTP against the real server.

use serde_json::{Value, json};

use crate::support::*;

#[test]
fn publish_then_read_full_and_abbreviated_packuments() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "@acme/lib", "1.0.0");
    publish_ok(&server, "default", &token, "@acme/lib", "1.1.0");

    for path in ["@acme%2flib", "@acme%2Flib", "@acme/lib"] {
        let url = format!("{}{path}", server.registry_url("default"));
        let full: Value = http()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .expect("get")
            .json()
            .expect("json");
        assert_eq!(full["name"], "@acme/lib", "{path}");
        assert_eq!(full["dist-tags"]["latest"], "1.1.0");
        assert_eq!(
            full["versions"]["1.0.0"]["dist"]["tarball"],
            format!("{}@acme/lib/-/lib-1.0.0.tgz", server.registry_url("default"))
        );
        assert_eq!(full["versions"]["1.0.0"]["_npmUser"]["name"], "admin");
        assert!(full["time"]["1.1.0"].as_str().expect("time").ends_with('Z'));
        assert!(full["_rev"].is_string());
    }

    let response = http()
        .get(format!("{}@acme%2flib", server.registry_url("default")))
        .bearer_auth(&token)
        .header(
            "accept",
            "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*",
        )
        .send()
        .expect("get");
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.npm.install-v1+json"
    );
    let abbreviated: Value = response.json().expect("json");
    assert!(abbreviated["versions"]["1.0.0"]["dist"]["integrity"].is_string());
    assert!(abbreviated["versions"]["1.0.0"].get("description").is_none());
    assert!(abbreviated.get("modified").is_some());
}

#[test]
fn etags_revalidate_with_304_and_change_on_publish() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "etag-pkg", "1.0.0");
    let url = format!("{}etag-pkg", server.registry_url("default"));
    let first = http().get(&url).bearer_auth(&token).send().expect("get");
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let abbreviated_etag = http()
        .get(&url)
        .bearer_auth(&token)
        .header("accept", "application/vnd.npm.install-v1+json")
        .send()
        .expect("get")
        .headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_ne!(etag, abbreviated_etag, "full and abbreviated must not share an ETag");

    let again = http()
        .get(&url)
        .bearer_auth(&token)
        .header("if-none-match", &etag)
        .send()
        .expect("get");
    assert_eq!(again.status(), 304);
    assert!(again.bytes().expect("body").is_empty());

    publish_ok(&server, "default", &token, "etag-pkg", "1.0.1");
    let changed = http()
        .get(&url)
        .bearer_auth(&token)
        .header("if-none-match", &etag)
        .send()
        .expect("get");
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().expect("etag"), etag);
}

#[test]
fn tarballs_download_with_the_published_bytes_in_both_url_forms() {
    let server = TestServer::start();
    let token = server.admin_token();
    let bytes = package_tarball("@acme/tgz", "2.0.0");
    let response = publish(
        &server,
        "default",
        &token,
        &publish_body_with("@acme/tgz", "2.0.0", "latest", &bytes),
    );
    assert_eq!(response.status(), 201);
    for path in ["@acme/tgz/-/tgz-2.0.0.tgz", "@acme%2ftgz/-/tgz-2.0.0.tgz"] {
        let got = http()
            .get(format!("{}{path}", server.registry_url("default")))
            .bearer_auth(&token)
            .send()
            .expect("tarball");
        assert_eq!(got.status(), 200, "{path}");
        assert_eq!(got.headers()["content-type"], "application/octet-stream");
        assert_eq!(got.bytes().expect("bytes").as_ref(), bytes.as_slice());
    }
    let head = http()
        .head(format!("{}@acme/tgz/-/tgz-2.0.0.tgz", server.registry_url("default")))
        .bearer_auth(&token)
        .send()
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().expect("len"),
        bytes.len().to_string()
    );
    for missing in [
        "@acme/tgz/-/tgz-9.9.9.tgz",
        "@acme/tgz/-/other-2.0.0.tgz",
        "@acme/tgz/-/tgz-2.0.0.tar",
    ] {
        let got = http()
            .get(format!("{}{missing}", server.registry_url("default")))
            .bearer_auth(&token)
            .send()
            .expect("tarball");
        assert_eq!(got.status(), 404, "{missing}");
    }
}

#[test]
fn version_and_tag_documents() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "spec-pkg", "1.0.0");
    for spec in ["1.0.0", "latest"] {
        let doc: Value = http()
            .get(format!("{}spec-pkg/{spec}", server.registry_url("default")))
            .bearer_auth(&token)
            .send()
            .expect("get")
            .json()
            .expect("json");
        assert_eq!(doc["version"], "1.0.0", "{spec}");
        assert!(
            doc["dist"]["tarball"]
                .as_str()
                .expect("tarball")
                .ends_with("spec-pkg-1.0.0.tgz")
        );
    }
    let missing = http()
        .get(format!("{}spec-pkg/2.0.0", server.registry_url("default")))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert!(expect_error(missing, 404).contains("version not found"));
}

#[test]
fn republishing_an_existing_version_is_refused_and_changes_nothing() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "fixed", "1.0.0");
    let before = packument(&server, "default", &token, "fixed").expect("exists");
    let blobs = blob_count(&server);

    let different = tarball(&[
        (
            "package/package.json",
            br#"{"name":"fixed","version":"1.0.0","main":"evil.js"}"#,
        ),
        ("package/evil.js", b"steal()"),
    ]);
    let response = publish(
        &server,
        "default",
        &token,
        &publish_body_with("fixed", "1.0.0", "latest", &different),
    );
    let error = expect_error(response, 403);
    assert!(
        error.contains("cannot publish over the previously published versions: 1.0.0"),
        "{error}"
    );
    // Build metadata does not make a new version.
    let response = publish(&server, "default", &token, &publish_body("fixed", "1.0.0+build.7"));
    assert_eq!(response.status(), 403);

    let after = packument(&server, "default", &token, "fixed").expect("exists");
    assert_eq!(before["versions"], after["versions"]);
    assert_eq!(before["_rev"], after["_rev"]);
    assert_eq!(blob_count(&server), blobs, "a refused publish stores no bytes");
}

#[test]
fn dist_tags_add_list_remove() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "tagged", "1.0.0");
    publish_ok(&server, "default", &token, "tagged", "2.0.0-rc.1");
    let tags_url = format!("{}-/package/tagged/dist-tags", server.registry_url("default"));
    let response = http()
        .put(format!("{tags_url}/next"))
        .bearer_auth(&token)
        .json(&json!("2.0.0-rc.1"))
        .send()
        .expect("put");
    assert_eq!(response.status(), 200);
    let tags: Value = http()
        .get(&tags_url)
        .bearer_auth(&token)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(tags, json!({ "latest": "2.0.0-rc.1", "next": "2.0.0-rc.1" }));

    let bad = http()
        .put(format!("{tags_url}/1.x"))
        .bearer_auth(&token)
        .json(&json!("1.0.0"))
        .send()
        .expect("put");
    assert!(expect_error(bad, 400).contains("SemVer range"));
    let missing = http()
        .put(format!("{tags_url}/beta"))
        .bearer_auth(&token)
        .json(&json!("9.0.0"))
        .send()
        .expect("put");
    assert!(expect_error(missing, 404).contains("version not found"));
    let latest = http()
        .delete(format!("{tags_url}/latest"))
        .bearer_auth(&token)
        .send()
        .expect("delete");
    assert!(expect_error(latest, 400).contains("latest"));

    let removed = http()
        .delete(format!("{tags_url}/next"))
        .bearer_auth(&token)
        .send()
        .expect("delete");
    assert_eq!(removed.status(), 200);
    let tags: Value = http()
        .get(&tags_url)
        .bearer_auth(&token)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(tags, json!({ "latest": "2.0.0-rc.1" }));
}

#[test]
fn deprecate_and_undeprecate_through_the_whole_document() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "old-pkg", "1.0.0");
    let mut doc = packument(&server, "default", &token, "old-pkg").expect("exists");
    doc["versions"]["1.0.0"]["deprecated"] = json!("use new-pkg");
    let url = format!("{}old-pkg", server.registry_url("default"));
    assert_eq!(
        http()
            .put(&url)
            .bearer_auth(&token)
            .json(&doc)
            .send()
            .expect("put")
            .status(),
        200
    );
    let after = packument(&server, "default", &token, "old-pkg").expect("exists");
    assert_eq!(after["versions"]["1.0.0"]["deprecated"], "use new-pkg");

    doc["versions"]["1.0.0"]["deprecated"] = json!("");
    assert_eq!(
        http()
            .put(&url)
            .bearer_auth(&token)
            .json(&doc)
            .send()
            .expect("put")
            .status(),
        200
    );
    let after = packument(&server, "default", &token, "old-pkg").expect("exists");
    assert!(after["versions"]["1.0.0"].get("deprecated").is_none());

    // A metadata update may not smuggle in a version without a tarball.
    doc["versions"]["9.9.9"] = doc["versions"]["1.0.0"].clone();
    let error = expect_error(
        http().put(&url).bearer_auth(&token).json(&doc).send().expect("put"),
        400,
    );
    assert!(error.contains("9.9.9"), "{error}");
    assert!(
        packument(&server, "default", &token, "old-pkg").expect("exists")["versions"]
            .get("9.9.9")
            .is_none()
    );
}

#[test]
fn unpublish_one_version_then_the_package_and_never_reuse_numbers() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "gone", "1.0.0");
    publish_ok(&server, "default", &token, "gone", "1.1.0");
    let mut doc = packument(&server, "default", &token, "gone").expect("exists");
    let rev = doc["_rev"].as_str().expect("rev").to_owned();
    doc["versions"].as_object_mut().expect("obj").remove("1.1.0");
    doc["dist-tags"] = json!({ "latest": "1.0.0" });
    let base = server.registry_url("default");
    let put = http()
        .put(format!("{base}gone/-rev/{rev}"))
        .bearer_auth(&token)
        .json(&doc)
        .send()
        .expect("put");
    assert_eq!(put.status(), 200);
    let after = packument(&server, "default", &token, "gone").expect("exists");
    assert!(after["versions"].get("1.1.0").is_none());
    assert_eq!(after["dist-tags"]["latest"], "1.0.0");
    assert!(after["time"].get("1.1.0").is_some(), "time keeps unpublished versions");
    let tarball = http()
        .get(format!("{base}gone/-/gone-1.1.0.tgz"))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert_eq!(tarball.status(), 404);

    // A stale rev is refused.
    let stale = http()
        .delete(format!("{base}gone/-rev/{rev}"))
        .bearer_auth(&token)
        .send()
        .expect("delete");
    assert_eq!(stale.status(), 409);
    let rev = after["_rev"].as_str().expect("rev");
    let delete = http()
        .delete(format!("{base}gone/-rev/{rev}"))
        .bearer_auth(&token)
        .send()
        .expect("delete");
    assert_eq!(delete.status(), 200);
    assert!(packument(&server, "default", &token, "gone").is_none());

    let again = publish(&server, "default", &token, &publish_body("gone", "1.0.0"));
    assert_eq!(again.status(), 403, "an unpublished version number is never reused");
    publish_ok(&server, "default", &token, "gone", "2.0.0");
}

#[test]
fn owners_are_listed_added_and_enforced() {
    let server = TestServer::start();
    server.add_user("alice", "alice-password");
    server.add_user("bob", "bob-password1");
    let alice = server.login("default", "alice", "alice-password");
    let bob = server.login("default", "bob", "bob-password1");
    publish_ok(&server, "default", &alice, "owned", "1.0.0");

    let refused = publish(&server, "default", &bob, &publish_body("owned", "1.0.1"));
    assert!(expect_error(refused, 403).contains("permission"));

    let doc = packument(&server, "default", &alice, "owned").expect("exists");
    assert_eq!(doc["maintainers"], json!([{ "name": "alice", "email": "" }]));
    let rev = doc["_rev"].as_str().expect("rev");
    let body = json!({ "_id": "owned", "_rev": rev, "maintainers": [{"name": "alice"}, {"name": "bob"}] });
    let url = format!("{}owned/-rev/{rev}", server.registry_url("default"));
    assert_eq!(
        http()
            .put(&url)
            .bearer_auth(&alice)
            .json(&body)
            .send()
            .expect("put")
            .status(),
        200
    );
    publish_ok(&server, "default", &bob, "owned", "1.0.1");

    let collaborators: Value = http()
        .get(format!(
            "{}-/package/owned/collaborators",
            server.registry_url("default")
        ))
        .bearer_auth(&bob)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(collaborators, json!({ "alice": "read-write", "bob": "read-write" }));
}

#[test]
fn search_finds_this_registrys_packages_only() {
    let server = TestServer::start();
    let token = server.admin_token();
    assert!(server.cli(&["registry", "create", "other"], "").status.success());
    publish_ok(&server, "default", &token, "left-pad-x", "1.0.0");
    publish_ok(&server, "default", &token, "@acme/pad", "1.0.0");
    let other_token = server.login("other", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "other", &other_token, "pad-elsewhere", "1.0.0");
    let result: Value = http()
        .get(format!(
            "{}-/v1/search?text=pad&size=20",
            server.registry_url("default")
        ))
        .bearer_auth(&token)
        .send()
        .expect("search")
        .json()
        .expect("json");
    let mut names: Vec<&str> = result["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["package"]["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["@acme/pad", "left-pad-x"]);
    assert_eq!(result["total"], 2);
    assert_eq!(result["objects"][0]["package"]["version"], "1.0.0");
    assert_eq!(result["objects"][0]["package"]["maintainers"][0]["username"], "admin");
}

#[test]
fn registries_are_isolated() {
    let server = TestServer::start();
    let token = server.admin_token();
    assert!(server.cli(&["registry", "create", "team"], "").status.success());
    let team_token = server.login("team", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "team", &team_token, "team-only", "1.0.0");
    assert!(packument(&server, "team", &team_token, "team-only").is_some());
    // A token issued by one registry is refused by another.
    let cross = http()
        .get(format!("{}team-only", server.registry_url("team")))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert!(expect_error(cross, 403).contains("not valid for registry \"team\""));
    assert!(packument(&server, "default", &token, "team-only").is_none());
    let tarball = http()
        .get(format!(
            "{}team-only/-/team-only-1.0.0.tgz",
            server.registry_url("default")
        ))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert_eq!(tarball.status(), 404);
    for sneaky in [
        "/r/default/../team/team-only",
        "/r/default/%2e%2e/team/team-only",
        "/r/default/%2E%2E/team/team-only",
        "/r/team%2f..%2fdefault/x",
        "/r/default/..%2fteam/team-only",
        "/r/default/@..%2fteam/team-only",
    ] {
        let status = raw_get_status(&server, sneaky, &token);
        assert!([400, 404].contains(&status), "{sneaky} answered {status}");
    }
}

#[test]
fn private_registries_need_credentials_and_public_ones_do_not() {
    let server = TestServer::start_with_config("[registries.open]\npublic = true\n");
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "private-pkg", "1.0.0");
    let open_token = server.login("open", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "open", &open_token, "open-pkg", "1.0.0");

    let anonymous = http()
        .get(format!("{}private-pkg", server.registry_url("default")))
        .send()
        .expect("get");
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"gatehouse\"");
    assert!(expect_error(anonymous, 401).contains("npm login"));
    let anonymous_tgz = http()
        .get(format!(
            "{}private-pkg/-/private-pkg-1.0.0.tgz",
            server.registry_url("default")
        ))
        .send()
        .expect("get");
    assert_eq!(anonymous_tgz.status(), 401);

    let open = http()
        .get(format!("{}open-pkg", server.registry_url("open")))
        .send()
        .expect("get");
    assert_eq!(open.status(), 200);
    let anonymous_publish = http()
        .put(format!("{}anon", server.registry_url("open")))
        .json(&publish_body("anon", "1.0.0"))
        .send()
        .expect("put");
    assert_eq!(anonymous_publish.status(), 401);
    assert!(packument(&server, "open", &open_token, "anon").is_none());

    let bad_token = http()
        .get(format!("{}open-pkg", server.registry_url("open")))
        .bearer_auth("gth_0000000000000000000000000000000000000000000")
        .send()
        .expect("get");
    assert!(expect_error(bad_token, 401).contains("not known to this server"));
}

#[test]
fn login_whoami_logout() {
    let server = TestServer::start();
    server.add_user("carol", "carol-password");
    let base = server.registry_url("default");
    let wrong = http()
        .put(format!("{base}-/user/org.couchdb.user:carol"))
        .json(&json!({"name": "carol", "password": "nope-nope-nope"}))
        .send()
        .expect("put");
    assert!(expect_error(wrong, 401).contains("incorrect username or password"));
    let unknown = http()
        .put(format!("{base}-/user/org.couchdb.user:mallory"))
        .json(&json!({"name": "mallory", "password": "whatever-1"}))
        .send()
        .expect("put");
    assert!(expect_error(unknown, 401).contains("incorrect username or password"));
    let listed = server.cli(&["user", "list"], "");
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("mallory"),
        "registration is off by default"
    );

    let token = server.login("default", "carol", "carol-password");
    assert!(token.starts_with("gth_"));
    let me: Value = http()
        .get(format!("{base}-/whoami"))
        .bearer_auth(&token)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(me["username"], "carol");
    let basic: Value = http()
        .get(format!("{base}-/whoami"))
        .basic_auth("carol", Some("carol-password"))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(basic["username"], "carol");
    let token_as_password: Value = http()
        .get(format!("{base}-/whoami"))
        .basic_auth("carol", Some(&token))
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(token_as_password["username"], "carol");

    let logout = http()
        .delete(format!("{base}-/user/token/{token}"))
        .bearer_auth(&token)
        .send()
        .expect("delete");
    assert_eq!(logout.status(), 200);
    let after = http()
        .get(format!("{base}-/whoami"))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert_eq!(after.status(), 401);
}

#[test]
fn ping_and_health() {
    // Embedded: it makes the blob folder unusable (the bucket's outage: `replicas`).
    let server = TestServer::start_embedded("");
    for path in ["/-/ping", "/-/health", "/-/ready", "/r/default/-/ping"] {
        let response = http().get(format!("{}{path}", server.base)).send().expect("get");
        assert_eq!(response.status(), 200, "{path}");
    }
    let unknown = http()
        .get(format!("{}/r/nope/lodash", server.base))
        .send()
        .expect("get");
    assert!(expect_error(unknown, 404).contains("no registry named"));

    // Not ready while the blob store is unusable: 503 naming the part; ready again after.
    let blobs = server.data_dir.join("blobs");
    let aside = server.data_dir.join("blobs-aside");
    std::fs::rename(&blobs, &aside).expect("move the blob folder aside");
    std::fs::write(&blobs, b"not a folder").expect("a file in its place");
    let ready = http().get(format!("{}/-/ready", server.base)).send().expect("ready");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().expect("json");
    assert_eq!(body, json!({"status": "unavailable", "part": "blobs"}));
    std::fs::remove_file(&blobs).expect("remove the file");
    std::fs::rename(&aside, &blobs).expect("put the blob folder back");
    let ready = http().get(format!("{}/-/ready", server.base)).send().expect("ready");
    assert_eq!(ready.status(), 200);
}

#[test]
fn metrics_count_requests_by_route_template_and_never_name_a_package() {
    let fake = crate::support::fake_upstream::FakeUpstream::start();
    fake.publish("gatehouse-upstream-only", "1.0.0");
    let server = TestServer::start_with_config(&format!("[registries.default]\nupstreams = [\"{}\"]\n", fake.url));
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "gatehouse-metered", "1.0.0");
    let tarball = package_tarball("gatehouse-metered", "1.0.0");
    for _ in 0..3 {
        assert_eq!(get_from(&server, "default", "gatehouse-metered", &token).status(), 200);
    }
    let got = get_from(
        &server,
        "default",
        "gatehouse-metered/-/gatehouse-metered-1.0.0.tgz",
        &token,
    );
    assert_eq!(got.bytes().expect("tarball").len(), tarball.len());
    let pulled = get_from(
        &server,
        "default",
        "gatehouse-upstream-only/-/gatehouse-upstream-only-1.0.0.tgz",
        &token,
    );
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        get_from(&server, "default", "gatehouse-no-such-package", &token).status(),
        404
    );
    assert_eq!(
        http()
            .get(format!("{}/-/api/v1/users", server.base))
            .send()
            .expect("api")
            .status(),
        401
    );

    let response = http()
        .get(format!("{}/-/metrics", server.base))
        .send()
        .expect("metrics");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().expect("text");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    let packuments = r#"gatehouse_http_request_duration_seconds_count{surface="registry",route="/{name}",method="GET",status="200"}"#;
    assert!(value(packuments) >= 3.0);
    assert_eq!(
        value(
            r#"gatehouse_http_request_duration_seconds_count{surface="registry",route="/{name}",method="GET",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"gatehouse_http_request_duration_seconds_count{surface="registry",route="/{name}",method="PUT",status="201"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"gatehouse_http_request_duration_seconds_count{surface="api",route="/-/api/v1/users",method="GET",status="401"}"#
        ),
        1.0
    );
    assert!(
        value(
            r#"gatehouse_http_request_duration_seconds_count{surface="registry",route="/{name}/-/{file}",method="GET",status="200"}"#
        ) >= 2.0
    );
    assert_eq!(
        value(r#"gatehouse_versions_admitted_total{origin="publish",outcome="stored"}"#),
        1.0
    );
    assert_eq!(
        value(r#"gatehouse_versions_admitted_total{origin="pull",outcome="stored"}"#),
        1.0
    );
    assert!(value(r#"gatehouse_blob_bytes_total{direction="in"}"#) >= tarball.len() as f64);
    assert!(value(r#"gatehouse_blob_bytes_total{direction="out"}"#) >= tarball.len() as f64);
    assert!(value(r#"gatehouse_cache_lookups_total{cache="packument",result="hit"}"#) >= 1.0);
    assert!(value(r#"gatehouse_cache_lookups_total{cache="packument",result="miss"}"#) >= 1.0);
    assert!(value(r#"gatehouse_upstream_requests_total{outcome="2xx"}"#) >= 1.0);
    // SQLite has one writer connection; the PostgreSQL pool is as big as configured.
    let (pool, max) = if server.stores.is_scale_out() {
        ("postgres", 8.0)
    } else {
        ("writer", 1.0)
    };
    assert_eq!(
        value(&format!(
            r#"gatehouse_database_connections{{pool="{pool}",state="max"}}"#
        )),
        max
    );
    for name in [
        "gatehouse-metered",
        "gatehouse-upstream-only",
        "gatehouse-no-such-package",
        "admin",
    ] {
        assert!(!text.contains(name), "{name} in the metrics:\n{text}");
    }
}

#[test]
fn a_packument_without_gzip_is_the_gzip_one_inflated_and_never_stale() {
    use std::io::Read as _;

    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "plain", "1.0.0");
    let url = format!("{}plain", server.registry_url("default"));
    let identity = |url: &str| {
        let response = http().get(url).bearer_auth(&token).send().expect("get");
        assert_eq!(response.headers().get("content-encoding"), None);
        response.bytes().expect("body").to_vec()
    };
    let gzipped = http()
        .get(&url)
        .bearer_auth(&token)
        .header("accept-encoding", "gzip")
        .send()
        .expect("get");
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(gzipped.bytes().expect("body").as_ref())
        .read_to_end(&mut inflated)
        .expect("gzip");
    assert_eq!(identity(&url), inflated, "the same document either way");

    // Many clients at once get the same bytes.
    let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..32).map(|_| scope.spawn(|| identity(&url))).collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    assert!(bodies.iter().all(|body| body == &inflated));

    // A new version is in the very next answer.
    publish_ok(&server, "default", &token, "plain", "1.0.1");
    let doc: Value = serde_json::from_slice(&identity(&url)).expect("json");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.1");
    assert!(doc["versions"]["1.0.1"].is_object());
}

/// A download asking for one byte range gets those bytes alone (206 with
/// `Content-Range`), read from the blob store without the rest; a range past the end
/// is 416; several ranges, or an `If-Range` naming another version, get it whole.
#[test]
fn tarball_downloads_answer_one_byte_range() {
    let server = TestServer::start();
    let token = server.admin_token();
    for (name, tarball) in [
        // Large (streamed from its file or object) and small (kept in memory, or
        // still in the blob journal).
        ("ranged", large_package_tarball("ranged", "1.0.0", 600 * 1024)),
        ("ranged-small", package_tarball("ranged-small", "1.0.0")),
    ] {
        let response = publish(
            &server,
            "default",
            &token,
            &publish_body_with(name, "1.0.0", "latest", &tarball),
        );
        assert_eq!(response.status(), 201);
        let url = format!("{}{name}/-/{name}-1.0.0.tgz", server.registry_url("default"));
        let len = tarball.len();
        let get = |range: &str, if_range: Option<&str>| {
            let mut request = http().get(&url).bearer_auth(&token).header("range", range);
            if let Some(validator) = if_range {
                request = request.header("if-range", validator);
            }
            request.send().expect("download")
        };
        let whole = http().get(&url).bearer_auth(&token).send().expect("download");
        assert_eq!(whole.headers()["accept-ranges"], "bytes");
        let etag = whole.headers()["etag"].to_str().expect("etag").to_owned();

        for (range, expected) in [
            ("bytes=0-99".to_owned(), 0..100),
            (format!("bytes={}-", len / 2), len / 2..len),
            ("bytes=-10".to_owned(), len - 10..len),
            (format!("bytes=10-{}", len * 2), 10..len),
        ] {
            let part = get(&range, None);
            assert_eq!(part.status(), 206, "{name} {range}");
            assert_eq!(
                part.headers()["content-range"],
                format!("bytes {}-{}/{len}", expected.start, expected.end - 1).as_str()
            );
            assert_eq!(part.headers()["etag"], etag.as_str());
            assert!(
                part.bytes().expect("bytes").as_ref() == &tarball[expected],
                "{name} {range}"
            );
        }
        let past = get(&format!("bytes={len}-"), None);
        assert_eq!(past.status(), 416);
        assert_eq!(past.headers()["content-range"], format!("bytes */{len}").as_str());
        for (range, if_range) in [
            ("bytes=0-1,5-9", None),
            ("bytes=9-1", None),
            ("bytes=0-99", Some("\"stale\"")),
        ] {
            let whole = get(range, if_range);
            assert_eq!(whole.status(), 200, "{range} {if_range:?}");
            assert!(whole.bytes().expect("bytes").as_ref() == tarball.as_slice());
        }
        assert_eq!(
            get("bytes=0-99", Some(&etag)).status(),
            206,
            "If-Range with the tarball's ETag"
        );
    }
}
