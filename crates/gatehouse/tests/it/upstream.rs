//! Upstreams against a local fake registry: merging, pull-through, caching,
//! coalescing, failures, dependency-confusion protection, chained registries.

use std::io::Read as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::fake_upstream::{FakeUpstream, Mode};
use crate::support::*;

/// A server whose `default` registry proxies `fake` (as its "npmjs"), with extra
/// `[upstream]` settings.
fn proxy(fake: &FakeUpstream, upstream_settings: &str) -> TestServer {
    TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n{upstream_settings}\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ))
}

fn get(server: &TestServer, path: &str, token: &str) -> reqwest::blocking::Response {
    get_from(server, "default", path, token)
}

#[test]
fn proxied_packuments_pass_metadata_through_and_tarballs_are_pulled_once() {
    let fake = FakeUpstream::start();
    fake.publish("left-pad", "1.0.0");
    let bytes = fake.publish("left-pad", "1.1.0");
    let server = proxy(&fake, "");
    let token = server.admin_token();

    let doc: Value = get(&server, "left-pad", &token).json().expect("json");
    assert_eq!(doc["dist-tags"]["latest"], "1.1.0");
    let v = &doc["versions"]["1.1.0"];
    assert_eq!(
        v["dist"]["tarball"],
        format!("{}left-pad/-/left-pad-1.1.0.tgz", server.registry_url("default"))
    );
    assert_eq!(v["dist"]["integrity"], sri_sha512(&bytes));
    assert_eq!(v["dist"]["signatures"][0]["keyid"], "SHA256:test");
    assert_eq!(v["_npmUser"]["trustedPublisher"]["id"], "github");
    assert_eq!(v["engines"]["node"], ">=18");
    assert_eq!(doc["time"]["1.1.0"], "2021-06-01T12:00:00.000Z");
    assert_eq!(doc["readme"], "upstream readme");

    for _ in 0..3 {
        let tarball = get(&server, "left-pad/-/left-pad-1.1.0.tgz", &token);
        assert_eq!(tarball.status(), 200);
        assert_eq!(tarball.bytes().expect("bytes").as_ref(), bytes.as_slice());
    }
    assert_eq!(
        fake.hits("left-pad/-/left-pad-1.1.0.tgz"),
        1,
        "pulled once, then served locally"
    );
    // The pulled version keeps the upstream's publish time (release-age gates depend on it).
    let again: Value = get(&server, "left-pad", &token).json().expect("json");
    assert_eq!(again["time"]["1.1.0"], "2021-06-01T12:00:00.000Z");
    assert_eq!(again["dist-tags"]["latest"], "1.1.0");
    let audit = String::from_utf8_lossy(&server.cli(&["audit"], "").stdout).into_owned();
    assert!(audit.contains("version.pull"), "{audit}");
}

#[test]
fn internal_packages_never_take_versions_from_the_public_upstream() {
    let fake = FakeUpstream::start();
    let server = proxy(&fake, "");
    let token = server.admin_token();
    // Claimed names are published without asking the upstream about them.
    for claim in ["@acme/*", "corp-utils"] {
        assert!(server.cli(&["package", "claim", "default", claim], "").status.success());
    }
    publish_ok(&server, "default", &token, "@acme/lib", "1.0.0");
    publish_ok(&server, "default", &token, "corp-utils", "1.0.0");
    // Someone publishes higher versions of the same names on the public registry.
    fake.publish("@acme/lib", "9.9.9");
    fake.publish("corp-utils", "9.9.9");
    fake.publish("public-thing", "2.0.0");

    for name in ["@acme%2flib", "corp-utils"] {
        let doc: Value = get(&server, name, &token).json().expect("json");
        let versions: Vec<&String> = doc["versions"].as_object().expect("versions").keys().collect();
        assert_eq!(versions, ["1.0.0"], "{name}");
        assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
        let tarball = get(
            &server,
            &format!("{name}/-/{}-9.9.9.tgz", name.rsplit("%2f").next().expect("base")),
            &token,
        );
        assert_eq!(tarball.status(), 404);
    }
    assert_eq!(fake.hits("corp-utils"), 0, "the public upstream is not even asked");
    assert_eq!(fake.hits("@acme%2flib"), 0);
    // Names nobody published here still come from the upstream.
    let public: Value = get(&server, "public-thing", &token).json().expect("json");
    assert_eq!(public["dist-tags"]["latest"], "2.0.0");
}

#[test]
fn concurrent_requests_make_one_upstream_request() {
    let fake = FakeUpstream::start();
    fake.publish("popular", "1.0.0");
    fake.set_delay(Duration::from_millis(300));
    let server = proxy(&fake, "");
    let token = server.admin_token();
    let fetch_all = |path: &str| {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..100)
                .map(|_| scope.spawn(|| get(&server, path, &token).status().as_u16()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect::<Vec<_>>()
        })
    };
    assert!(fetch_all("popular").iter().all(|s| *s == 200));
    assert_eq!(fake.hits("popular"), 1);
    assert!(fetch_all("popular/-/popular-1.0.0.tgz").iter().all(|s| *s == 200));
    assert_eq!(fake.hits("popular/-/popular-1.0.0.tgz"), 1);
}

/// Reads exactly `len` bytes of a body that is still arriving.
fn read_some(response: &mut reqwest::blocking::Response, len: usize) -> Vec<u8> {
    let mut buffer = vec![0; len];
    response
        .read_exact(&mut buffer)
        .expect("the first bytes arrive before the pull ends");
    buffer
}

#[test]
fn tarballs_stream_to_clients_while_they_are_pulled() {
    let fake = FakeUpstream::start();
    let tarball = large_package_tarball("streamed", "1.0.0", 600 * 1024);
    fake.publish_bytes("streamed", "1.0.0", &tarball, &tarball);
    let gate = fake.pause_tarballs_after(300 * 1024);
    let server = proxy(&fake, "");
    let token = server.admin_token();
    let blobs = blob_count(&server);
    let path = "streamed/-/streamed-1.0.0.tgz";

    // The upstream is stuck half-way, yet both downloads are answered and receive bytes.
    let mut first = get(&server, path, &token);
    assert_eq!(first.status(), 200);
    assert_eq!(first.content_length(), Some(tarball.len() as u64));
    assert_eq!(read_some(&mut first, 100 * 1024), tarball[..100 * 1024]);
    let mut second = get(&server, path, &token);
    assert_eq!(second.status(), 200);
    assert_eq!(read_some(&mut second, 200 * 1024), tarball[..200 * 1024]);
    assert_eq!(
        blob_count(&server),
        blobs,
        "nothing is stored before the whole tarball is checked"
    );
    if !server.stores.is_scale_out() {
        // On S3 a tarball this small is staged in the server's memory, which another
        // process cannot count.
        assert_eq!(staged_blob_count(&server), 1, "it is being written to storage");
    }

    gate.open();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).expect("rest of the first download");
    assert_eq!(rest, tarball[100 * 1024..]);
    rest.clear();
    second.read_to_end(&mut rest).expect("rest of the second download");
    assert_eq!(rest, tarball[200 * 1024..]);
    assert_eq!(fake.hits(path), 1, "one upstream request for both downloads");
    assert_eq!(blob_count(&server), blobs + 1);
    assert_eq!(staged_blob_count(&server), 0);

    // Stored: the next download comes from storage, complete and with its ETag.
    let third = get(&server, path, &token);
    assert!(third.headers().contains_key("etag"));
    assert_eq!(third.bytes().expect("bytes").as_ref(), tarball.as_slice());
    assert_eq!(fake.hits(path), 1);
}

#[test]
fn a_tarball_streams_through_a_chain_of_registries() {
    let fake = FakeUpstream::start();
    let tarball = large_package_tarball("deep", "1.0.0", 600 * 1024);
    fake.publish_bytes("deep", "1.0.0", &tarball, &tarball);
    let gate = fake.pause_tarballs_after(300 * 1024);
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n[registries.team]\nupstreams = [\"registry:default\"]\n",
        fake.url
    ));
    let team = server.login("team", "admin", ADMIN_PASSWORD);
    let blobs = blob_count(&server);
    let path = "deep/-/deep-1.0.0.tgz";

    // `team` follows `default`'s pull, which follows the paused upstream.
    let mut download = get_from(&server, "team", path, &team);
    assert_eq!(download.status(), 200);
    assert_eq!(read_some(&mut download, 100 * 1024), tarball[..100 * 1024]);
    assert_eq!(
        blob_count(&server),
        blobs,
        "nothing stored while the upstream is paused"
    );

    gate.open();
    let mut rest = Vec::new();
    download.read_to_end(&mut rest).expect("rest of the download");
    assert_eq!(rest, tarball[100 * 1024..]);
    assert_eq!(fake.hits(path), 1);
    // Both registries hold it now (one blob: the same bytes), and serve it with the upstream gone.
    assert_eq!(blob_count(&server), blobs + 1);
    fake.go_down();
    let default = server.admin_token();
    assert_eq!(
        get(&server, path, &default).bytes().expect("bytes").as_ref(),
        tarball.as_slice()
    );
    let again = get_from(&server, "team", path, &team);
    assert_eq!(again.bytes().expect("bytes").as_ref(), tarball.as_slice());
}

#[test]
fn a_streamed_tarball_that_fails_its_integrity_check_is_cut_short_and_not_stored() {
    let fake = FakeUpstream::start();
    let declared = large_package_tarball("tampered", "1.0.0", 400 * 1024);
    let mut served = declared.clone();
    let middle = served.len() / 2;
    served[middle] ^= 0xff;
    fake.publish_bytes("tampered", "1.0.0", &declared, &served);
    let gate = fake.pause_tarballs_after(200 * 1024);
    let server = proxy(&fake, "");
    let token = server.admin_token();
    let blobs = blob_count(&server);
    let path = "tampered/-/tampered-1.0.0.tgz";

    let mut download = get(&server, path, &token);
    assert_eq!(download.status(), 200);
    assert_eq!(download.content_length(), Some(served.len() as u64));
    read_some(&mut download, 100 * 1024);
    gate.open();
    let mut rest = Vec::new();
    let error = download.read_to_end(&mut rest).expect_err("the body must not complete");
    assert!(
        100 * 1024 + rest.len() < served.len(),
        "the client never gets the whole tampered tarball ({error})"
    );
    assert!(eventually(Duration::from_secs(5), || staged_blob_count(&server) == 0));
    assert_eq!(blob_count(&server), blobs, "nothing stored");
    let doc: Value = get(&server, "tampered", &token).json().expect("json");
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"]["integrity"],
        sri_sha512(&declared),
        "still offered as the upstream declares it, never as what it served"
    );
    let log = server.log();
    assert!(
        log.contains("pull failed") && log.contains("integrity mismatch"),
        "the log says why: {log}"
    );
    // Failures are not remembered as success: a retry asks again (and is refused again).
    let retry = get(&server, path, &token);
    assert!(retry.bytes().is_err());
    assert_eq!(fake.hits(path), 2);
    assert_eq!(blob_count(&server), blobs);
}

#[test]
fn an_upstream_that_drops_a_tarball_mid_way_stores_nothing_and_a_retry_succeeds() {
    let fake = FakeUpstream::start();
    let tarball = large_package_tarball("flaky", "1.0.0", 400 * 1024);
    fake.publish_bytes("flaky", "1.0.0", &tarball, &tarball);
    let gate = fake.pause_tarballs_after(100 * 1024);
    fake.cut_tarballs_after(Some(150 * 1024));
    let server = proxy(&fake, "breaker_failures = 1000\n");
    let token = server.admin_token();
    let blobs = blob_count(&server);
    let path = "flaky/-/flaky-1.0.0.tgz";

    let mut download = get(&server, path, &token);
    assert_eq!(download.status(), 200);
    assert_eq!(read_some(&mut download, 80 * 1024), tarball[..80 * 1024]);
    gate.open();
    let mut rest = Vec::new();
    download
        .read_to_end(&mut rest)
        .expect_err("a cut upstream body must not complete the download");
    assert!(eventually(Duration::from_secs(5), || staged_blob_count(&server) == 0));
    assert_eq!(blob_count(&server), blobs, "nothing stored");

    fake.cut_tarballs_after(None);
    let retry = get(&server, path, &token);
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.bytes().expect("bytes").as_ref(), tarball.as_slice());
    assert_eq!(fake.hits(path), 2);
    assert_eq!(blob_count(&server), blobs + 1);
}

#[test]
fn stale_copies_are_revalidated_and_served_when_the_upstream_fails() {
    let fake = FakeUpstream::start();
    fake.publish("steady", "1.0.0");
    let server = proxy(&fake, "max_age_secs = 0\nbreaker_failures = 1000\n");
    let token = server.admin_token();
    assert_eq!(get(&server, "steady/-/steady-1.0.0.tgz", &token).status(), 200);
    assert_eq!(get(&server, "steady", &token).status(), 200);
    let hits = fake.hits("steady");
    assert!(hits >= 1);
    // With max_age 0 every read revalidates: 304s, not full downloads.
    assert_eq!(get(&server, "steady", &token).status(), 200);
    assert!(fake.not_modified_answers() >= 1);

    for mode in [Mode::Failing, Mode::Resetting] {
        fake.set_mode(mode.clone());
        let response = get(&server, "steady", &token);
        assert_eq!(response.status(), 200, "{mode:?}");
        assert_eq!(response.headers()["x-gatehouse-upstream"], "stale", "{mode:?}");
        let doc: Value = response.json().expect("json");
        assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
        assert_eq!(get(&server, "steady/-/steady-1.0.0.tgz", &token).status(), 200);
    }
    fake.go_down();
    let doc: Value = get(&server, "steady", &token).json().expect("json");
    assert_eq!(doc["versions"]["1.0.0"]["version"], "1.0.0");
    // A name never fetched can't be served: a clear 502, not a 404 lie.
    let error = expect_error(get(&server, "never-seen", &token), 502);
    assert!(error.contains("unreachable") || error.contains("failing"), "{error}");
}

#[test]
fn stored_copies_survive_a_restart_with_the_upstream_gone() {
    let fake = FakeUpstream::start();
    fake.publish("durable", "1.0.0");
    let mut server = proxy(&fake, "");
    let token = server.admin_token();
    assert_eq!(get(&server, "durable/-/durable-1.0.0.tgz", &token).status(), 200);
    fake.go_down();
    server.restart();
    let token = server.admin_token();
    assert_eq!(get(&server, "durable", &token).status(), 200);
    assert_eq!(get(&server, "durable/-/durable-1.0.0.tgz", &token).status(), 200);
}

#[test]
fn upstream_404s_are_remembered_briefly() {
    let fake = FakeUpstream::start();
    let server = proxy(&fake, "not_found_ttl_secs = 60\n");
    let token = server.admin_token();
    for _ in 0..5 {
        assert_eq!(get(&server, "no-such-package", &token).status(), 404);
    }
    assert_eq!(fake.hits("no-such-package"), 1);
}

#[test]
fn a_hanging_upstream_times_out_and_the_circuit_breaker_stops_asking() {
    let fake = FakeUpstream::start();
    fake.set_mode(Mode::Hanging);
    let server = proxy(
        &fake,
        "first_byte_timeout_ms = 300\nbreaker_failures = 2\nbreaker_open_secs = 60\n",
    );
    let token = server.admin_token();
    let started = Instant::now();
    let error = expect_error(get(&server, "slow-a", &token), 502);
    assert!(error.contains("timed out"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(get(&server, "slow-b", &token).status(), 502);
    let error = expect_error(get(&server, "slow-c", &token), 502);
    assert!(error.contains("failing"), "{error}");
    assert_eq!(fake.hits("slow-c"), 0, "breaker open: not asked");
}

#[test]
fn bad_upstream_answers_are_refused_and_nothing_is_stored() {
    let fake = FakeUpstream::start();
    let good = super::support::package_tarball("liar", "1.0.0");
    let evil = super::support::package_tarball("liar", "6.6.6");
    fake.publish_bytes("liar", "1.0.0", &good, &evil);
    fake.publish("elsewhere", "1.0.0");
    fake.edit("elsewhere", |doc| {
        doc["versions"]["1.0.0"]["dist"]["tarball"] = json!("http://127.0.0.2:9/elsewhere-1.0.0.tgz");
    });
    fake.publish("confused", "1.0.0");
    fake.publish("confused", "2.0.0");
    fake.edit("confused", |doc| {
        doc["versions"]["2.0.0"]["name"] = json!("other-package")
    });
    fake.set_raw_packument("broken", b"{\"name\": \"broken\", \"versions\": {".to_vec());
    let huge = json!({"name": "huge", "versions": {}, "readme": "x".repeat(2 * 1024 * 1024)});
    fake.set_raw_packument("huge", serde_json::to_vec(&huge).expect("json"));
    fake.set_raw_packument("impostor", br#"{"name":"someone-else","versions":{}}"#.to_vec());
    let server = proxy(&fake, "max_packument_bytes = 1048576\n");
    let token = server.admin_token();
    let blobs = blob_count(&server);

    let error = expect_error(get(&server, "liar/-/liar-1.0.0.tgz", &token), 502);
    assert!(error.contains("integrity"), "{error}");
    let error = expect_error(get(&server, "elsewhere/-/elsewhere-1.0.0.tgz", &token), 502);
    assert!(error.contains("another host"), "{error}");
    let doc: Value = get(&server, "confused", &token).json().expect("json");
    assert!(
        doc["versions"].get("2.0.0").is_none(),
        "a manifest naming another package is dropped"
    );
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    let error = expect_error(get(&server, "broken", &token), 502);
    assert!(error.contains("not valid JSON"), "{error}");
    let error = expect_error(get(&server, "huge", &token), 502);
    assert!(error.contains("more than 1048576 bytes"), "{error}");
    let error = expect_error(get(&server, "impostor", &token), 502);
    assert!(error.contains("names another package"), "{error}");
    assert_eq!(blob_count(&server), blobs, "nothing stored");
    // Still alive, and a retry asks again (failures are not cached as success).
    assert_eq!(get(&server, "liar/-/liar-1.0.0.tgz", &token).status(), 502);
    assert_eq!(fake.hits("liar/-/liar-1.0.0.tgz"), 2);

    fake.set_mode(Mode::Redirecting("http://127.0.0.2:9/elsewhere".into()));
    let error = expect_error(get(&server, "redirected", &token), 502);
    assert!(error.contains("redirect"), "{error}");
}

#[test]
fn chained_registries_pull_through_each_other() {
    let fake = FakeUpstream::start();
    let bytes = fake.publish("chained", "1.0.0");
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n[registries.team]\nupstreams = [\"registry:default\"]\n",
        fake.url
    ));
    let team = server.login("team", "admin", ADMIN_PASSWORD);
    let default = server.admin_token();
    publish_ok(&server, "default", &default, "@corp/shared", "1.0.0");

    let doc: Value = get_from(&server, "team", "chained", &team).json().expect("json");
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"]["tarball"],
        format!("{}chained/-/chained-1.0.0.tgz", server.registry_url("team"))
    );
    let tarball = get_from(&server, "team", "chained/-/chained-1.0.0.tgz", &team);
    assert_eq!(tarball.bytes().expect("bytes").as_ref(), bytes.as_slice());
    // default pulled it on the way: it serves the version locally now.
    fake.go_down();
    assert_eq!(get(&server, "chained/-/chained-1.0.0.tgz", &default).status(), 200);

    // An internal package of `default` flows to `team`, which trusts it.
    let shared: Value = get_from(&server, "team", "@corp%2fshared", &team).json().expect("json");
    assert_eq!(shared["dist-tags"]["latest"], "1.0.0");
}

#[test]
fn internal_by_default_can_be_turned_off() {
    let fake = FakeUpstream::start();
    let server = TestServer::start_with_config(&format!(
        "internal_by_default = false\n[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    ));
    let token = server.admin_token();
    assert!(
        server
            .cli(&["package", "claim", "default", "shared-name"], "")
            .status
            .success()
    );
    publish_ok(&server, "default", &token, "shared-name", "1.0.0");
    fake.publish("shared-name", "2.0.0");
    let doc: Value = get(&server, "shared-name", &token).json().expect("json");
    let versions: Vec<&String> = doc["versions"].as_object().expect("versions").keys().collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"], "not internal: upstream versions merge in");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0", "local tags win");
    // An administrator can still flag it; the running server follows within moments.
    assert!(
        server
            .cli(&["package", "internal", "default", "shared-name", "on"], "")
            .status
            .success()
    );
    let flagged = eventually(Duration::from_secs(5), || {
        let doc: Value = get(&server, "shared-name", &token).json().expect("json");
        doc["versions"].get("2.0.0").is_none()
    });
    assert!(flagged, "{}", server.log());
}

/// With the defaults, any logged-in user may publish and a new name turns internal:
/// publishing a name the upstream serves would hide the public package from everyone.
/// It is refused unless a registry admin claimed the name (or its scope) for the registry.
#[test]
fn nobody_shadows_a_public_package_unless_the_name_is_claimed() {
    let fake = FakeUpstream::start();
    fake.publish("left-pad", "1.3.0");
    fake.publish("@acme/tools", "1.0.0");
    let server = proxy(&fake, "");
    server.add_user("mallory", "mallory-password-1");
    let mallory = server.login("default", "mallory", "mallory-password-1");
    let admin = server.admin_token();
    let blobs = blob_count(&server);

    for token in [&mallory, &admin] {
        let refused = publish(&server, "default", token, &publish_body("left-pad", "9.0.0"));
        let error = expect_error(refused, 403);
        assert!(
            error.contains("\"left-pad\" is served by an upstream of registry \"default\""),
            "{error}"
        );
        assert!(error.contains("gatehouse package claim default left-pad"), "{error}");
    }
    assert_eq!(blob_count(&server), blobs, "nothing stored");
    // Everyone still gets the public package.
    let doc: Value = get(&server, "left-pad", &mallory).json().expect("json");
    let versions: Vec<&String> = doc["versions"].as_object().expect("versions").keys().collect();
    assert_eq!(versions, ["1.3.0"]);
    assert_eq!(get(&server, "left-pad/-/left-pad-1.3.0.tgz", &admin).status(), 200);
    let audit = String::from_utf8_lossy(&server.cli(&["audit"], "").stdout).into_owned();
    assert!(!audit.contains("version.publish"), "{audit}");

    // A scoped name says how to claim the whole scope too.
    let error = expect_error(
        publish(&server, "default", &admin, &publish_body("@acme/tools", "2.0.0")),
        403,
    );
    assert!(error.contains("or the whole scope: @acme/*"), "{error}");

    // Claims are for administrators: the API refuses anyone else, and says why.
    let claims_url = format!("{}/-/api/v1/registries/default/claims", server.base);
    let refused = http()
        .post(&claims_url)
        .bearer_auth(&mallory)
        .json(&json!({"pattern": "@acme/*"}))
        .send()
        .expect("post");
    assert_eq!(
        expect_error(refused, 403),
        "the admin API is for administrators with a read-write token"
    );
    let bad = http()
        .post(&claims_url)
        .bearer_auth(&admin)
        .json(&json!({"pattern": "left-*"}))
        .send()
        .expect("post");
    assert!(expect_error(bad, 400).contains("claim a package name or a whole scope"));
    let claimed = http()
        .post(&claims_url)
        .bearer_auth(&admin)
        .json(&json!({"pattern": "@acme/*"}))
        .send()
        .expect("post");
    assert_eq!(claimed.status(), 201);
    assert!(
        server
            .cli(&["package", "claim", "default", "left-pad"], "")
            .status
            .success()
    );
    let listed = String::from_utf8_lossy(&server.cli(&["package", "claims", "default"], "").stdout).into_owned();
    assert!(
        listed.starts_with("@acme/*\tadmin\t") && listed.contains("\nleft-pad\tcli\t"),
        "{listed}"
    );

    // Claimed: the registry's own publishes go in (and, internal, take over the name).
    publish_ok(&server, "default", &admin, "left-pad", "9.0.0");
    publish_ok(&server, "default", &admin, "@acme/tools", "2.0.0");
    let audit = String::from_utf8_lossy(&server.cli(&["audit"], "").stdout).into_owned();
    assert!(audit.contains("package.claim"), "{audit}");
}

/// Flagging a package internal cuts it off from the upstream's tags: one that only has
/// pulled versions still gets a `latest`, the highest release it holds.
#[test]
fn a_pulled_package_flagged_internal_keeps_a_latest() {
    let fake = FakeUpstream::start();
    fake.publish("pulled-only", "1.0.0");
    fake.publish("pulled-only", "1.1.0");
    let server = proxy(&fake, "");
    let token = server.admin_token();
    assert_eq!(
        get(&server, "pulled-only/-/pulled-only-1.1.0.tgz", &token).status(),
        200
    );
    assert_eq!(
        get(&server, "pulled-only/-/pulled-only-1.0.0.tgz", &token).status(),
        200
    );
    fake.publish("pulled-only", "2.0.0-beta.1");
    let out = server.cli(&["package", "internal", "default", "pulled-only", "on"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        eventually(Duration::from_secs(5), || {
            let doc: Value = get(&server, "pulled-only", &token).json().expect("json");
            doc["dist-tags"]["latest"] == "1.1.0" && doc["versions"].as_object().is_some_and(|v| v.len() == 2)
        }),
        "{}",
        server.log()
    );
}

/// An administrator drops a stored upstream copy, and the next request asks again.
#[test]
fn a_stored_upstream_copy_is_purged_on_demand() {
    let fake = FakeUpstream::start();
    fake.publish("purgeable", "1.0.0");
    let server = proxy(&fake, "");
    let admin = server.create_token(&["--user", "admin"]);
    let latest = || -> Value {
        let doc: Value = get(&server, "purgeable", &admin).json().expect("json");
        doc["dist-tags"]["latest"].clone()
    };
    assert_eq!(latest(), "1.0.0");
    fake.publish("purgeable", "1.1.0");
    assert_eq!(latest(), "1.0.0", "fresh for max_age_secs");
    let purged: Value = http()
        .post(format!("{}/-/api/v1/registries/default/purge", server.base))
        .bearer_auth(&admin)
        .json(&json!({"package": "purgeable"}))
        .send()
        .expect("purge")
        .json()
        .expect("json");
    assert_eq!(purged["purged"], 1);
    assert!(eventually(Duration::from_secs(10), || latest() == "1.1.0"));
    let out = server.cli(&["package", "purge", "default", "purgeable"], "");
    assert!(String::from_utf8_lossy(&out.stdout).contains("dropped 1 stored upstream copies"));
}

/// An administrator removes a version or a package: unpublished, the numbers stay taken.
#[test]
fn administrators_delete_versions_and_packages() {
    let server = TestServer::start();
    let admin = server.create_token(&["--user", "admin"]);
    publish_ok(&server, "default", &admin, "doomed", "1.0.0");
    publish_ok(&server, "default", &admin, "doomed", "1.1.0");
    let out = server.cli(&["package", "delete", "default", "doomed@1.1.0"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("run again with --yes"));
    assert!(
        server
            .cli(&["package", "delete", "default", "doomed@1.1.0", "--yes"], "")
            .status
            .success()
    );
    assert!(eventually(Duration::from_secs(5), || {
        let doc: Value = get(&server, "doomed", &admin).json().expect("json");
        doc["dist-tags"]["latest"] == "1.0.0" && doc["versions"].get("1.1.0").is_none()
    }));
    let again = expect_error(
        publish(&server, "default", &admin, &publish_body("doomed", "1.1.0")),
        403,
    );
    assert!(
        again.contains("cannot publish over the previously published versions"),
        "{again}"
    );
    let deleted = http()
        .delete(format!("{}/-/api/v1/registries/default/packages/doomed", server.base))
        .bearer_auth(&admin)
        .send()
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_eq!(get(&server, "doomed", &admin).status(), 404);
    let missing = http()
        .delete(format!(
            "{}/-/api/v1/registries/default/packages/never-was",
            server.base
        ))
        .bearer_auth(&admin)
        .send()
        .expect("delete");
    assert_eq!(expect_error(missing, 404), "default holds no package never-was");
}

/// `gatehouse warm` pulls what a lockfile pins, of every kind, so the registry serves
/// the project with the upstream gone.
#[test]
fn warm_pulls_every_locked_version_then_serves_them_offline() {
    let fake = FakeUpstream::start();
    let mut tarballs = Vec::new();
    for (name, version) in [
        ("alpha", "1.0.0"),
        ("beta", "2.1.0"),
        ("@scope/gamma", "0.3.0"),
        ("delta", "4.0.0"),
        ("epsilon", "5.0.0"),
    ] {
        tarballs.push((name, version, fake.publish(name, version)));
    }
    let server = proxy(&fake, "");
    let dir = tempfile::tempdir().expect("tempdir");
    let lockfiles = [
        (
            "package-lock.json",
            r#"{"name": "app", "lockfileVersion": 3, "packages": {"": {}, "node_modules/alpha": {"version": "1.0.0"}, "node_modules/@scope/gamma": {"version": "0.3.0"}}}"#,
        ),
        (
            "pnpm-lock.yaml",
            "lockfileVersion: '9.0'\npackages:\n  beta@2.1.0:\n    resolution: {integrity: sha512-x}\n",
        ),
        (
            "yarn.lock",
            "# yarn lockfile v1\n\nalpha@^1.0.0:\n  version \"1.0.0\"\n\ndelta@^4:\n  version \"4.0.0\"\n",
        ),
        (
            "berry.lock",
            "__metadata:\n  version: 8\n\"epsilon@npm:^5\":\n  version: 5.0.0\n  resolution: \"epsilon@npm:5.0.0\"\n",
        ),
        (
            "bun.lock",
            "{\"lockfileVersion\": 1, \"workspaces\": {\"\": {},}, \"packages\": {\"beta\": [\"beta@2.1.0\", \"\", {}, \"sha512-x\"],},}",
        ),
    ];
    for (file, text) in lockfiles {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("lockfile");
        let out = server.cli(&["warm", "default", "--lockfile", path.to_str().expect("utf8")], "");
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(summary.contains("0 refused, 0 failed"), "{file}: {summary}");
    }
    // A second warm finds everything held.
    let again = server.cli(
        &[
            "warm",
            "default",
            "--lockfile",
            dir.path().join("yarn.lock").to_str().expect("utf8"),
        ],
        "",
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 pulled, 2 already held"));

    fake.go_down();
    let token = server.admin_token();
    for (name, version, bytes) in &tarballs {
        let basename = name.rsplit('/').next().expect("basename");
        let path = format!("{}/-/{basename}-{version}.tgz", name.replace('/', "%2f"));
        let got = get(&server, &path, &token);
        assert_eq!(got.status(), 200, "{name} with the upstream down");
        assert_eq!(got.bytes().expect("bytes").as_ref(), bytes.as_slice(), "{name}");
    }

    // What can't be had is reported, with exit status 1; a file that is no lockfile too.
    let missing = dir.path().join("missing.json");
    std::fs::write(
        &missing,
        r#"{"lockfileVersion": 3, "packages": {"node_modules/zeta": {"version": "9.9.9"}}}"#,
    )
    .expect("write");
    let out = server.cli(&["warm", "default", "--lockfile", missing.to_str().expect("utf8")], "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failed\tzeta@9.9.9"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let junk = dir.path().join("notes.txt");
    std::fs::write(&junk, "shopping list\n").expect("write");
    let out = server.cli(&["warm", "default", "--lockfile", junk.to_str().expect("utf8")], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("this is not a lockfile Gatehouse reads"));
}
