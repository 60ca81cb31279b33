//! End-to-end through a registry that proxies the npm registry: each client installs a few real
//! public packages (one scoped, one with a dependency tree) through Gatehouse and writes its
//! lockfile; then Gatehouse restarts on the same data dir with its upstream unreachable, and the
//! client installs again from the lockfile alone (its CI mode), with a fresh cache. Also, for
//! npm: a `package-lock.json` made against the public registry installs through Gatehouse, and
//! tarball URLs of the public registry are fetched from the host root (`replace-registry-host`,
//! see [`npm_lockfiles_and_tarball_urls_of_the_public_registry`]).
//!
//! The tests that need the npm registry (the one `npm config get registry` names) print
//! "skipped: …" and pass when it is unreachable or `GATEHOUSE_OFFLINE=1`; the tests of
//! root-level tarballs at the HTTP level need nothing but 127.0.0.1.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

use crate::support::clients::{ClientKind, Project, clients, public_registry, run, tarball_url};
use crate::support::*;

/// The direct dependencies, pinned: small, stable packages the npm registry has had for years.
const DEPS: [(&str, &str); 3] = [("is-number", "7.0.0"), ("chalk", "4.1.2"), ("@types/ms", "2.1.0")];
/// chalk@4's dependency tree, which every install must bring along.
const TRANSITIVE: [&str; 5] = [
    "ansi-styles",
    "supports-color",
    "has-flag",
    "color-convert",
    "color-name",
];
/// Where nothing listens: the npm registry, once it is "gone".
const DEAD_UPSTREAM: &str = "http://127.0.0.1:1/";

/// `default` proxies `npmjs_url`.
fn proxy_config(npmjs_url: &str) -> String {
    format!("[upstream]\nnpmjs_url = \"{npmjs_url}\"\n\n[registries.default]\nupstreams = [\"npmjs\"]\n")
}

#[test]
fn npm() {
    install_through_proxy_then_without_upstream(ClientKind::Npm);
}

#[test]
fn pnpm() {
    install_through_proxy_then_without_upstream(ClientKind::Pnpm);
}

#[test]
fn yarn_classic() {
    install_through_proxy_then_without_upstream(ClientKind::YarnClassic);
}

#[test]
fn yarn_berry() {
    install_through_proxy_then_without_upstream(ClientKind::YarnBerry);
}

#[test]
fn bun() {
    install_through_proxy_then_without_upstream(ClientKind::Bun);
}

fn install_through_proxy_then_without_upstream(kind: ClientKind) {
    let slug = kind.slug();
    let Some(public) = public_registry(&format!("client_proxy::{}", slug.replace('-', "_"))) else {
        return;
    };
    let clients = clients(); // the one-time install happens here, outside the timings below
    let started = Instant::now();
    let mut server = TestServer::start_with_config(&proxy_config(&public.url));
    let token = server.admin_token();
    let registry = server.registry_url("default");

    // Online: resolve through Gatehouse, which pulls every tarball from the npm registry.
    let step = Instant::now();
    let online = Project::new(kind);
    online.configure(&registry, &token);
    online.install(&DEPS);
    assert_installed(&online);
    for (name, version) in DEPS {
        online.assert_locked_to_registry(&registry, name, version);
    }
    let lockfile = online.lockfile();
    for name in TRANSITIVE {
        lockfile.get(name);
    }
    let pulled = pulled_into(&server, "default");
    for entry in &lockfile.packages {
        assert!(
            pulled.contains(&(entry.name.clone(), entry.version.clone())),
            "{slug}: {}@{} was not pulled through Gatehouse: {pulled:?}",
            entry.name,
            entry.version
        );
    }
    eprintln!(
        "e2e proxy {slug}: installed through the proxy in {:.1?}",
        step.elapsed()
    );

    // The upstream is gone: the same lockfile installs from what Gatehouse stored.
    server.restart_with_config(&proxy_config(DEAD_UPSTREAM));
    assert_eq!(server.registry_url("default"), registry, "restarted on another port");
    let error = expect_error(
        http()
            .get(format!("{registry}left-pad"))
            .bearer_auth(&token)
            .send()
            .expect("get"),
        502,
    );
    assert!(error.contains("unreachable"), "the upstream is not gone: {error}");
    let step = Instant::now();
    let offline = Project::new(kind);
    offline.configure(&registry, &token);
    offline.copy_from(&online, &["package.json", kind.lockfile_name()]);
    offline.install_frozen();
    assert_installed(&offline);
    assert_eq!(
        offline.lockfile().text,
        lockfile.text,
        "{slug}: the frozen install changed the lockfile"
    );
    eprintln!(
        "e2e proxy {slug}: installed from the lockfile with the upstream gone in {:.1?}",
        step.elapsed()
    );
    eprintln!(
        "e2e proxy {slug} {}: passed in {:.1?}",
        clients.version(kind),
        started.elapsed()
    );
}

/// Lockfiles made against the public registry keep working with npm pointed at Gatehouse, and
/// so do tarball URLs of the public registry. npm (8.19 to 11.21, checked) moves a locked
/// public URL onto the configured registry *with* its path (`/r/team/…`). But a public tarball
/// URL that npm resolves itself (a dependency spec like `https://registry.npmjs.org/x/-/x-1.0.0.tgz`)
/// goes through pacote's `replace-registry-host`, which swaps the host and drops the registry's
/// path: npm asks for `/{name}/-/{file}.tgz` and `/@scope/{name}/-/{file}.tgz` at the root, with
/// the registry's token, and records those root URLs in package-lock.json. Gatehouse serves
/// them from the token's registry (`team` here; the root registry `default` has no upstream),
/// also once the upstream is gone.
#[test]
fn npm_lockfiles_and_tarball_urls_of_the_public_registry() {
    let Some(public) = public_registry("client_proxy::npm_lockfiles_and_tarball_urls_of_the_public_registry") else {
        return;
    };
    let _ = clients();
    let started = Instant::now();
    let url_of = |name: &str, version: &str| tarball_url(&public.url, name, version);
    let is_number_url = url_of("is-number", "7.0.0");
    let types_ms_url = url_of("@types/ms", "2.1.0");
    let deps = [
        ("is-number", is_number_url.as_str()),
        ("chalk", "4.1.2"),
        ("@types/ms", types_ms_url.as_str()),
    ];

    // A project that predates Gatehouse: its lockfile was made against the npm registry.
    let original = Project::new(ClientKind::Npm);
    original.write(
        ".npmrc",
        &format!("registry={}\nomit-lockfile-registry-resolved=false\n", public.url),
    );
    original.write_manifest(&deps);
    let mut lock_only = original.command(&["install", "--package-lock-only"]);
    public.allow(&mut lock_only);
    run(&mut lock_only);
    let public_lock = original.lockfile();
    for name in DEPS.iter().map(|(name, _)| *name).chain(TRANSITIVE) {
        let resolved = public_lock.get(name).resolved.clone().unwrap_or_default();
        assert!(
            resolved.starts_with(&public.url),
            "{name} is not locked to {}: {resolved:?}\n{}",
            public.url,
            public_lock.text
        );
    }

    let mut server = TestServer::start_with_config(&team_proxy_config(&public.url));
    let token = server.login("team", "admin", ADMIN_PASSWORD);
    let registry = server.registry_url("team");
    let npm_project = || {
        let project = Project::new(ClientKind::Npm);
        project.configure(&registry, &token);
        if !public.is_npmjs() {
            // npm only moves URLs of registry.npmjs.org by default; a mirror is named explicitly.
            let npmrc = std::fs::read_to_string(project.dir.join(".npmrc")).expect(".npmrc");
            project.write(".npmrc", &format!("{npmrc}replace-registry-host={}\n", public.host));
        }
        project
    };

    // `npm ci` of the public lockfile: every tarball comes through Gatehouse.
    let step = Instant::now();
    let ci = npm_project();
    ci.copy_from(&original, &["package.json", "package-lock.json"]);
    let fetched = npm_tarball_fetches(&ci.run(&["ci", "--loglevel=http"]));
    assert_installed(&ci);
    assert_eq!(fetched.len(), public_lock.packages.len(), "{fetched:?}");
    for (status, url) in &fetched {
        assert!(
            *status == 200 && url.starts_with(&server.base),
            "npm ci fetched {url} ({status}), not from Gatehouse"
        );
    }
    let pulled = pulled_into(&server, "team");
    for entry in &public_lock.packages {
        assert!(
            pulled.contains(&(entry.name.clone(), entry.version.clone())),
            "{}@{} was not pulled into team: {pulled:?}",
            entry.name,
            entry.version
        );
    }
    assert!(pulled_into(&server, "default").is_empty());
    eprintln!("e2e proxy npm ci of a public lockfile: {:.1?}", step.elapsed());

    // Resolving the public tarball URLs through Gatehouse: npm asks the host root and locks that.
    let step = Instant::now();
    let resolving = npm_project();
    resolving.install(&deps);
    assert_installed(&resolving);
    let root_lock = resolving.lockfile();
    let root_urls = [
        ("is-number", format!("{}/is-number/-/is-number-7.0.0.tgz", server.base)),
        ("@types/ms", format!("{}/@types/ms/-/ms-2.1.0.tgz", server.base)),
    ];
    for (name, url) in &root_urls {
        assert_eq!(
            root_lock.get(name).resolved.as_deref(),
            Some(url.as_str()),
            "npm did not lock {name} to the host root\n{}",
            root_lock.text
        );
    }
    eprintln!("e2e proxy npm install of public tarball URLs: {:.1?}", step.elapsed());

    // With the upstream gone, `npm ci` of that lockfile asks the root again and gets the
    // copies stored in `team`.
    server.restart_with_config(&team_proxy_config(DEAD_UPSTREAM));
    let step = Instant::now();
    let offline = npm_project();
    offline.copy_from(&resolving, &["package.json", "package-lock.json"]);
    let fetched = npm_tarball_fetches(&offline.run(&["ci", "--loglevel=http"]));
    assert_installed(&offline);
    for (_, url) in &root_urls {
        assert!(
            fetched.contains(&(200, url.clone())),
            "npm ci did not fetch {url} at the root: {fetched:?}"
        );
    }
    eprintln!("e2e proxy npm ci with root URLs, upstream gone: {:.1?}", step.elapsed());

    // The same requests at the HTTP level: the team token gets the locked bytes from `team`;
    // a token of `default` asks `default`, which has none; no credentials are refused.
    let default_token = server.admin_token();
    for (name, url) in &root_urls {
        let response = http().get(url).bearer_auth(&token).send().expect("root tarball");
        assert_eq!(response.status(), 200, "GET {url} with the team token");
        let bytes = response.bytes().expect("bytes");
        assert_eq!(
            Some(sri_sha512(&bytes)),
            root_lock.get(name).integrity,
            "GET {url}: not the locked bytes"
        );
        let response = http().get(url).bearer_auth(&default_token).send().expect("get");
        assert_eq!(response.status(), 404, "GET {url} with a token of default");
        let response = http().get(url).send().expect("get");
        assert_eq!(response.status(), 401, "GET {url} without credentials");
    }
    eprintln!(
        "e2e proxy npm with public lockfiles and tarball URLs: passed in {:.1?}",
        started.elapsed()
    );
}

/// `team` proxies `npmjs_url`; `default`, the root registry, has no upstream.
fn team_proxy_config(npmjs_url: &str) -> String {
    format!("[upstream]\nnpmjs_url = \"{npmjs_url}\"\n\n[registries.team]\nupstreams = [\"npmjs\"]\n")
}

/// `(status, URL)` of each tarball npm fetched over the network, from its `--loglevel=http`
/// lines (`npm http fetch GET 200 http://… 12ms (cache miss)`).
fn npm_tarball_fetches(output: &Output) -> Vec<(u16, String)> {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .filter_map(|line| {
            let rest = line.split("http fetch GET ").nth(1)?;
            let mut words = rest.split_whitespace();
            let status = words.next()?.parse().ok()?;
            let url = words.next()?;
            url.ends_with(".tgz").then(|| (status, url.to_owned()))
        })
        .collect()
}

/// Root-level tarballs at the HTTP level, without any upstream: served from the registry a
/// token belongs to, else from the root registry, with the same access checks.
#[test]
fn root_level_tarballs_come_from_the_callers_registry() {
    let mut server = TestServer::start_with_config("[registries.team]\n");
    let admin = server.admin_token();
    let team = server.login("team", "admin", ADMIN_PASSWORD);
    publish_ok(&server, "default", &admin, "only-in-default", "1.0.0");
    publish_ok(&server, "team", &team, "only-in-team", "1.0.0");
    publish_ok(&server, "team", &team, "@corp/lib", "1.0.0");
    let get = |server: &TestServer, path: &str, token: Option<&str>| {
        let request = http().get(format!("{}{path}", server.base));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().expect("get")
    };

    for (path, name, version) in [
        ("/only-in-team/-/only-in-team-1.0.0.tgz", "only-in-team", "1.0.0"),
        ("/@corp/lib/-/lib-1.0.0.tgz", "@corp/lib", "1.0.0"),
    ] {
        let response = get(&server, path, Some(&team));
        assert_eq!(response.status(), 200, "{path} with the team token");
        assert_eq!(
            response.bytes().expect("bytes").as_ref(),
            package_tarball(name, version).as_slice(),
            "{path}"
        );
        assert_eq!(
            get(&server, path, Some(&admin)).status(),
            404,
            "{path} is not in default"
        );
        assert_eq!(get(&server, path, None).status(), 401, "{path} anonymously");
    }
    let path = "/only-in-default/-/only-in-default-1.0.0.tgz";
    assert_eq!(get(&server, path, Some(&admin)).status(), 200);
    assert_eq!(get(&server, path, Some(&team)).status(), 404);
    assert_eq!(get(&server, path, None).status(), 401);
    let head = http()
        .head(format!("{}{path}", server.base))
        .bearer_auth(&admin)
        .send()
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        get(&server, path, Some("not-a-real-token")).status(),
        401,
        "a bad token is refused, not treated as anonymous"
    );
    // Only tarballs live at the root.
    for other in ["/only-in-default", "/only-in-default/1.0.0", "/-/whoami"] {
        assert_eq!(get(&server, other, Some(&admin)).status(), 404, "{other}");
    }

    // A public root registry serves anonymous callers; a token still picks its own registry.
    server.restart_with_config("root_registry = \"team\"\n[registries.team]\npublic = true\n");
    assert_eq!(
        get(&server, "/only-in-team/-/only-in-team-1.0.0.tgz", None).status(),
        200
    );
    assert_eq!(get(&server, path, None).status(), 404);
    assert_eq!(get(&server, path, Some(&admin)).status(), 200);
}

/// Asserts that the dependencies are installed, at their versions, and that node loads them
/// (which needs chalk's dependency tree in place, whatever the client's layout).
fn assert_installed(project: &Project) {
    for (name, version) in DEPS {
        let manifest: Value =
            serde_json::from_str(&project.read_installed(name, "package.json")).expect("package.json");
        assert_eq!(
            manifest["version"], version,
            "{:?}: installed version of {name}",
            project.kind
        );
    }
    assert!(
        !project.read_installed("@types/ms", "index.d.ts").is_empty(),
        "@types/ms/index.d.ts is empty"
    );
    let script = "const isNumber = require('is-number'); const chalk = require('chalk'); \
                  if (!isNumber(7) || isNumber('x') || typeof chalk.red !== 'function') process.exit(1); \
                  console.log(require('chalk/package.json').version);";
    let mut node = Command::new("node");
    node.args(["-e", script])
        .current_dir(&project.dir)
        .env_remove("NODE_OPTIONS")
        .env_remove("NODE_PATH");
    let out = run(&mut node);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4.1.2");
}

/// `(name, version)` of every version pulled from an upstream into `registry`, from the audit log.
fn pulled_into(server: &TestServer, registry: &str) -> BTreeSet<(String, String)> {
    let out = server.cli(&["audit", "--limit", "1000"], "");
    assert!(
        out.status.success(),
        "gatehouse audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.len() >= 6 && fields[2] == "version.pull" && fields[3] == registry)
                .then(|| (fields[4].to_owned(), fields[5].to_owned()))
        })
        .collect()
}

/// `gatehouse warm` prepares a registry for a project it never served: the lockfile a
/// real client wrote against another Gatehouse is warmed into a fresh one, the
/// upstream is unplugged, and the client installs from that lockfile alone.
fn warm_then_install_with_the_upstream_unplugged(kind: ClientKind) {
    use crate::support::fake_upstream::FakeUpstream;
    if crate::support::clients::clients_or_skip(&format!("client_proxy::warm_{}", kind.slug())).is_none() {
        return;
    }
    let packages = [("alpha", "1.0.0"), ("@scope/gamma", "0.3.0"), ("delta", "4.0.0")];
    let fake = FakeUpstream::start();
    for (name, version) in packages {
        fake.publish(name, version);
    }
    let config = format!(
        "[upstream]\nnpmjs_url = \"{}\"\n\n[registries.default]\nupstreams = [\"npmjs\"]\n",
        fake.url
    );
    // Where the project's lockfile was made.
    let first = TestServer::start_with_config(&config);
    let made = Project::new(kind);
    made.configure(&first.registry_url("default"), &first.admin_token());
    made.install(&packages);

    // A fresh registry, warmed from that lockfile (naming the first one's URLs).
    let server = TestServer::start_with_config(&config);
    let lockfile = made.lockfile().text.replace(&first.base, &server.base);
    let warm_dir = tempfile::tempdir().expect("tempdir");
    let path = warm_dir.path().join(kind.lockfile_name());
    std::fs::write(&path, &lockfile).expect("lockfile");
    let out = server.cli(&["warm", "default", "--lockfile", path.to_str().expect("utf-8")], "");
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {summary}{}",
        kind.slug(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("3 pulled, 0 already held, 0 refused, 0 failed"),
        "{}: {summary}",
        kind.slug()
    );
    drop(first);
    fake.go_down();

    let offline = Project::new(kind);
    offline.configure(&server.registry_url("default"), &server.admin_token());
    offline.copy_from(&made, &["package.json"]);
    offline.write(kind.lockfile_name(), &lockfile);
    offline.install_frozen();
    for (name, version) in packages {
        let manifest: Value =
            serde_json::from_str(&offline.read_installed(name, "package.json")).expect("installed package.json");
        assert_eq!(manifest["version"], version, "{}: {name}", kind.slug());
    }
}

#[test]
fn warm_then_npm_installs_with_the_upstream_unplugged() {
    warm_then_install_with_the_upstream_unplugged(ClientKind::Npm);
}

#[test]
fn warm_then_pnpm_installs_with_the_upstream_unplugged() {
    warm_then_install_with_the_upstream_unplugged(ClientKind::Pnpm);
}

#[test]
fn warm_then_yarn_classic_installs_with_the_upstream_unplugged() {
    warm_then_install_with_the_upstream_unplugged(ClientKind::YarnClassic);
}

#[test]
fn warm_then_yarn_berry_installs_with_the_upstream_unplugged() {
    warm_then_install_with_the_upstream_unplugged(ClientKind::YarnBerry);
}

#[test]
fn warm_then_bun_installs_with_the_upstream_unplugged() {
    warm_then_install_with_the_upstream_unplugged(ClientKind::Bun);
}
