//! The real npm CLI's package-management commands against the server: ping, whoami,
//! view, dist-tag, deprecate, owner, search and unpublish.

use serde_json::Value;

use crate::support::clients::{ClientKind, Project, clients_or_skip, output_text};
use crate::support::{TestServer, http};

fn text(project: &Project, args: &[&str]) -> String {
    output_text(&project.run(args))
}

fn stdout(project: &Project, args: &[&str]) -> String {
    String::from_utf8_lossy(&project.run(args).stdout).into_owned()
}

fn view(project: &Project, spec: &str) -> Value {
    let out = stdout(project, &["view", spec, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("npm view {spec} --json is not JSON ({e}): {out}"))
}

#[test]
fn npm_manages_packages_with_its_own_commands() {
    let Some(_) = clients_or_skip("npm_commands") else {
        return;
    };
    let server = TestServer::start();
    server.add_user("olga", "olga-password");
    server.add_user("pete", "pete-password");
    let token = server.login("default", "olga", "olga-password");
    let registry = server.registry_url("default");
    let npm = Project::new(ClientKind::Npm);
    npm.configure(&registry, &token);

    npm.write_package("cmd-pkg", "1.0.0", "module.exports = 1;\n");
    npm.publish();
    npm.write_package("cmd-pkg", "1.1.0-beta.1", "module.exports = 2;\n");
    npm.run(&["publish", "--tag", "beta"]);

    assert!(text(&npm, &["ping"]).contains("PONG"));
    assert_eq!(text(&npm, &["whoami"]).trim(), "olga");

    let doc = view(&npm, "cmd-pkg");
    assert_eq!(doc["dist-tags"]["latest"], "1.0.0");
    assert_eq!(doc["dist-tags"]["beta"], "1.1.0-beta.1");
    assert_eq!(doc["versions"], serde_json::json!(["1.0.0", "1.1.0-beta.1"]));

    npm.run(&["dist-tag", "add", "cmd-pkg@1.1.0-beta.1", "next"]);
    assert!(text(&npm, &["dist-tag", "ls", "cmd-pkg"]).contains("next: 1.1.0-beta.1"));
    npm.run(&["dist-tag", "rm", "cmd-pkg", "next"]);
    assert!(!text(&npm, &["dist-tag", "ls", "cmd-pkg"]).contains("next:"));

    npm.run(&["deprecate", "cmd-pkg@1.0.0", "use 1.1 instead"]);
    assert_eq!(view(&npm, "cmd-pkg@1.0.0")["deprecated"], "use 1.1 instead");
    npm.run(&["deprecate", "cmd-pkg@1.0.0", ""]);
    assert!(view(&npm, "cmd-pkg@1.0.0").get("deprecated").is_none());

    npm.run(&["owner", "add", "pete", "cmd-pkg"]);
    let owners = text(&npm, &["owner", "ls", "cmd-pkg"]);
    assert!(owners.contains("olga") && owners.contains("pete"), "{owners}");
    npm.run(&["owner", "rm", "pete", "cmd-pkg"]);
    assert!(!text(&npm, &["owner", "ls", "cmd-pkg"]).contains("pete"));

    let found = stdout(&npm, &["search", "cmd-pkg", "--json"]);
    let hits: Value = serde_json::from_str(&found).unwrap_or_else(|e| panic!("search JSON ({e}): {found}"));
    assert_eq!(hits[0]["name"], "cmd-pkg", "{found}");

    npm.run(&["unpublish", "cmd-pkg@1.1.0-beta.1"]);
    assert_eq!(view(&npm, "cmd-pkg")["versions"], serde_json::json!(["1.0.0"]));
    npm.run(&["unpublish", "cmd-pkg", "--force"]);
    let gone = http()
        .get(format!("{registry}cmd-pkg"))
        .bearer_auth(&token)
        .send()
        .expect("get");
    assert_eq!(gone.status(), 404);
}
