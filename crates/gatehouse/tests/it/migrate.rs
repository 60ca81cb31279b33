//! `gatehouse migrate`: a stopped embedded install copied to PostgreSQL and S3 with
//! everything in it, each tarball verified, re-runnable, and back again; a
//! destination holding another install is refused and left alone.

use std::process::Output;

use serde_json::Value;

use crate::support::stack::{PREFIX, Stores};
use crate::support::*;
use gatehouse_store::test_support::s3;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a client sees of `name`: its versions, dist-tags and publish times.
fn seen(server: &TestServer, token: &str, name: &str) -> (Value, Value, Vec<String>) {
    let doc = packument(server, "default", token, name).unwrap_or_else(|| panic!("{name} is served"));
    let versions = doc["versions"].as_object().expect("versions").keys().cloned().collect();
    (doc["dist-tags"].clone(), doc["time"].clone(), versions)
}

#[test]
fn an_embedded_install_moves_to_postgres_and_s3_and_back() {
    let Some(scale_out) = Stores::scale_out() else { return };
    let Stores::ScaleOut(stores) = &scale_out else {
        unreachable!("scale-out stores")
    };
    let mut embedded = TestServer::start_embedded("[registries.team]\n");
    let admin = embedded.admin_token();
    publish_ok(&embedded, "default", &admin, "moved", "1.0.0");
    publish_ok(&embedded, "default", &admin, "moved", "1.1.0");
    // Over the S3 store's single-put size: it goes up in parts.
    let big = large_package_tarball("big", "1.0.0", 9 << 20);
    let response = publish(
        &embedded,
        "default",
        &admin,
        &publish_body_with("big", "1.0.0", "latest", &big),
    );
    assert_eq!(response.status(), 201);
    embedded.add_user("carol", "carol-password-1");
    let carol = embedded.login("team", "carol", "carol-password-1");
    let before = seen(&embedded, &admin, "moved");
    embedded.kill();

    // Into PostgreSQL and the bucket, with the bucket's settings in the environment.
    let to = [
        "migrate",
        "--to-database",
        &stores.database_url,
        "--to-blobs",
        &format!("s3://{}/{PREFIX}", s3::BUCKET),
    ];
    let mut env = scale_out.env();
    env.push(("AWS_ENDPOINT_URL", stores.s3.endpoint.clone()));
    let out = embedded.cli_with_env(&to, "", &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("and 3 tarballs (3 new, each verified)"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("versions: 3 rows (3 new)"), "{}", stderr(&out));
    assert!(stderr(&out).contains("tarballs: 3 of 3 (3 new)"), "{}", stderr(&out));
    // Interrupted or not, it can run again: nothing is copied twice.
    let again = embedded.cli_with_env(&to, "", &env);
    assert!(again.status.success(), "{}", stderr(&again));
    let copied = stdout(&again);
    assert!(copied.contains(" rows (0 new) and 3 tarballs (0 new"), "{copied}");

    // A server on the new stores serves it all, to the same credentials.
    let mut moved = TestServer::start_on_stores(scale_out.shared(), "[registries.team]\n");
    assert_eq!(seen(&moved, &admin, "moved"), before);
    let served = get_from(&moved, "default", "big/-/big-1.0.0.tgz", &admin);
    assert_eq!(served.status(), 200);
    assert!(
        served.bytes().expect("bytes").as_ref() == big.as_slice(),
        "the big tarball"
    );
    let me = get_from(&moved, "team", "-/whoami", &carol);
    assert_eq!(me.json::<Value>().expect("json")["username"], "carol");
    let audit = moved.cli_ok(&["audit", "--registry", "default", "--action", "version.publish"]);
    assert_eq!(audit.matches("moved").count(), 2, "the audit log came along: {audit}");
    // New rows get new ids (the sequences moved past the copied ones).
    publish_ok(&moved, "default", &admin, "moved", "2.0.0");
    moved.cli_ok(&["registry", "create", "later"]);
    let check = moved.cli_ok(&["check"]);
    assert!(
        check.contains("checked 4 versions and 4 blobs: 0 missing, 0 corrupt"),
        "{check}"
    );
    moved.kill();

    // Another install is not poured into this one.
    let mut other = TestServer::start_embedded("[registries.elsewhere]\n");
    other.kill();
    let refused = other.cli_with_env(&to, "", &env);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused)
            .contains("error: the destination holds another install (registry \"team\" is not this install's)"),
        "{}",
        stderr(&refused)
    );
    let check = moved.cli_ok(&["check"]);
    assert!(
        check.contains("checked 4 versions and 4 blobs"),
        "nothing changed: {check}"
    );

    // And back to an embedded install.
    let back = tempfile::tempdir().expect("tempdir");
    let data = back.path().join("data");
    let home = [
        "migrate",
        "--to-database",
        &format!("sqlite://{}", data.join("gatehouse.db").display()),
        "--to-blobs",
        &format!("file://{}", data.join("blobs").display()),
    ];
    let out = moved.cli(&home, "");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let home = TestServer::start_on(&data);
    let (_, _, versions) = seen(&home, &admin, "moved");
    assert_eq!(versions, ["1.0.0", "1.1.0", "2.0.0"]);
    let served = get_from(&home, "default", "big/-/big-1.0.0.tgz", &admin);
    assert!(
        served.bytes().expect("bytes").as_ref() == big.as_slice(),
        "the big tarball"
    );
    let check = home.cli_ok(&["check"]);
    assert!(
        check.contains("checked 4 versions and 4 blobs: 0 missing, 0 corrupt"),
        "{check}"
    );
}
