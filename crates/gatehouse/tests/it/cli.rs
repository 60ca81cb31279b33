//! The command line: help, errors, and admin commands against a live data dir.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::*;

fn gatehouse(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("GATEHOUSE_DATA_DIR", data_dir)
        .env_remove("GATEHOUSE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run gatehouse")
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["user", "--help"],
        vec!["user", "add", "--help"],
        vec!["user", "list", "--help"],
        vec!["registry", "--help"],
        vec!["registry", "create", "--help"],
        vec!["registry", "list", "--help"],
    ] {
        let out = gatehouse(&args, dir.path());
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "{args:?}");
    }
    assert!(
        !dir.path().join("gatehouse.db").exists(),
        "help must not touch the data dir"
    );
}

#[test]
fn bad_flags_and_unusable_data_dirs_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gatehouse(&["serve", "--no-such-flag"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));

    let out = gatehouse(&["serve", "--listen", "not-an-address"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not ADDR:PORT"));

    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let out = gatehouse(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            file.to_str().expect("utf8"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("data directory") && stderr.contains("a-file"),
        "{stderr}"
    );

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "listen = [").expect("write");
    let out = gatehouse(&["serve", "--config", config.to_str().expect("utf8")], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));

    std::fs::write(&config, "durability = \"sometimes\"\n").expect("write");
    let out = gatehouse(&["serve", "--config", config.to_str().expect("utf8")], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("durability") && stderr.contains("`full`") && stderr.contains("`process`"),
        "{stderr}"
    );
}

#[test]
fn users_and_registries_are_managed_while_the_server_runs() {
    let server = TestServer::start();
    let out = server.cli(
        &["user", "add", "dave", "--email", "dave@example.com", "--password-stdin"],
        "dave-password\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = server.login("default", "dave", "dave-password");
    assert!(token.starts_with("gth_"));

    let dup = server.cli(&["user", "add", "dave", "--password-stdin"], "another-password\n");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let short = server.cli(&["user", "add", "erin", "--password-stdin"], "short\n");
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));
    let bad_name = server.cli(&["user", "add", "../x", "--password-stdin"], "long-enough-pw\n");
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("invalid user name"));

    let list = String::from_utf8_lossy(&server.cli(&["user", "list"], "").stdout).into_owned();
    assert!(list.contains("admin\tadmin"), "{list}");
    assert!(list.contains("dave\tmember\tdave@example.com"), "{list}");
    assert!(!list.contains("erin"));

    assert!(
        server
            .cli(&["registry", "create", "team", "--public"], "")
            .status
            .success()
    );
    let dup = server.cli(&["registry", "create", "team"], "");
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = server.cli(&["registry", "create", "Team/../x"], "");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid registry name"));
    let list = String::from_utf8_lossy(&server.cli(&["registry", "list"], "").stdout).into_owned();
    assert_eq!(list, "default\tprivate\nteam\tpublic\n");

    // The new registry is served at once.
    let ping = http()
        .get(format!("{}-/ping", server.registry_url("team")))
        .send()
        .expect("ping");
    assert_eq!(ping.status(), 200);
}

#[test]
fn public_url_shapes_tarball_urls() {
    let server = TestServer::start_with_config("public_url = \"https://npm.example.com/\"\n");
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "where", "1.0.0");
    let doc = packument(&server, "default", &token, "where").expect("exists");
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"]["tarball"],
        Value::from("https://npm.example.com/r/default/where/-/where-1.0.0.tgz")
    );
}
