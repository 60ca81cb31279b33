//! The web app in a real browser (Debian's Chromium, driven by playwright-core from
//! `ui-tests/flow.mjs`), with the real package managers using what was copied from
//! the page: sign in, create a registry, add an upstream, create a token on Setup,
//! copy the npm, pnpm, Yarn Berry and Bun snippets into fresh projects and install
//! a private and a public package; revoke the token and see the install refused;
//! approve a quarantined version and install it; a hostile README runs nothing;
//! sign out. axe-core checks every screen. Screenshots go to `target/screenshots/`
//! (with `UPDATE_SCREENSHOTS=1` to `docs/screenshots/`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text, public_registry, run};
use crate::support::fake_upstream::FakeUpstream;
use crate::support::firewall::{policy_in_config, publish_with_postinstall};
use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `ui-tests/` installed (`npm ci`) into the target directory, once per process.
fn ui_tests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let source = workspace().join("ui-tests");
        let dir = workspace().join("target/ui-tests");
        fs::create_dir_all(&dir).expect("target/ui-tests");
        for file in ["package.json", "package-lock.json", "flow.mjs"] {
            fs::copy(source.join(file), dir.join(file)).unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
        if !dir.join("node_modules/playwright-core").exists() {
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(&dir);
            run(&mut npm);
        }
        dir
    })
}

/// Runs one step of `flow.mjs`; a failed check fails the test with the browser's word.
fn step(server: &TestServer, out: &Path, name: &str) {
    let mut node = Command::new("node");
    node.arg("flow.mjs")
        .arg(name)
        .current_dir(ui_tests())
        .env("GATEHOUSE_URL", &server.base)
        .env("GATEHOUSE_PASSWORD", ADMIN_PASSWORD)
        .env("UI_OUT", out)
        .env("CHROMIUM", CHROMIUM);
    let output = run(&mut node);
    assert!(
        output_text(&output).contains(&format!("step {name}: ok")),
        "{}",
        output_text(&output)
    );
}

/// Chromium, or `false` after saying why the test is skipped (never under CI).
fn chromium_or_skip(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let why = format!("{CHROMIUM} is missing: apt-get install chromium");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; under CI=true a test never skips");
    }
    eprintln!("{test}: skipped: {why}");
    false
}

/// Where each client's snippet goes, as the page named the file.
fn snippet_file(kind: ClientKind) -> (&'static str, &'static str) {
    match kind {
        ClientKind::Npm => ("npm.snippet", ".npmrc"),
        ClientKind::Pnpm => ("pnpm.snippet", ".npmrc"),
        ClientKind::YarnBerry => ("berry.snippet", ".yarnrc.yml"),
        ClientKind::Bun => ("bun.snippet", "bunfig.toml"),
        ClientKind::YarnClassic => unreachable!("not copied in this test"),
    }
}

/// A fresh project of `kind` whose only configuration is the snippet copied from the page.
fn project_from_page(kind: ClientKind, out: &Path) -> Project {
    let (copied, file) = snippet_file(kind);
    let text = fs::read_to_string(out.join(copied)).unwrap_or_else(|e| panic!("{copied}: {e}"));
    let project = Project::new(kind);
    if kind == ClientKind::YarnBerry {
        // The block as pasted, plus what only the test's CI environment needs: with CI set,
        // yarn defaults to immutable installs and refuses to create yarn.lock.
        project.write(file, &format!("{text}\nenableImmutableInstalls: false\n"));
    } else {
        project.write(file, &text);
    }
    project
}

#[test]
fn a_team_lead_sets_up_a_registry_in_the_browser_and_the_clients_use_what_was_copied() {
    let test = "web_browser";
    if !chromium_or_skip(test) {
        return;
    }
    let Some(public) = public_registry(test) else { return };
    if clients_or_skip(test).is_none() {
        return;
    }
    // `default` proxies a fake upstream whose 1.1.0 has a postinstall script, which
    // the policy quarantines; registries made in the browser proxy the public registry.
    let fake = FakeUpstream::start();
    fake.publish("native", "1.0.0");
    publish_with_postinstall(&fake, "native", "1.1.0");
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"{}\"]\n{}",
        public.url,
        fake.url,
        policy_in_config("default", "[install_scripts]\naction = \"quarantine\"\n")
    ));
    let out = tempfile::tempdir().expect("tempdir");
    let out = out.path();

    step(&server, out, "setup");
    let web = server.registry_url("web");
    let publisher = server.login("web", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "web", &publisher, "gh-private-demo", "1.0.0");
    crate::web_app::publish_hostile_readme(&server, "web", &publisher);

    let deps = [("gh-private-demo", "1.0.0"), ("is-number", "7.0.0")];
    for kind in [
        ClientKind::Npm,
        ClientKind::Pnpm,
        ClientKind::YarnBerry,
        ClientKind::Bun,
    ] {
        let project = project_from_page(kind, out);
        project.install(&deps);
        let lockfile = fs::read_to_string(project.dir.join(kind.lockfile_name())).expect("lockfile");
        for (name, version) in deps {
            assert!(
                lockfile.contains(name) && lockfile.contains(version),
                "{kind:?}: {name}@{version} not in the lockfile:\n{lockfile}"
            );
        }
        if kind != ClientKind::YarnBerry {
            // Yarn Berry's default linker (Plug'n'Play) has no node_modules.
            assert!(
                project
                    .read_installed("gh-private-demo", "package.json")
                    .contains("1.0.0")
            );
        }
    }
    let token = fs::read_to_string(out.join("token")).expect("token");
    assert_eq!(get_from(&server, "web", "gh-private-demo", &token).status(), 200);

    step(&server, out, "revoke");
    let error = expect_error(get_from(&server, "web", "gh-private-demo", &token), 401);
    assert!(error.contains("revoked"), "{error}");
    let refused = project_from_page(ClientKind::Npm, out).install_refused(&deps);
    assert!(output_text(&refused).contains("E401"), "{}", output_text(&refused));

    // The quarantined version, once asked for, waits in the queue.
    let admin = server.admin_token();
    assert_eq!(
        get_from(&server, "default", "native/-/native-1.1.0.tgz", &admin).status(),
        403
    );
    assert!(eventually(std::time::Duration::from_secs(10), || {
        server.cli_ok(&["quarantine", "list", "default"]).contains("native")
    }));
    step(&server, out, "approve");
    let project = Project::new(ClientKind::Npm);
    project.configure(&server.registry_url("default"), &admin);
    project.install(&[("native", "1.1.0")]);
    assert!(project.read_installed("native", "package.json").contains("1.1.0"));

    step(&server, out, "admin");
    let carol = server.login("web", "carol", "carol-password-1");
    publish_ok(&server, "web", &carol, "gatehouse-e2e-carols", "1.0.0");

    step(&server, out, "readme");
    assert!(web.ends_with("/r/web/"));

    // The screenshots land in target/screenshots; UPDATE_SCREENSHOTS=1 refreshes the
    // README's copies in docs/screenshots instead.
    let shots = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        workspace().join("docs/screenshots")
    } else {
        workspace().join("target/screenshots")
    };
    fs::create_dir_all(&shots).expect("screenshots folder");
    for shot in [
        "sign-in",
        "setup",
        "upstreams",
        "tokens",
        "quarantine",
        "users",
        "package",
    ] {
        let file = format!("{shot}.png");
        fs::copy(out.join("screenshots").join(&file), shots.join(&file)).expect("screenshot");
    }
}
