//! Authentication end-to-end with the real clients: `npm login` (password, token as the password,
//! and the browser flow), `pnpm login`, `yarn npm login`, bun using what a login stored,
//! `npm token create|list|revoke`, read-only and address-limited tokens refused through every
//! client, and credentials from the environment, for a whole registry or only a scope.
//!
//! Each test asserts what a person would see (exit status, key output lines), what the client
//! stored in the sandbox's user config, and that the stored credentials then work.

use std::net::TcpListener;

use serde_json::Value;

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text, run, run_answering, tarball_url};
use crate::support::{TestServer, http, publish_ok};

const PASSWORD: &str = "e2e-auth-password-1";
const LIB: &str = "auth-e2e-lib";
const VERSION: &str = "1.0.0";

/// A server with user `user`, and `auth-e2e-lib@1.0.0` (plus `extra`) published by the admin.
fn server_with(user: &str, extra: &[&str]) -> TestServer {
    let server = TestServer::start();
    server.add_user(user, PASSWORD);
    let admin = server.admin_token();
    for name in std::iter::once(&LIB).chain(extra) {
        publish_ok(&server, "default", &admin, name, VERSION);
    }
    server
}

/// `//127.0.0.1:PORT/r/default/`: the key npm-style clients file credentials under.
fn nerf_dart(registry: &str) -> &str {
    registry.strip_prefix("http:").expect("http registry URL")
}

/// The token in the user `.npmrc` line `//HOST/r/NAME/:_authToken=…` of `project`'s sandbox.
fn stored_npm_token(project: &Project, registry: &str) -> String {
    let npmrc = project.sandbox.read_home(".npmrc");
    let key = format!("{}:_authToken=", nerf_dart(registry));
    npmrc
        .lines()
        .find_map(|line| line.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no `{key}` line in the user .npmrc:\n{npmrc}"))
        .to_owned()
}

/// `GET /-/whoami` with `token`: the user name, or the status when refused.
fn whoami(server: &TestServer, token: &str) -> Result<String, u16> {
    let response = http()
        .get(format!("{}-/whoami", server.registry_url("default")))
        .bearer_auth(token)
        .send()
        .expect("whoami");
    match response.status().as_u16() {
        200 => Ok(response.json::<Value>().expect("json")["username"]
            .as_str()
            .expect("username")
            .to_owned()),
        status => Err(status),
    }
}

/// Asserts `name` was never published: its packument is 404 for the admin.
fn assert_not_published(server: &TestServer, name: &str) {
    let admin = server.admin_token();
    assert!(
        crate::support::packument(server, "default", &admin, name).is_none(),
        "{name} was published"
    );
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The line printed when `npm login` (or pnpm's, which runs npm's) succeeds.
fn logged_in(registry: &str) -> String {
    format!("Logged in on {registry}.")
}

#[test]
fn npm_login_with_a_password_or_a_token_as_the_password() {
    let Some(_) = clients_or_skip("client_auth::npm_login_with_a_password_or_a_token_as_the_password") else {
        return;
    };
    let server = server_with("carol", &[]);
    let registry = server.registry_url("default");
    // npm ≥ 9 defaults to the browser flow; legacy asks for a username and password.
    let login = ["login", "--auth-type=legacy", "--registry", registry.as_str()];

    let npm = Project::new(ClientKind::Npm);
    let out = npm.run_answering(&login, &[("Username:", "carol"), ("Password:", PASSWORD)]);
    assert!(
        output_text(&out).contains(&logged_in(&registry)),
        "{}",
        output_text(&out)
    );
    let token = stored_npm_token(&npm, &registry);
    assert!(token.starts_with("gth_"), "{token}");
    let me = npm.run(&["whoami", "--registry", &registry]);
    assert_eq!(stdout(&me).trim(), "carol");
    // The stored token also installs (the project names the registry, the user config has the token).
    npm.configure_registry(&registry);
    npm.install(&[(LIB, VERSION)]);
    assert!(npm.read_installed(LIB, "index.js").contains(LIB));

    // The Bytesafe flow: the "password" is a token from the web app (here: the admin CLI).
    let issued = server.create_token(&["--user", "carol", "--registry", "default", "--name", "laptop"]);
    let npm = Project::new(ClientKind::Npm);
    let out = npm.run_answering(&login, &[("Username:", "carol"), ("Password:", &issued)]);
    assert!(
        output_text(&out).contains(&logged_in(&registry)),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        stored_npm_token(&npm, &registry),
        issued,
        "the same token is handed back"
    );
    let me = npm.run(&["whoami", "--registry", &registry]);
    assert_eq!(stdout(&me).trim(), "carol");

    // A wrong password: npm says so (the server's `Basic` challenge) and stores nothing.
    let npm = Project::new(ClientKind::Npm);
    let mut running = npm.start(&login);
    running.expect("Username:");
    running.send_line("carol");
    running.expect("Password:");
    running.send_line("not-the-password");
    let finished = running.finish();
    let text = output_text(&finished.output);
    assert!(!finished.timed_out && !finished.output.status.success(), "{text}");
    assert!(
        text.contains("E401") && text.contains("Incorrect or missing password"),
        "{text}"
    );
    assert!(!npm.sandbox.read_home(".npmrc").contains("_authToken"));
}

#[test]
fn pnpm_login_stores_a_token_that_pnpm_and_bun_use() {
    let Some(_) = clients_or_skip("client_auth::pnpm_login_stores_a_token_that_pnpm_and_bun_use") else {
        return;
    };
    let server = server_with("dave", &[]);
    let registry = server.registry_url("default");
    // One HOME: pnpm logs in, then bun (which has no login of its own) reads the user .npmrc.
    let app = Project::new(ClientKind::Bun);
    let out = run_answering(
        &mut app.command_of(
            ClientKind::Pnpm,
            &["login", "--auth-type=legacy", "--registry", &registry],
        ),
        &[("Username:", "dave"), ("Password:", PASSWORD)],
    );
    assert!(
        output_text(&out).contains(&logged_in(&registry)),
        "{}",
        output_text(&out)
    );
    let token = stored_npm_token(&app, &registry);
    assert_eq!(whoami(&server, &token), Ok("dave".to_owned()));
    let me = run(&mut app.command_of(ClientKind::Pnpm, &["whoami", "--registry", &registry]));
    assert_eq!(stdout(&me).trim(), "dave");

    app.configure_registry(&registry); // bunfig.toml: the registry URL, no token
    let me = app.run(&["pm", "whoami"]);
    assert_eq!(stdout(&me).trim(), "dave");
    app.install(&[(LIB, VERSION)]);
    assert!(app.read_installed(LIB, "index.js").contains(LIB));
}

#[test]
fn yarn_berry_npm_login_with_a_password_or_a_token() {
    let Some(_) = clients_or_skip("client_auth::yarn_berry_npm_login_with_a_password_or_a_token") else {
        return;
    };
    let server = server_with("erin", &[]);
    let registry = server.registry_url("default");
    let issued = server.create_token(&["--user", "erin", "--registry", "default"]);
    for secret in [PASSWORD, issued.as_str()] {
        let yarn = Project::new(ClientKind::YarnBerry);
        yarn.configure_registry(&registry);
        // Against a private registry yarn skips the browser flow and asks (no TTY needed). The
        // stored per-registry entry shadows the top-level npmAlwaysAuth: without --always-auth
        // yarn sends no token for unscoped packages ("Invalid authentication (as an anonymous user)").
        let out = yarn.run_answering(
            &["npm", "login", "--always-auth"],
            &[("Username:", "erin"), ("Password:", secret)],
        );
        assert!(
            output_text(&out).contains("Successfully logged in"),
            "{}",
            output_text(&out)
        );

        // Stored per registry in the user's ~/.yarnrc.yml, under the URL without its trailing slash.
        let yarnrc = yarn.sandbox.read_home(".yarnrc.yml");
        let key = format!("\"{}\":", registry.trim_end_matches('/'));
        let entry = yarnrc
            .split_once(&key)
            .map(|(_, rest)| rest)
            .unwrap_or_else(|| panic!("no {key} entry in ~/.yarnrc.yml:\n{yarnrc}"));
        assert!(entry.contains("npmAlwaysAuth: true"), "{yarnrc}");
        let token = entry
            .split("npmAuthToken:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no npmAuthToken under {key} in ~/.yarnrc.yml:\n{yarnrc}"))
            .trim_matches('"')
            .to_owned();
        if secret == issued {
            assert_eq!(token, issued, "the same token is handed back");
        }
        assert_eq!(whoami(&server, &token), Ok("erin".to_owned()));
        let me = yarn.run(&["npm", "whoami"]);
        assert!(stdout(&me).contains("erin"), "{}", stdout(&me));
        yarn.install(&[(LIB, VERSION)]);
        assert!(yarn.read_installed(LIB, "index.js").contains(LIB));
    }
}

#[test]
fn npm_web_login_completes_when_the_browser_signs_in() {
    let Some(_) = clients_or_skip("client_auth::npm_web_login_completes_when_the_browser_signs_in") else {
        return;
    };
    let server = server_with("fay", &[]);
    let registry = server.registry_url("default");
    let npm = Project::new(ClientKind::Npm);
    // Plain `npm login`: the web flow. Without a TTY npm prints the URL instead of opening it.
    let mut login = npm.start(&["login", "--registry", &registry]);
    let login_prefix = format!("{}/-/ui/npm-login/", server.base);
    let login_url = login.wait_for_line("the login URL", |line| {
        line.trim().starts_with(&login_prefix).then(|| line.trim().to_owned())
    });
    // npm polls doneUrl, gets 202 + Retry-After, and keeps waiting for the browser.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(login.is_running(), "npm stopped waiting before the sign-in");
    crate::web_app::approve_npm_login(&server, &login_url, "fay", PASSWORD);
    let out = login.finish_ok();
    assert!(
        output_text(&out).contains(&logged_in(&registry)),
        "{}",
        output_text(&out)
    );
    let token = stored_npm_token(&npm, &registry);
    assert_eq!(whoami(&server, &token), Ok("fay".to_owned()));
    let me = npm.run(&["whoami", "--registry", &registry]);
    assert_eq!(stdout(&me).trim(), "fay");
}

/// `npm token list --parseable` rows: key, token, id, name, created, readonly, CIDR whitelist.
fn token_rows(npm: &Project) -> Vec<Vec<String>> {
    let out = npm.run(&["token", "list", "--parseable"]);
    stdout(&out)
        .lines()
        .skip(1) // header
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

fn row<'a>(rows: &'a [Vec<String>], name: &str) -> &'a [String] {
    rows.iter()
        .find(|row| row.get(3).is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("no token named {name} in {rows:?}"))
}

fn created_token(output: &std::process::Output) -> String {
    stdout(output)
        .lines()
        .find_map(|line| line.strip_prefix("Created token "))
        .unwrap_or_else(|| panic!("no `Created token` line:\n{}", output_text(output)))
        .trim()
        .to_owned()
}

#[test]
fn npm_token_create_list_and_revoke() {
    let Some(_) = clients_or_skip("client_auth::npm_token_create_list_and_revoke") else {
        return;
    };
    let server = server_with("gus", &[]);
    let registry = server.registry_url("default");
    let npm = Project::new(ClientKind::Npm);
    npm.configure(&registry, &server.login("default", "gus", PASSWORD));

    // Read-only is asked for with the granular flag: that's what npm 11 sends.
    let out = npm.run(&[
        "token",
        "create",
        "--password",
        PASSWORD,
        "--packages-and-scopes-permission",
        "read-only",
        "--name",
        "ci-read",
    ]);
    let read_only = created_token(&out);
    // Without --password npm prompts for it.
    let out = npm.run_answering(
        &[
            "token",
            "create",
            "--cidr",
            "10.0.0.0/8",
            "--cidr",
            "192.168.0.0/16",
            "--name",
            "lan",
        ],
        &[("npm password:", PASSWORD)],
    );
    let lan = created_token(&out);
    assert!(
        stdout(&out).contains("with IP whitelist: 10.0.0.0/8,192.168.0.0/16"),
        "{}",
        stdout(&out)
    );
    // npm 11.21 accepts --read-only but sends nothing for it: the server can't see it.
    let out = npm.run(&[
        "token",
        "create",
        "--password",
        PASSWORD,
        "--read-only",
        "--name",
        "flag-only",
    ]);
    let flag_only = created_token(&out);
    assert!(
        output_text(&out)
            .contains("for a read-only token run npm token create --packages-and-scopes-permission read-only"),
        "the answer says how to get a read-only token: {}",
        output_text(&out)
    );
    // Limited to one package: it publishes that one and reads nothing else.
    let out = npm.run(&[
        "token",
        "create",
        "--password",
        PASSWORD,
        "--packages",
        "gus-one",
        "--packages-and-scopes-permission",
        "read-write",
        "--name",
        "one-package",
    ]);
    let one_package = created_token(&out);
    // A limit Gatehouse can't enforce is refused, not ignored.
    let orgs = npm.run_failing(&[
        "token",
        "create",
        "--password",
        PASSWORD,
        "--orgs",
        "acme",
        "--orgs-permission",
        "read-only",
    ]);
    assert!(
        output_text(&orgs).contains("Gatehouse has no organisations"),
        "{}",
        output_text(&orgs)
    );
    let wrong = npm.run_failing(&["token", "create", "--password", "not-the-password"]);
    let text = output_text(&wrong);
    assert!(
        text.contains("E401") && text.contains("Incorrect or missing password"),
        "{text}"
    );

    let listed = stdout(&npm.run(&["token", "list"]));
    assert!(listed.contains("name ci-read"), "{listed}");
    assert!(
        listed.contains("with IP whitelist: 10.0.0.0/8,192.168.0.0/16"),
        "{listed}"
    );
    assert!(!listed.contains("……"), "npm adds its own ellipsis:\n{listed}");
    for token in [&read_only, &lan, &flag_only] {
        assert!(!listed.contains(token.as_str()), "token list never shows values");
    }
    let rows = token_rows(&npm);
    assert_eq!(row(&rows, "ci-read")[5], "true", "{rows:?}");
    assert_eq!(row(&rows, "lan")[5], "false", "{rows:?}");
    assert_eq!(row(&rows, "lan")[6], "10.0.0.0/8,192.168.0.0/16", "{rows:?}");
    assert_eq!(
        row(&rows, "flag-only")[5],
        "false",
        "npm now sends --read-only? {rows:?}"
    );

    // What the tokens do: read-only reads but can't publish; the LAN token is refused from 127.0.0.1.
    assert_eq!(whoami(&server, &read_only), Ok("gus".to_owned()));
    let publisher = Project::new(ClientKind::Npm);
    publisher.configure(&registry, &read_only);
    publisher.write_package("gus-pkg", VERSION, "module.exports = 1;\n");
    let text = output_text(&publisher.publish_refused());
    assert!(
        text.contains("E403") && text.contains("this token is read-only"),
        "{text}"
    );
    assert_not_published(&server, "gus-pkg");
    assert_eq!(whoami(&server, &lan), Err(403));
    let one = Project::new(ClientKind::Npm);
    one.configure(&registry, &one_package);
    one.write_package("gus-one", VERSION, "module.exports = 1;\n");
    one.publish();
    let other = Project::new(ClientKind::Npm);
    other.configure(&registry, &one_package);
    other.write_package("gus-other", VERSION, "module.exports = 2;\n");
    let text = output_text(&other.publish_refused());
    assert!(text.contains("limited to other packages"), "{text}");
    assert_not_published(&server, "gus-other");
    let read = http()
        .get(format!("{registry}gus-pkg"))
        .bearer_auth(&one_package)
        .send()
        .expect("get");
    assert_eq!(read.status(), 403, "a token for gus-one reads nothing else");

    let id = row(&rows, "ci-read")[2].clone();
    let out = npm.run(&["token", "revoke", &id]);
    assert!(stdout(&out).contains("Removed 1 token"), "{}", output_text(&out));
    assert_eq!(whoami(&server, &read_only), Err(401));
    let rows = token_rows(&npm);
    assert!(rows.iter().all(|row| row[3] != "ci-read"), "{rows:?}");
    let gone = npm.run_failing(&["token", "revoke", &id]);
    assert!(
        output_text(&gone).contains("Unknown token id"),
        "{}",
        output_text(&gone)
    );
}

#[test]
fn a_read_only_token_cannot_publish_with_any_client() {
    let Some(_) = clients_or_skip("client_auth::a_read_only_token_cannot_publish_with_any_client") else {
        return;
    };
    let server = server_with("hal", &[]);
    let registry = server.registry_url("default");
    let read_only = server.create_token(&["--user", "hal", "--registry", "default", "--read-only"]);
    for kind in ClientKind::ALL {
        let name = format!("ro-{}-pkg", kind.slug());
        let project = Project::new(kind);
        project.configure(&registry, &read_only);
        project.write_package(&name, VERSION, "module.exports = 1;\n");
        let text = output_text(&project.publish_refused());
        assert!(
            text.contains("this token is read-only"),
            "{kind:?} doesn't show the server's message:\n{text}"
        );
        // yarn 1 shows the message only.
        if kind != ClientKind::YarnClassic {
            assert!(text.contains("403"), "{kind:?} doesn't show the status:\n{text}");
        }
        assert_not_published(&server, &name);
    }
}

#[test]
fn an_address_limited_token_is_refused_for_installs() {
    let Some(_) = clients_or_skip("client_auth::an_address_limited_token_is_refused_for_installs") else {
        return;
    };
    let server = server_with("ida", &[]);
    let registry = server.registry_url("default");
    let lan = server.create_token(&["--user", "ida", "--registry", "default", "--cidr", "10.0.0.0/8"]);
    for kind in ClientKind::ALL {
        let project = Project::new(kind);
        project.configure(&registry, &lan);
        let text = output_text(&project.install_refused(&[(LIB, VERSION)]));
        // npm shows status and message, yarn 1 only the message, the others only the status.
        if kind != ClientKind::YarnClassic {
            assert!(text.contains("403"), "{kind:?} doesn't show the status:\n{text}");
        }
        if matches!(kind, ClientKind::Npm | ClientKind::YarnClassic) {
            assert!(
                text.contains("may not be used from 127.0.0.1"),
                "{kind:?} doesn't show the server's message:\n{text}"
            );
        }
        assert!(!project.dir.join("node_modules").join(LIB).exists(), "{kind:?}");
    }
}

#[test]
fn tokens_from_the_environment_in_npmrc_and_yarnrc() {
    let Some(_) = clients_or_skip("client_auth::tokens_from_the_environment_in_npmrc_and_yarnrc") else {
        return;
    };
    let server = server_with("jo", &[]);
    let registry = server.registry_url("default");
    let token = server.login("default", "jo", PASSWORD);
    let auth_line = format!("{}:_authToken=${{NPM_TOKEN}}", nerf_dart(&registry));
    let npmrc = format!("registry={registry}\n{auth_line}\nalways-auth=true\n");

    for kind in [ClientKind::Npm, ClientKind::YarnClassic, ClientKind::Bun] {
        let project = Project::new(kind).with_env("NPM_TOKEN", &token);
        project.write(".npmrc", &npmrc);
        project.install(&[(LIB, VERSION)]);
        assert!(project.read_installed(LIB, "index.js").contains(LIB), "{kind:?}");
        let whoami = match kind {
            ClientKind::Npm => Some(project.run(&["whoami"])),
            ClientKind::Bun => Some(project.run(&["pm", "whoami"])),
            _ => None,
        };
        if let Some(me) = whoami {
            assert_eq!(stdout(&me).trim(), "jo", "{kind:?}");
        }
    }

    // pnpm 10 doesn't expand variables in credentials from a project .npmrc (it could send the
    // secret to a registry the repository names): it says so, and the server answers 401.
    let pnpm = Project::new(ClientKind::Pnpm).with_env("NPM_TOKEN", &token);
    pnpm.write(".npmrc", &npmrc);
    let text = output_text(&pnpm.install_refused(&[(LIB, VERSION)]));
    assert!(text.contains("Ignored project-level auth setting"), "{text}");
    assert!(text.contains("401"), "{text}");
    // The same line in the user's ~/.npmrc is expanded.
    pnpm.write(".npmrc", &format!("registry={registry}\n"));
    pnpm.sandbox.write_home(".npmrc", &format!("{auth_line}\n"));
    pnpm.install(&[(LIB, VERSION)]);
    assert!(pnpm.read_installed(LIB, "index.js").contains(LIB));

    let yarn = Project::new(ClientKind::YarnBerry).with_env("NPM_TOKEN", &token);
    yarn.write_yarnrc(&[
        format!("npmRegistryServer: \"{registry}\""),
        "npmAuthToken: \"${NPM_TOKEN}\"".to_owned(),
        "npmAlwaysAuth: true".to_owned(),
    ]);
    yarn.install(&[(LIB, VERSION)]);
    assert!(yarn.read_installed(LIB, "index.js").contains(LIB));
    let me = yarn.run(&["npm", "whoami"]);
    assert!(stdout(&me).contains("jo"), "{}", stdout(&me));
}

/// `http://127.0.0.1:PORT/` where nothing listens: a default registry no install may need.
fn dead_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}

#[test]
fn only_the_scope_comes_from_gatehouse() {
    let Some(_) = clients_or_skip("client_auth::only_the_scope_comes_from_gatehouse") else {
        return;
    };
    const SCOPED: &str = "@acme/widget";
    let server = server_with("kim", &[SCOPED]);
    let registry = server.registry_url("default");
    let token = server.login("default", "kim", PASSWORD);
    let elsewhere = dead_registry();
    let auth_line = format!("{}:_authToken=${{NPM_TOKEN}}", nerf_dart(&registry));
    let scope_lines = format!("registry={elsewhere}\n@acme:registry={registry}\n");

    for kind in ClientKind::ALL {
        let project = Project::new(kind).with_env("NPM_TOKEN", &token);
        match kind {
            // pnpm expands ${NPM_TOKEN} only in the user config (see the test above).
            ClientKind::Pnpm => {
                project.write(".npmrc", &scope_lines);
                project.sandbox.write_home(".npmrc", &format!("{auth_line}\n"));
            }
            // A scope has its own release-age gate (default: 1 day); the top-level 0 doesn't reach it.
            ClientKind::YarnBerry => project.write_yarnrc(&[
                format!("npmRegistryServer: \"{elsewhere}\""),
                format!(
                    "npmScopes:\n  acme:\n    npmRegistryServer: \"{registry}\"\n    \
                     npmAuthToken: \"${{NPM_TOKEN}}\"\n    npmMinimalAgeGate: 0"
                ),
            ]),
            _ => project.write(".npmrc", &format!("{scope_lines}{auth_line}\n")),
        }
        project.install(&[(SCOPED, VERSION)]);
        assert!(project.read_installed(SCOPED, "index.js").contains(SCOPED), "{kind:?}");
        let locked = project.lockfile().get(SCOPED).clone();
        match kind {
            ClientKind::Npm | ClientKind::YarnClassic | ClientKind::Bun => assert_eq!(
                locked.resolved.as_deref(),
                Some(tarball_url(&registry, SCOPED, VERSION).as_str()),
                "{kind:?}"
            ),
            _ => assert_eq!(locked.version, VERSION, "{kind:?}"),
        }
    }
}

#[test]
fn npm_profile_set_password_changes_it() {
    let Some(_) = clients_or_skip("client_auth::npm_profile_set_password_changes_it") else {
        return;
    };
    let server = server_with("ivy", &[]);
    let registry = server.registry_url("default");
    let npm = Project::new(ClientKind::Npm);
    npm.configure(&registry, &server.login("default", "ivy", PASSWORD));
    let profile = stdout(&npm.run(&["profile", "get", "--json"]));
    assert!(profile.contains("\"name\": \"ivy\""), "{profile}");
    npm.run_answering(
        &["profile", "set", "password"],
        &[
            ("Current password:", PASSWORD),
            ("New password:", "ivy-new-password-1"),
            ("Again:", "ivy-new-password-1"),
        ],
    );
    server.login("default", "ivy", "ivy-new-password-1");
}
