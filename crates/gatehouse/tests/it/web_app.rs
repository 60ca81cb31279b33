//! The web app over HTTP, as a browser talks to it: sign-in and sessions, the CSRF
//! guard, security headers, who sees which registry, setup tokens, the quarantine
//! queue and README sanitising. Real-browser tests are in `web_browser`.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::support::fake_upstream::FakeUpstream;
use crate::support::firewall::{policy_in_config, publish_with_postinstall};
use crate::support::*;

/// A client that shows redirects instead of following them.
pub fn browser() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A form post from a page of `origin` (what a browser sends with it).
pub fn post_from(server: &TestServer, origin: &str, cookie: &str, path: &str, form: &[(&str, &str)]) -> Response {
    let same = origin == server.base;
    browser()
        .post(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .header("origin", origin)
        .header("sec-fetch-site", if same { "same-origin" } else { "cross-site" })
        .form(form)
        .send()
        .expect("post")
}

pub fn post(server: &TestServer, cookie: &str, path: &str, form: &[(&str, &str)]) -> Response {
    post_from(server, &server.base, cookie, path, form)
}

pub fn get(server: &TestServer, cookie: &str, path: &str) -> Response {
    browser()
        .get(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .send()
        .expect("get")
}

/// Signs in and returns the `Cookie` header value of the session.
pub fn sign_in(server: &TestServer, user: &str, password: &str) -> String {
    sign_in_then(server, user, password, "/-/ui/")
}

/// Signs in from the sign-in page that was sent to go back to `next` afterwards.
fn sign_in_then(server: &TestServer, user: &str, password: &str, next: &str) -> String {
    let response = post(
        server,
        "",
        "/-/ui/login",
        &[("username", user), ("password", password), ("next", next)],
    );
    assert_eq!(response.status(), 303, "sign-in of {user}");
    assert_eq!(
        response.headers()[LOCATION],
        next,
        "back to where the sign-in was asked for"
    );
    session_cookie(response.headers()).expect("a session cookie")
}

/// The person at the browser during `npm login`: opens the URL npm printed, is sent
/// to sign in first, comes back and presses Approve.
pub fn approve_npm_login(server: &TestServer, login_url: &str, user: &str, password: &str) {
    let path = login_url
        .strip_prefix(&server.base)
        .unwrap_or_else(|| panic!("{login_url} is not on {}", server.base));
    assert!(path.starts_with("/-/ui/npm-login/"), "{login_url}");
    let first = browser().get(login_url).send().expect("login page");
    assert_eq!(first.status(), 303, "signed out: sign in first");
    let sign_in_page = first.headers()[LOCATION].to_str().expect("location").to_owned();
    assert!(sign_in_page.starts_with("/-/ui/login?next="), "{sign_in_page}");
    let cookie = sign_in_then(server, user, password, path);
    let page = text(get(server, &cookie, path), 200);
    assert!(page.contains("<h1>Approve npm login</h1>"), "{page}");
    let done = text(post(server, &cookie, path, &[]), 200);
    assert!(done.contains("<h1>npm login approved</h1>"), "{done}");
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let cookie = headers.get(SET_COOKIE)?.to_str().ok()?;
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/-/"] {
        assert!(cookie.contains(attribute), "{attribute} missing in {cookie}");
    }
    let pair = cookie.split(';').next()?.to_owned();
    (!pair.ends_with('=')).then_some(pair)
}

/// The page's body, with the entities askama writes for quotes and the like read
/// back, so assertions quote messages as a person reads them.
pub fn text(response: Response, status: u16) -> String {
    let got = response.status().as_u16();
    let body = response.text().expect("body");
    assert_eq!(got, status, "{body}");
    body.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn assert_signed_out(server: &TestServer, cookie: &str) {
    let response = get(server, cookie, "/-/ui/tokens");
    assert_eq!(response.status(), 303);
    assert!(
        location(&response).starts_with("/-/ui/login?next=/-/ui/tokens"),
        "{}",
        location(&response)
    );
}

#[test]
fn pages_send_the_security_headers_and_ask_strangers_to_sign_in() {
    let server = TestServer::start_with_config("[registries.open]\npublic = true\n");
    let root = browser().get(format!("{}/", server.base)).send().expect("root");
    assert!(root.status().is_redirection());
    assert_eq!(location(&root), "/-/ui/");

    let cookie = sign_in(&server, "admin", ADMIN_PASSWORD);
    for (path, cookie) in [
        ("/-/ui/login", ""),
        ("/-/ui/", cookie.as_str()),
        ("/-/ui/r/default/setup", cookie.as_str()),
        ("/-/ui/tokens", cookie.as_str()),
        ("/-/ui/r/nothing-here", cookie.as_str()),
    ] {
        let response = get(&server, cookie, path);
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        let body = response.text().expect("body");
        assert!(
            !body.contains("<script>") && !body.contains(" style="),
            "{path}: inline script or style"
        );
    }
    // A stranger is sent to sign in, and comes back to where they were going.
    let response = get(&server, "", "/-/ui/r/default/setup");
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/-/ui/login?next=/-/ui/r/default/setup");
    // The sign-in page names the public registries only.
    let login = text(get(&server, "", "/-/ui/login"), 200);
    assert!(login.contains("/r/open/") && !login.contains("/r/default/"), "{login}");
    assert!(login.contains(">Username</label>") && login.contains(">Sign in</button>"));
    // Only paths of the web app are places to go back to.
    let evil = post(
        &server,
        "",
        "/-/ui/login",
        &[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("next", "//evil.example/"),
        ],
    );
    assert_eq!(location(&evil), "/-/ui/");

    let css = browser()
        .get(format!("{}/-/ui/assets/app.css", server.base))
        .send()
        .expect("css");
    assert_eq!(css.headers()["cache-control"], "public, max-age=31536000, immutable");
}

#[test]
fn forms_from_another_site_or_port_are_refused_and_change_nothing() {
    let server = TestServer::start();
    let cookie = sign_in(&server, "admin", ADMIN_PASSWORD);
    let port = server
        .base
        .rsplit(':')
        .next()
        .expect("port")
        .parse::<u16>()
        .expect("port");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    for origin in ["https://evil.example", other_port.as_str()] {
        let response = post_from(
            &server,
            origin,
            &cookie,
            "/-/ui/",
            &[("name", "planted"), ("npmjs", "on")],
        );
        let body = text(response, 403);
        assert!(
            body.contains("sent from another site (or another port of this host)"),
            "{body}"
        );
        let response = post_from(&server, origin, &cookie, "/-/ui/logout", &[("everywhere", "on")]);
        assert_eq!(response.status(), 403, "{origin}");
    }
    assert!(!server.cli_ok(&["registry", "list"]).contains("planted"));
    // Still signed in: the forged sign-out did nothing.
    assert_eq!(get(&server, &cookie, "/-/ui/tokens").status(), 200);
    // The same form from the app itself works.
    let response = post(&server, &cookie, "/-/ui/", &[("name", "planted"), ("npmjs", "on")]);
    assert_eq!(response.status(), 303);
    assert!(server.cli_ok(&["registry", "list"]).contains("planted"));
}

#[test]
fn the_session_cookie_is_no_credential_on_the_npm_routes_and_checked_on_the_api() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_ok(&server, "default", &token, "cookie-jar", "1.0.0");
    let cookie = sign_in(&server, "admin", ADMIN_PASSWORD);
    let url = format!("{}cookie-jar", server.registry_url("default"));
    let stolen = browser().get(&url).header("cookie", &cookie).send().expect("get");
    let error = expect_error(stolen, 401);
    assert!(error.contains("log in"), "{error}");
    assert_eq!(get_from(&server, "default", "cookie-jar", &token).status(), 200);

    // The admin API takes an administrator's session, as the web app's pages do.
    let api = |path: &str| format!("{}/-/api/v1{path}", server.base);
    let listed = browser()
        .get(api("/registries"))
        .header("cookie", &cookie)
        .send()
        .expect("api");
    assert_eq!(listed.status(), 200);
    let registries = || server.cli_ok(&["registry", "list"]);
    let before = registries();
    // A state change from another origin with that cookie: refused, nothing created.
    for (origin, site) in [
        ("https://evil.example", "cross-site"),
        ("http://127.0.0.1:1", "same-site"),
    ] {
        let forged = browser()
            .post(api("/registries"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .json(&serde_json::json!({"name": "forged"}))
            .send()
            .expect("post");
        assert_eq!(forged.status(), 403, "{origin}");
        assert_eq!(forged.headers()["content-type"], "application/problem+json");
        let problem: Value = forged.json().expect("problem");
        assert!(
            problem["detail"].as_str().unwrap_or_default().contains("another site"),
            "{problem}"
        );
    }
    assert_eq!(registries(), before);
    let made = browser()
        .post(api("/registries"))
        .header("cookie", &cookie)
        .header("origin", &server.base)
        .header("sec-fetch-site", "same-origin")
        .json(&serde_json::json!({"name": "from-the-browser"}))
        .send()
        .expect("post");
    assert_eq!(made.status(), 201);
    assert!(registries().contains("from-the-browser"));
    // Someone else's session is not an administrator's; a forged cookie is nobody's.
    server.add_user("kim", "kim-password-1");
    let kim = sign_in(&server, "kim", "kim-password-1");
    let refused = browser()
        .get(api("/registries"))
        .header("cookie", &kim)
        .send()
        .expect("api");
    assert_eq!(refused.status(), 403);
    let forged = browser()
        .get(api("/registries"))
        .header("cookie", "gatehouse_session=forged")
        .send()
        .expect("api");
    assert_eq!(forged.status(), 401);
}

#[test]
fn sessions_expire_and_signing_out_ends_one_or_all() {
    let server = TestServer::start_with_config("[web]\nsession_ttl = \"2s\"\n");
    let short = sign_in(&server, "admin", ADMIN_PASSWORD);
    assert_eq!(get(&server, &short, "/-/ui/tokens").status(), 200);
    std::thread::sleep(Duration::from_millis(2500));
    assert_signed_out(&server, &short);

    let server = TestServer::start();
    let laptop = sign_in(&server, "admin", ADMIN_PASSWORD);
    let phone = sign_in(&server, "admin", ADMIN_PASSWORD);
    let tablet = sign_in(&server, "admin", ADMIN_PASSWORD);
    let response = post(&server, &laptop, "/-/ui/logout", &[]);
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()[SET_COOKIE]
            .to_str()
            .expect("cookie")
            .split(';')
            .next(),
        Some("gatehouse_session=")
    );
    assert_signed_out(&server, &laptop);
    assert_eq!(
        get(&server, &phone, "/-/ui/tokens").status(),
        200,
        "other sessions live on"
    );
    let response = post(&server, &phone, "/-/ui/logout", &[("everywhere", "on")]);
    assert!(
        location(&response).contains("Signed%20out%20everywhere"),
        "{}",
        location(&response)
    );
    assert_signed_out(&server, &phone);
    assert_signed_out(&server, &tablet);
    // A forged cookie is nobody.
    assert_signed_out(&server, "gatehouse_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let audit = server.cli_ok(&["audit", "--limit", "50"]);
    assert!(audit.contains("auth.login"), "{audit}");
}

#[test]
fn failed_sign_ins_count_with_npm_login_failures() {
    let server = TestServer::start();
    server.add_user("mallory-target", "right-password-1");
    let wrong = post(
        &server,
        "",
        "/-/ui/login",
        &[("username", "mallory-target"), ("password", "wrong")],
    );
    let body = text(wrong, 401);
    assert!(body.contains("Incorrect username or password."), "{body}");
    assert!(session_cookie(&HeaderMap::new()).is_none());
    // npm login's failures and the web app's are one count.
    for _ in 0..9 {
        let response = http()
            .put(format!(
                "{}-/user/org.couchdb.user:mallory-target",
                server.registry_url("default")
            ))
            .json(&serde_json::json!({"name": "mallory-target", "password": "wrong"}))
            .send()
            .expect("npm login");
        assert!(response.status().is_client_error());
    }
    let limited = post(
        &server,
        "",
        "/-/ui/login",
        &[("username", "mallory-target"), ("password", "right-password-1")],
    );
    let body = text(limited, 429);
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    assert!(server.cli_ok(&["audit", "--limit", "50"]).contains("auth.login_failed"));
}

#[test]
fn people_see_only_the_registries_they_were_granted() {
    let server = TestServer::start_with_config("[registries.team-a]\n[registries.team-b]\n");
    for registry in ["default", "team-a", "team-b"] {
        server.cli_ok(&["registry", "default-role", registry, "none"]);
    }
    server.add_user("bob", "bob-password-1");
    server.cli_ok(&["registry", "grant", "team-a", "bob", "read"]);
    let bob = sign_in(&server, "bob", "bob-password-1");

    let list = text(get(&server, &bob, "/-/ui/"), 200);
    assert!(list.contains("/-/ui/r/team-a\"") && !list.contains("team-b") && !list.contains("Create registry"));
    for path in ["/-/ui/r/team-b", "/-/ui/r/team-b/setup", "/-/ui/r/team-b/p/anything"] {
        let body = text(get(&server, &bob, path), 404);
        assert!(
            body.contains("There is no registry \"team-b\" you can see."),
            "{path}: {body}"
        );
    }
    let body = text(
        post(
            &server,
            &bob,
            "/-/ui/r/team-a/upstreams",
            &[("action", "add"), ("spec", "npmjs")],
        ),
        403,
    );
    assert!(
        body.contains("This needs the admin role in registry \"team-a\"; you have read."),
        "{body}"
    );
    let body = text(post(&server, &bob, "/-/ui/", &[("name", "bobs")]), 403);
    assert!(body.contains("administrator"), "{body}");
    let upstreams = server.cli_ok(&["registry", "upstream", "list", "team-a"]);
    assert!(!upstreams.contains("npmjs"), "{upstreams}");
    assert!(!server.cli_ok(&["registry", "list"]).contains("bobs"));
    // The API answers bob's token the same way.
    let token = server.login("team-a", "bob", "bob-password-1");
    let api = authed(
        http().get(format!("{}/-/api/v1/registries/team-b/setup", server.base)),
        &token,
    )
    .send()
    .expect("api");
    assert!(api.status() == 403 || api.status() == 404, "{}", api.status());
}

/// The first `gth_` token in a page.
fn token_in(page: &str) -> Option<String> {
    let start = page.find("gth_")?;
    Some(
        page[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect(),
    )
}

#[test]
fn a_setup_token_is_read_only_for_this_registry_shown_once_and_revocable() {
    let server = TestServer::start_with_config("[registries.other]\n");
    let admin = server.admin_token();
    publish_ok(&server, "default", &admin, "setup-demo", "1.0.0");
    publish_ok(
        &server,
        "other",
        &server.login("other", "admin", ADMIN_PASSWORD),
        "elsewhere",
        "1.0.0",
    );
    let cookie = sign_in(&server, "admin", ADMIN_PASSWORD);

    let refused = text(
        post(&server, &cookie, "/-/ui/r/default/setup", &[("cidr", "10.0.0.0/99")]),
        400,
    );
    assert!(refused.contains("No token was created"), "{refused}");
    let tokens_before = server.cli_ok(&["token", "list", "--user", "admin"]).lines().count();
    let created = post(&server, &cookie, "/-/ui/r/default/setup", &[("expires", "30d")]);
    assert_eq!(
        created.status(),
        303,
        "answered with a redirect, so a reload posts nothing"
    );
    let shown_at = location(&created);
    assert!(shown_at.starts_with("/-/ui/r/default/setup?token="), "{shown_at}");
    // Another session (even the same person's) cannot have it shown.
    let other = sign_in(&server, "admin", ADMIN_PASSWORD);
    let elsewhere = text(get(&server, &other, &shown_at), 200);
    assert!(token_in(&elsewhere).is_none());
    assert!(elsewhere.contains("That token was shown once and is not shown again"));
    let created = post(&server, &cookie, "/-/ui/r/default/setup", &[("expires", "30d")]);
    let shown_at = location(&created);
    let page = text(get(&server, &cookie, &shown_at), 200);
    let token = token_in(&page).expect("the token on the page");
    let nerf = server.registry_url("default").replace("http:", "");
    assert!(
        page.contains(&format!("{nerf}:_authToken={token}")),
        "npm snippet carries it"
    );
    assert!(
        page.contains(&format!("npmAuthToken: \"{token}\"")),
        "berry snippet carries it"
    );
    assert!(
        page.contains(&format!("{nerf}:_authToken=${{NPM_TOKEN}}")),
        "CI keeps the variable"
    );
    for heading in ["npm", "pnpm", "Yarn classic", "Yarn Berry", "Bun", "Unity", "CI"] {
        assert!(page.contains(&format!(">{heading}</h2>")), "section {heading}");
    }
    assert_eq!(get_from(&server, "default", "setup-demo", &token).status(), 200);
    assert_eq!(get_from(&server, "other", "elsewhere", &token).status(), 403);
    let publish = publish(&server, "default", &token, &publish_body("setup-demo", "2.0.0"));
    assert_eq!(publish.status(), 403);
    // Gone after a reload of that very page, and the reload made no token.
    let again = text(get(&server, &cookie, &shown_at), 200);
    assert!(token_in(&again).is_none());
    assert!(again.contains("That token was shown once and is not shown again"));
    let again = text(get(&server, &cookie, "/-/ui/r/default/setup"), 200);
    assert!(token_in(&again).is_none());
    let tokens_after = server.cli_ok(&["token", "list", "--user", "admin"]).lines().count();
    // Minted by the page that shows it: the one another session asked for never was.
    assert_eq!(tokens_after, tokens_before + 1, "one token per token shown");

    let tokens = text(get(&server, &cookie, "/-/ui/tokens"), 200);
    assert!(tokens.contains("default setup (read-only, web app)"), "{tokens}");
    // The setup token is listed; revoke it.
    let keys: Vec<String> = tokens
        .split("default setup (read-only, web app)")
        .skip(1)
        .filter_map(|row| row.split("/-/ui/tokens/").nth(1))
        .filter_map(|rest| rest.split('/').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(keys.len(), 1, "{tokens}");
    for key in keys {
        let response = post(&server, &cookie, &format!("/-/ui/tokens/{key}/revoke"), &[]);
        assert_eq!(response.status(), 303);
    }
    let error = expect_error(get_from(&server, "default", "setup-demo", &token), 401);
    assert!(error.contains("revoked"), "{error}");
}

#[test]
fn the_cli_and_the_api_print_the_same_setup_as_the_page() {
    let server = TestServer::start();
    let cli = server.cli_ok(&["setup", "default", "--client", "berry"]);
    assert!(
        cli.contains("npmRegistryServer: \"") && cli.contains("npmMinimalAgeGate: 0"),
        "{cli}"
    );
    let api: Value = authed(
        http().get(format!("{}/-/api/v1/registries/default/setup?client=npm", server.base)),
        &server.admin_token(),
    )
    .send()
    .expect("api")
    .json()
    .expect("json");
    let npmrc = api["sections"][0]["snippets"][0]["text"].as_str().expect("text");
    let url = server.registry_url("default");
    assert_eq!(
        npmrc,
        format!(
            "registry={url}\n{}:_authToken=${{NPM_TOKEN}}\n",
            url.replace("http:", "")
        )
    );
    let page = text(
        get(
            &server,
            &sign_in(&server, "admin", ADMIN_PASSWORD),
            "/-/ui/r/default/setup",
        ),
        200,
    );
    assert!(page.contains(npmrc), "the page shows the API's npmrc");
}

#[test]
fn a_quarantined_version_is_approved_from_the_queue() {
    let fake = FakeUpstream::start();
    fake.publish("native", "1.0.0");
    publish_with_postinstall(&fake, "native", "1.1.0");
    let server = TestServer::start_with_config(&format!(
        "[upstream]\nnpmjs_url = \"{}\"\n[registries.default]\nupstreams = [\"npmjs\"]\n{}",
        fake.url,
        policy_in_config("default", "[install_scripts]\naction = \"quarantine\"\n")
    ));
    let token = server.admin_token();
    assert_eq!(
        get_from(&server, "default", "native/-/native-1.1.0.tgz", &token).status(),
        403
    );
    let cookie = sign_in(&server, "admin", ADMIN_PASSWORD);
    assert!(eventually(Duration::from_secs(5), || {
        text(get(&server, &cookie, "/-/ui/quarantine"), 200).contains("native@1.1.0")
    }));
    let package = text(get(&server, &cookie, "/-/ui/r/default/p/native"), 200);
    assert!(package.contains("quarantined</span> install_scripts"), "{package}");

    let response = post(
        &server,
        &cookie,
        "/-/ui/r/default/review",
        &[
            ("package", "native"),
            ("version", "1.1.0"),
            ("decision", "approve"),
            ("reason", "reviewed the postinstall"),
            ("back", "queue"),
        ],
    );
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with("/-/ui/quarantine?done="));
    assert_eq!(
        get_from(&server, "default", "native/-/native-1.1.0.tgz", &token).status(),
        200
    );
    assert!(!text(get(&server, &cookie, "/-/ui/quarantine"), 200).contains("native@1.1.0"));
    assert!(
        server
            .cli_ok(&["audit", "--limit", "20"])
            .contains("quarantine.approve")
    );
}

#[test]
fn a_readme_from_the_tarball_is_shown_without_anything_that_runs() {
    let server = TestServer::start();
    let token = server.admin_token();
    publish_hostile_readme(&server, "default", &token);

    let cookie = sign_in(&server, "admin", ADMIN_PASSWORD);
    let page = get(&server, &cookie, "/-/ui/r/default/p/gatehouse-e2e-hostile-readme")
        .text()
        .expect("page");
    let readme_html = page
        .split("<div class=\"readme\"")
        .nth(1)
        .and_then(|rest| rest.split("Remote images are not loaded.").next())
        .expect("a rendered README");
    assert!(
        readme_html.contains("Hostile readme</h1>") && readme_html.contains("hover"),
        "{readme_html}"
    );
    for bad in [
        "<script",
        "onerror",
        "onmouseover",
        "javascript:",
        "tracker.example",
        "pwned",
    ] {
        assert!(!readme_html.contains(bad), "{bad} in {readme_html}");
    }
    for shown in [
        "npm install gatehouse-e2e-hostile-readme@1.0.0",
        "<dd>MIT</dd>",
        "served</span>",
        "published here",
        "<dd>admin</dd>",
    ] {
        assert!(page.contains(shown), "{shown} missing in {page}");
    }
    let packages = text(get(&server, &cookie, "/-/ui/r/default?q=hostile-readme"), 200);
    assert!(
        packages.contains("/-/ui/r/default/p/gatehouse-e2e-hostile-readme"),
        "{packages}"
    );
}

/// The package with a hostile README (a name nobody has on the public registry).
pub const HOSTILE: &str = "gatehouse-e2e-hostile-readme";

/// Publishes `HOSTILE@1.0.0`, whose README (only in its tarball) carries script,
/// event-handler, `javascript:` and remote-image payloads that set `window.pwned`.
pub fn publish_hostile_readme(server: &TestServer, registry: &str, token: &str) {
    let readme = b"# Hostile readme\n\n<script>window.pwned = 1</script>\n\n\
        <img src=\"https://tracker.example/pixel.gif\" onerror=\"window.pwned = 2\" alt=\"pixel\">\n\n\
        [click me](javascript:window.pwned=3)\n\n<a href=\"javascript:window.pwned=4\">link</a>\n\n\
        <div onmouseover=\"window.pwned = 5\">hover me</div>\n";
    let manifest =
        br#"{"name":"gatehouse-e2e-hostile-readme","version":"1.0.0","license":"MIT","description":"a test"}"#;
    let tgz = tarball(&[("package/package.json", manifest), ("package/README.md", readme)]);
    let mut body = publish_body_with(HOSTILE, "1.0.0", "latest", &tgz);
    body["versions"]["1.0.0"]["license"] = "MIT".into();
    let response = publish(server, registry, token, &body);
    assert!(
        response.status().is_success(),
        "{}",
        response.text().unwrap_or_default()
    );
}

#[test]
fn npm_web_login_is_approved_in_the_web_app_and_the_terminal_gets_a_registry_token() {
    let server = TestServer::start();
    server.cli_ok(&["registry", "create", "team"]);
    let base = server.registry_url("team");
    let started: Value = http()
        .post(format!("{base}-/v1/login"))
        .json(&serde_json::json!({}))
        .send()
        .expect("post")
        .json()
        .expect("json");
    let login_url = started["loginUrl"].as_str().expect("loginUrl").to_owned();
    let done_url = started["doneUrl"].as_str().expect("doneUrl").to_owned();
    let id = login_url
        .strip_prefix(&format!("{}/-/ui/npm-login/", server.base))
        .unwrap_or_else(|| panic!("the login URL is a page of the web app: {login_url}"))
        .to_owned();
    assert!(done_url.starts_with(&format!("{base}-/v1/done/")), "{done_url}");
    let poll = || http().get(&done_url).send().expect("poll");
    let pending = poll();
    assert_eq!(pending.status(), 202);
    assert_eq!(pending.headers()["retry-after"], "1");
    // A login URL of the old form leads to the page.
    let old = browser().get(format!("{base}-/v1/login/{id}")).send().expect("old url");
    assert_eq!(old.status(), 303);
    assert_eq!(old.headers()[LOCATION], login_url.as_str());

    let path = format!("/-/ui/npm-login/{id}");
    let signed_out = browser().get(&login_url).send().expect("page");
    assert_eq!(signed_out.status(), 303, "sign in first");
    let cookie = sign_in_then(&server, "admin", ADMIN_PASSWORD, &path);
    let page = get(&server, &cookie, &path);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let page = text(page, 200);
    assert!(page.contains("<h1>Approve npm login</h1>") && page.contains("<strong>team</strong>"));
    assert!(page.contains(&format!("<code>{base}</code>")), "{page}");
    assert!(page.contains(r#"<button type="submit">Approve</button>"#), "{page}");

    let web_tokens = || {
        server
            .cli_ok(&["token", "list", "--user", "admin"])
            .matches("npm login (web)")
            .count()
    };
    // Approval from another origin: refused, nothing minted, the terminal still waits.
    let forged = post_from(&server, "http://127.0.0.1:1", &cookie, &path, &[]);
    assert_eq!(forged.status(), 403);
    assert_eq!(web_tokens(), 0);
    assert_eq!(poll().status(), 202);

    let approved = text(post(&server, &cookie, &path, &[]), 200);
    assert!(approved.contains("<h1>npm login approved</h1>"), "{approved}");
    // The token is minted when the terminal collects it: no secret waits in the store.
    assert_eq!(web_tokens(), 0);
    let done: Value = poll().json().expect("json");
    assert_eq!(web_tokens(), 1);
    let token = done["token"].as_str().expect("token");
    let me = get_from(&server, "team", "-/whoami", token);
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().expect("json")["username"], "admin");
    // Limited to the registry npm logged in to.
    let elsewhere = get_from(&server, "default", "-/whoami", token);
    assert_eq!(elsewhere.status(), 403, "{:?}", elsewhere.text());
    let audit = server.cli_ok(&["audit", "--action", "auth.login", "--registry", "team"]);
    assert!(audit.contains("npm web login approved"), "{audit}");

    // Once: the token is handed out once and the page is gone.
    assert_eq!(poll().status(), 404);
    let again = text(get(&server, &cookie, &path), 404);
    assert!(again.contains("Run npm login again"), "{again}");
    let replay = post(&server, &cookie, &path, &[]);
    assert_eq!(replay.status(), 404);
    assert_eq!(web_tokens(), 1);
}
