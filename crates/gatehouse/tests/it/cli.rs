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

/// `gatehouse ARGS` run from `cwd` with no data dir, config or admin password set.
fn gatehouse_in(cwd: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("GATEHOUSE_DATA_DIR")
        .env_remove("GATEHOUSE_CONFIG")
        .env_remove("GATEHOUSE_ADMIN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatehouse");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("output")
}

#[test]
fn admin_commands_never_create_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, stdin) in [
        (vec!["user", "list"], ""),
        (vec!["user", "add", "dave", "--password-stdin"], "dave-password-1\n"),
        (vec!["registry", "list"], ""),
        (vec!["token", "list"], ""),
        (vec!["push", "default", "x@1.0.0", "--to", "npmjs"], ""),
    ] {
        let out = gatehouse_in(dir.path(), &args, stdin);
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("no Gatehouse database at gatehouse-data/gatehouse.db")
                && stderr.contains("--data-dir")
                && stderr.contains("GATEHOUSE_DATA_DIR"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(!dir.path().join("gatehouse-data").exists(), "{args:?} created a store");
    }
}

#[test]
fn serve_points_from_port_to_listen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = gatehouse_in(dir.path(), &["serve", "--port", "8080"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("use --listen ADDR:PORT, e.g. --listen 127.0.0.1:8080"),
        "{stderr}"
    );
    assert!(!dir.path().join("gatehouse-data").exists());
}

/// Starts `gatehouse serve` in `cwd` with `env`, waits for `line` in its log, kills it
/// and returns the log.
fn serve_until(cwd: &std::path::Path, env: &[(&str, &str)], line: &str) -> String {
    use std::io::BufRead as _;
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env_remove("GATEHOUSE_DATA_DIR")
        .env_remove("GATEHOUSE_CONFIG")
        .env_remove("GATEHOUSE_ADMIN_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("serve");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !log.contains(line) && std::time::Instant::now() < deadline {
        if let Ok(next) = lines.recv_timeout(std::time::Duration::from_millis(200)) {
            log.push_str(&next);
            log.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn first_start_says_where_its_data_is_and_who_administers_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = serve_until(dir.path(), &[], "no administrator exists");
    assert!(
        log.contains("created the data directory") && log.contains("gatehouse-data"),
        "{log}"
    );
    assert!(
        log.contains("gatehouse user add NAME --admin --password-stdin"),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "no colour codes outside a terminal: {log:?}");

    let log = serve_until(
        dir.path(),
        &[("GATEHOUSE_ADMIN_PASSWORD", "first-password")],
        "created user admin",
    );
    assert!(log.contains("created user admin"), "{log}");
    let log = serve_until(
        dir.path(),
        &[("GATEHOUSE_ADMIN_PASSWORD", "second-password")],
        "GATEHOUSE_ADMIN_PASSWORD ignored",
    );
    assert!(log.contains("gatehouse user passwd admin"), "{log}");
    assert!(!log.contains("created the data directory"), "{log}");
}

#[test]
fn a_config_that_fails_validation_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gatehouse.toml");
    std::fs::write(
        &config,
        "[registries.team]\nupstreams = [\"registry:team-base\"]\n[registries.x]\nupstreams = [\"npmjs\", \"ftp://nope\"]\n",
    )
    .expect("config");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env_remove("GATEHOUSE_DATA_DIR")
        .env_remove("GATEHOUSE_ADMIN_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("registry team") && stderr.contains("no registry named \"team-base\""),
        "{stderr}"
    );
    let out = gatehouse(&["registry", "list"], &dir.path().join("gatehouse-data"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "no registry was created");
}

#[test]
fn passwords_are_changed_from_the_cli() {
    let server = TestServer::start();
    server.add_user("erin", "erin-password-1");
    server.login("default", "erin", "erin-password-1");
    let out = server.cli(&["user", "passwd", "erin", "--password-stdin"], "erin-password-2\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let old = http()
        .put(format!(
            "{}-/user/org.couchdb.user:erin",
            server.registry_url("default")
        ))
        .json(&serde_json::json!({ "name": "erin", "password": "erin-password-1" }))
        .send()
        .expect("login");
    assert_eq!(
        expect_error(old, 401),
        "incorrect username or password (accounts are created by an administrator)"
    );
    server.login("default", "erin", "erin-password-2");
    let out = server.cli(&["user", "passwd", "nobody", "--password-stdin"], "whatever-password\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named \"nobody\""));

    // A signed-in user changes their own, as `npm profile set password` does.
    let token = server.login("default", "erin", "erin-password-2");
    let change = |old: &str, new: &str| {
        http()
            .post(format!("{}-/npm/v1/user", server.registry_url("default")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "password": { "old": old, "new": new } }))
            .send()
            .expect("post")
    };
    assert_eq!(
        expect_error(change("not-it", "erin-password-3"), 401),
        "the current password is not right"
    );
    assert!(expect_error(change("erin-password-2", "short"), 400).contains("at least 8"));
    let changed: Value = change("erin-password-2", "erin-password-3").json().expect("profile");
    assert_eq!(changed["name"], "erin");
    server.login("default", "erin", "erin-password-3");
    let email = http()
        .post(format!("{}-/npm/v1/user", server.registry_url("default")))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "email": "erin@example.com" }))
        .send()
        .expect("post");
    assert!(expect_error(email, 400).contains("only the password can be changed here"));
}

#[test]
fn the_front_page_and_the_host_root_name_no_private_registry() {
    let server = TestServer::start_with_config("[registries.open]\npublic = true\n[registries.secret-team]\n");
    let page = http()
        .get(format!("{}/-/ui/", server.base))
        .send()
        .expect("page")
        .text()
        .expect("text");
    assert!(page.contains("/r/open/"), "{page}");
    assert!(
        !page.contains("secret-team") && !page.contains("/r/default/\n"),
        "{page}"
    );
    // A client configured with the host instead of a registry URL is told which URL to use.
    let response = http().get(format!("{}/lodash", server.base)).send().expect("get");
    let error = expect_error(response, 404);
    assert!(error.contains(&format!("{}/r/NAME/", server.base)), "{error}");
}

fn stdout_of(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn registries_are_listed_switched_and_deleted_and_the_audit_log_filtered() {
    let server = TestServer::start();
    let admin = server.create_token(&["--user", "admin"]);
    stdout_of(server.cli(&["registry", "create", "base"], ""));
    stdout_of(server.cli(&["registry", "create", "team", "--upstream", "registry:base"], ""));
    publish_ok(&server, "base", &admin, "base-lib", "1.0.0");
    publish_ok(&server, "base", &admin, "base-lib", "1.1.0");
    // Pulled through team from base: team holds it as pulled.
    let tarball = get_from(&server, "team", "base-lib/-/base-lib-1.1.0.tgz", &admin);
    assert_eq!(tarball.status(), 200);
    let listed = stdout_of(server.cli(&["package", "list", "base"], ""));
    assert_eq!(
        listed,
        "NAME\tLATEST\tVERSIONS\tORIGIN\tINTERNAL\nbase-lib\t1.1.0\t2\tpublished\tinternal\n"
    );
    assert!(eventually(std::time::Duration::from_secs(5), || {
        stdout_of(server.cli(&["package", "list", "team"], "")).contains("base-lib\t-\t1\tpulled\t-")
    }));

    // Visibility, from the CLI and the API.
    let anonymous = || {
        http()
            .get(format!("{}base-lib", server.registry_url("base")))
            .send()
            .expect("get")
            .status()
    };
    assert_eq!(anonymous(), 401);
    stdout_of(server.cli(&["registry", "visibility", "base", "public"], ""));
    assert!(eventually(std::time::Duration::from_secs(5), || anonymous() == 200));
    let private = http()
        .patch(format!("{}/-/api/v1/registries/base", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"public": false}))
        .send()
        .expect("patch");
    assert_eq!(private.status(), 200);
    assert_eq!(anonymous(), 401, "in-process changes apply at once");

    // Deleting a registry another one pulls from is refused, with nothing changed.
    let out = server.cli(&["registry", "delete", "base", "--yes"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("registry base is an upstream of team"), "{stderr}");
    assert!(stdout_of(server.cli(&["registry", "list"], "")).contains("base\t"));
    let out = server.cli(&["registry", "delete", "team"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("run again with --yes"));
    let deleted = http()
        .delete(format!("{}/-/api/v1/registries/team", server.base))
        .bearer_auth(&admin)
        .send()
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    stdout_of(server.cli(&["registry", "delete", "base", "--yes"], ""));
    let registries = stdout_of(server.cli(&["registry", "list"], ""));
    assert_eq!(registries, "default\tprivate\n");
    let gone = get_from(&server, "base", "base-lib", &admin);
    assert_eq!(expect_error(gone, 404), "no registry named \"base\"");

    // The audit log, filtered.
    let publishes = stdout_of(server.cli(&["audit", "--action", "version.publish", "--registry", "base"], ""));
    assert_eq!(publishes.lines().count(), 3, "{publishes}");
    let by_cli = stdout_of(server.cli(&["audit", "--user", "cli", "--since", "1h"], ""));
    assert!(
        by_cli.contains("registry.delete") && !by_cli.contains("version.publish"),
        "{by_cli}"
    );
    let none = stdout_of(server.cli(&["audit", "--until", "2000-01-01T00:00:00Z"], ""));
    assert_eq!(none.lines().count(), 1, "only the header: {none}");
    let out = server.cli(&["audit", "--action", "version.publsh"], "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown action \"version.publsh\"; actions are"));
    let api: Value = http()
        .get(format!(
            "{}/-/api/v1/audit?action=registry.delete&limit=10",
            server.base
        ))
        .bearer_auth(&admin)
        .send()
        .expect("get")
        .json()
        .expect("json");
    let actors: Vec<&str> = api["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(actors, ["cli", "admin"]);
    let bad = http()
        .get(format!("{}/-/api/v1/audit?since=yesterday", server.base))
        .bearer_auth(&admin)
        .send()
        .expect("get");
    assert!(expect_error(bad, 400).contains("not an RFC 3339 time"));
}

#[test]
fn registries_are_renamed_and_cloned() {
    let server = TestServer::start();
    let admin = server.create_token(&["--user", "admin"]);
    stdout_of(server.cli(&["registry", "create", "old"], ""));
    stdout_of(server.cli(&["registry", "create", "down", "--upstream", "registry:old"], ""));
    let limited = server.create_token(&["--user", "admin", "--registry", "old"]);
    publish_ok(&server, "old", &admin, "moving", "1.0.0");

    stdout_of(server.cli(&["registry", "rename", "old", "new"], ""));
    // The CLI is another process: the server follows its change log.
    assert!(eventually(std::time::Duration::from_secs(5), || {
        get_from(&server, "new", "moving", &limited).status() == 200
            && get_from(&server, "old", "moving", &admin).status() == 404
    }));
    assert_eq!(
        expect_error(get_from(&server, "old", "moving", &admin), 404),
        "no registry named \"old\""
    );
    assert_eq!(
        stdout_of(server.cli(&["registry", "upstream", "list", "down"], "")),
        "registry:new\tauth:none\tpublic\n"
    );
    assert_eq!(
        get_from(&server, "down", "moving/-/moving-1.0.0.tgz", &admin).status(),
        200
    );
    let taken = server.cli(&["registry", "rename", "new", "down"], "");
    assert!(String::from_utf8_lossy(&taken.stderr).contains("a registry named \"down\" already exists"));

    let cloned = http()
        .post(format!("{}/-/api/v1/registries/new/clone", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "copy"}))
        .send()
        .expect("clone");
    assert_eq!(cloned.status(), 201);
    let body: Value = cloned.json().expect("json");
    assert_eq!(body["url"], server.registry_url("copy"));
    let doc = packument(&server, "copy", &admin, "moving").expect("cloned package");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    let original = get_from(&server, "new", "moving/-/moving-1.0.0.tgz", &admin)
        .bytes()
        .expect("bytes");
    let copied = get_from(&server, "copy", "moving/-/moving-1.0.0.tgz", &admin)
        .bytes()
        .expect("bytes");
    assert_eq!(original, copied, "the same tarball, shared");
    // The copy is on its own from now on.
    publish_ok(&server, "copy", &admin, "moving", "1.1.0");
    let original_doc = packument(&server, "new", &admin, "moving").expect("original");
    assert!(original_doc["versions"].get("1.1.0").is_none());
    let renamed = http()
        .patch(format!("{}/-/api/v1/registries/copy", server.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "Not Valid"}))
        .send()
        .expect("patch");
    assert!(expect_error(renamed, 400).contains("invalid registry name"));
}

/// Several processes starting at the same moment on a fresh embedded data dir (a
/// server and its restarts, admin commands from a deploy script): all come up, with
/// one `default` registry and one admin, and the commands work.
#[test]
fn processes_starting_at_once_on_a_fresh_data_dir_all_come_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let starters: Vec<_> = (0..3)
        .map(|_| {
            let data = data.clone();
            std::thread::spawn(move || TestServer::start_on(&data))
        })
        .collect();
    let servers: Vec<TestServer> = starters.into_iter().map(|s| s.join().expect("started")).collect();
    let commands: Vec<_> = (0..3)
        .map(|_| {
            let data = data.clone();
            std::thread::spawn(move || run_cli(&data, &["registry", "list"], ""))
        })
        .collect();
    for command in commands {
        let out = command.join().expect("command");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for server in &servers {
        let ready = http().get(format!("{}/-/ready", server.base)).send().expect("ready");
        assert_eq!(ready.status(), 200, "{}", server.log());
        let me = get_from(server, "default", "-/whoami", &server.admin_token());
        assert_eq!(me.status(), 200);
    }
    let users = servers[0].cli_ok(&["user", "list"]);
    assert_eq!(users.lines().filter(|l| l.starts_with("admin")).count(), 1, "{users}");
    let registries = servers[0].cli_ok(&["registry", "list"]);
    assert_eq!(
        registries.lines().filter(|l| l.starts_with("default")).count(),
        1,
        "{registries}"
    );
}
