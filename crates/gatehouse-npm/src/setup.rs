//! Copy-paste setup for every client: the one place that knows what each client's
//! config file must say to use a Gatehouse registry. The web app's Setup tab, the
//! API and `gatehouse setup` all print these snippets, so what one shows works in the
//! others. Pure: the registry's URL and an optional token in, text out.
//!
//! Rules the snippets keep (`npm-registry-protocol.md` §5): the registry URL ends in
//! a slash and credentials are keyed by it without the scheme ("nerf dart"); nothing
//! a current client ignores or refuses (npm ≥ 9 has no `always-auth`); values are
//! quoted as JSON strings, which are valid YAML and TOML strings too.

use base64::Engine as _;

/// Who the snippets are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Npm,
    Pnpm,
    YarnClassic,
    YarnBerry,
    Bun,
    Unity,
    Ci,
}

impl Client {
    pub const ALL: [Client; 7] = [
        Client::Npm,
        Client::Pnpm,
        Client::YarnClassic,
        Client::YarnBerry,
        Client::Bun,
        Client::Unity,
        Client::Ci,
    ];

    /// The section heading people look for.
    pub fn heading(self) -> &'static str {
        match self {
            Client::Npm => "npm",
            Client::Pnpm => "pnpm",
            Client::YarnClassic => "Yarn classic",
            Client::YarnBerry => "Yarn Berry",
            Client::Bun => "Bun",
            Client::Unity => "Unity",
            Client::Ci => "CI",
        }
    }

    /// The name on the command line (`gatehouse setup --client berry`) and in anchors.
    pub fn slug(self) -> &'static str {
        match self {
            Client::Npm => "npm",
            Client::Pnpm => "pnpm",
            Client::YarnClassic => "yarn",
            Client::YarnBerry => "berry",
            Client::Bun => "bun",
            Client::Unity => "unity",
            Client::Ci => "ci",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Client> {
        Client::ALL.into_iter().find(|c| c.slug() == slug)
    }
}

/// What the snippets are made from.
#[derive(Debug, Clone, Copy)]
pub struct SetupContext<'a> {
    /// The registry's URL, as clients must write it (with its trailing slash).
    pub registry_url: &'a str,
    /// The registry's name (used for the scope of the scoped examples).
    pub registry: &'a str,
    /// The npm scope to show in scoped examples (`@acme`); default: `@` + registry.
    pub scope: Option<&'a str>,
    /// A token to fill in; without one, snippets read it from `NPM_TOKEN`.
    pub token: Option<&'a str>,
    /// The token owner's name, for the Basic (`_auth`) forms.
    pub user: Option<&'a str>,
}

/// One copy-paste block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub client: Client,
    /// The file it is (`.npmrc`, `~/.upmconfig.toml`), or `shell` for commands.
    pub file: &'static str,
    /// What it does, in a sentence.
    pub note: String,
    pub text: String,
}

/// Every client's snippets, in the order of [`Client::ALL`].
pub fn all_snippets(ctx: &SetupContext<'_>) -> Vec<Snippet> {
    Client::ALL
        .into_iter()
        .flat_map(|client| snippets(client, ctx))
        .collect()
}

/// `client`'s snippets; the first is always a whole file that works pasted as is.
pub fn snippets(client: Client, ctx: &SetupContext<'_>) -> Vec<Snippet> {
    let s = Parts::new(ctx);
    let snippet = |file: &'static str, note: String, text: String| Snippet {
        client,
        file,
        note,
        text,
    };
    let keep_private = if ctx.token.is_some() {
        " It holds your token: keep it out of version control (or put it in ~/.npmrc)."
    } else {
        " It reads the token from the NPM_TOKEN environment variable."
    };
    match client {
        Client::Npm => vec![
            snippet(
                ".npmrc",
                format!("Every package through this registry. Put it next to package.json.{keep_private}"),
                s.npmrc(&format!("registry={}", s.url), &s.npm_token),
            ),
            snippet(
                ".npmrc",
                format!(
                    "Only the {} packages from this registry; the rest as before.{keep_private}",
                    s.scope
                ),
                s.npmrc(&format!("{}:registry={}", s.scope, s.url), &s.npm_token),
            ),
            snippet(
                "shell",
                "Or sign in from the terminal: npm opens this web app in your browser to approve, then stores a token for this registry in ~/.npmrc.".into(),
                format!(
                    "npm config set registry {url}\nnpm login --registry={url}\n",
                    url = s.url
                ),
            ),
            snippet(
                "shell",
                "Publish a package to this registry (needs a token that may publish).".into(),
                format!("npm publish --registry={}\n", s.url),
            ),
        ],
        Client::Pnpm => vec![
            snippet(
                ".npmrc",
                format!("pnpm reads .npmrc like npm. Put it next to package.json.{keep_private}"),
                s.npmrc(&format!("registry={}", s.url), &s.npm_token),
            ),
            snippet(
                "shell",
                "Or sign in from the terminal; pnpm stores the token in ~/.npmrc.".into(),
                format!("pnpm login --registry={}\n", s.url),
            ),
        ],
        Client::YarnClassic => vec![snippet(
            ".npmrc",
            format!(
                "Yarn 1 reads .npmrc; without always-auth it sends the token only for scoped packages, so the line is needed here (npm itself no longer knows it).{keep_private}"
            ),
            format!(
                "{}always-auth=true\n",
                s.npmrc(&format!("registry={}", s.url), &s.npm_token)
            ),
        )],
        Client::YarnBerry => {
            let mut plain_http = String::new();
            if let Some(host) = s.plain_http_host {
                plain_http = format!("unsafeHttpWhitelist:\n  - {}\n", quoted(host));
            }
            let gate = "# Yarn 4 refuses versions younger than a day by default (its own release-age gate).\n\
                        # This registry's policy decides what is too new, so Yarn's gate is turned off;\n\
                        # remove the line to keep both (Yarn older than 4.10 does not know it).\n\
                        npmMinimalAgeGate: 0\n";
            let keep = if ctx.token.is_some() {
                " It holds your token: keep it out of version control (or put it in ~/.yarnrc.yml)."
            } else {
                " It reads the token from the NPM_TOKEN environment variable."
            };
            let http_note = if s.plain_http_host.is_some() {
                " unsafeHttpWhitelist lets Yarn talk to this server over plain http."
            } else {
                ""
            };
            vec![
                snippet(
                    ".yarnrc.yml",
                    format!(
                        "Every package through this registry (Yarn 2 and later). npmAlwaysAuth sends the token with every request, which a private registry needs.{http_note}{keep}"
                    ),
                    format!(
                        "npmRegistryServer: {url}\nnpmAuthToken: {token}\nnpmAlwaysAuth: true\n{plain_http}{gate}",
                        url = quoted(s.url),
                        token = quoted(&s.yarn_token),
                    ),
                ),
                snippet(
                    ".yarnrc.yml",
                    format!("Only the {} packages from this registry; the rest as before.{http_note}{keep}", s.scope),
                    format!(
                        "npmScopes:\n  {scope}:\n    npmRegistryServer: {url}\n    npmPublishRegistry: {url}\n    npmAuthToken: {token}\n    npmAlwaysAuth: true\n{plain_http}{gate}",
                        scope = s.scope.trim_start_matches('@'),
                        url = quoted(s.url),
                        token = quoted(&s.yarn_token),
                    ),
                ),
            ]
        }
        Client::Bun => vec![
            snippet(
                "bunfig.toml",
                format!("Every package through this registry. Put it next to package.json.{keep_private}"),
                format!(
                    "[install]\nregistry = {{ url = {}, token = {} }}\n",
                    quoted(s.url),
                    quoted(&s.bun_token)
                ),
            ),
            snippet(
                "bunfig.toml",
                format!("Only the {} packages from this registry; the rest as before.{keep_private}", s.scope),
                format!(
                    "[install.scopes]\n{} = {{ url = {}, token = {} }}\n",
                    quoted(&s.scope),
                    quoted(s.url),
                    quoted(&s.bun_token)
                ),
            ),
        ],
        Client::Unity => {
            let token = ctx.token.unwrap_or("PASTE_A_TOKEN_HERE");
            let mut out = vec![snippet(
                "~/.upmconfig.toml",
                "Unity's Package Manager reads credentials from this file in your home folder (Windows: %USERPROFILE%\\.upmconfig.toml). The key must be exactly the registry URL of manifest.json, trailing slash included. Unity does not read environment variables here."
                    .into(),
                format!(
                    "[npmAuth.{}]\ntoken = {}\nalwaysAuth = true\n",
                    quoted(s.url),
                    quoted(token)
                ),
            )];
            if let (Some(user), Some(token)) = (ctx.user, ctx.token) {
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
                out.push(snippet(
                    "~/.upmconfig.toml",
                    "The same with Basic credentials (_auth is base64 of user:token), for tools that only write that form."
                        .into(),
                    format!(
                        "[npmAuth.{}]\n_auth = {}\nalwaysAuth = true\n",
                        quoted(s.url),
                        quoted(&basic)
                    ),
                ));
            }
            out.push(snippet(
                "Packages/manifest.json",
                "Add this entry to your project's manifest.json, with the name prefixes of the packages that come from here under scopes.".into(),
                format!(
                    "\"scopedRegistries\": [\n  {{\n    \"name\": {},\n    \"url\": {},\n    \"scopes\": [\"com.{}\"]\n  }}\n]\n",
                    quoted(&format!("Gatehouse {}", ctx.registry)),
                    quoted(s.url),
                    ctx.registry
                ),
            ));
            out
        }
        Client::Ci => vec![
            snippet(
                ".npmrc",
                "Commit this file; the job gives the token as the NPM_TOKEN secret (npm, pnpm and Bun read it). Create a read-only token for CI, limited to the runners' addresses and with an expiry."
                    .into(),
                s.npmrc(&format!("registry={}", s.url), "${NPM_TOKEN}"),
            ),
            snippet(
                ".github/workflows/install.yml",
                "GitHub Actions: store the token as a repository secret named NPM_TOKEN.".into(),
                "name: install\non: [push, pull_request]\njobs:\n  install:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: actions/setup-node@v4\n        with:\n          node-version: 22\n      - run: npm ci\n        env:\n          NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n".into(),
            ),
            snippet(
                ".gitlab-ci.yml",
                "GitLab CI: add NPM_TOKEN as a masked variable (Settings → CI/CD → Variables).".into(),
                "install:\n  image: node:22\n  script:\n    - npm ci\n".into(),
            ),
        ],
    }
}

/// The pieces every snippet is made of.
struct Parts<'a> {
    url: &'a str,
    /// `//host[:port]/path/`: where npm-style config keys credentials.
    nerf_dart: &'a str,
    /// `@scope` of the scoped examples.
    scope: String,
    /// The token as `.npmrc`, `.yarnrc.yml` and `bunfig.toml` write it.
    npm_token: String,
    yarn_token: String,
    bun_token: String,
    /// The host, when the registry is served over plain http.
    plain_http_host: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn new(ctx: &SetupContext<'a>) -> Self {
        let url = ctx.registry_url;
        let (nerf_dart, plain_http) = match url.strip_prefix("http:") {
            Some(rest) => (rest, true),
            None => (url.strip_prefix("https:").unwrap_or(url), false),
        };
        let host = nerf_dart
            .trim_start_matches('/')
            .split(['/', ':'])
            .next()
            .filter(|h| !h.is_empty());
        let scope = match ctx.scope {
            Some(scope) => format!("@{}", scope.trim_start_matches('@')),
            None => format!("@{}", ctx.registry),
        };
        Parts {
            url,
            nerf_dart,
            scope,
            npm_token: ctx.token.map_or("${NPM_TOKEN}".into(), str::to_owned),
            yarn_token: ctx.token.map_or("${NPM_TOKEN}".into(), str::to_owned),
            bun_token: ctx.token.map_or("$NPM_TOKEN".into(), str::to_owned),
            plain_http_host: if plain_http { host } else { None },
        }
    }

    /// An `.npmrc` with `first` and the token line for this registry.
    fn npmrc(&self, first: &str, token: &str) -> String {
        format!("{first}\n{}:_authToken={token}\n", self.nerf_dart)
    }
}

/// A JSON string: also a valid YAML and TOML string for what we put in.
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(url: &'a str, token: Option<&'a str>) -> SetupContext<'a> {
        SetupContext {
            registry_url: url,
            registry: "acme",
            scope: None,
            token,
            user: Some("alice"),
        }
    }

    fn first(client: Client, ctx: &SetupContext<'_>) -> String {
        snippets(client, ctx).remove(0).text
    }

    #[test]
    fn npmrc_keys_the_token_by_the_registry_url_without_scheme() {
        let c = ctx("https://gh.example.com/r/acme/", Some("gth_abc"));
        assert_eq!(
            first(Client::Npm, &c),
            "registry=https://gh.example.com/r/acme/\n//gh.example.com/r/acme/:_authToken=gth_abc\n"
        );
        let scoped = &snippets(Client::Npm, &c)[1].text;
        assert!(
            scoped.starts_with("@acme:registry=https://gh.example.com/r/acme/\n"),
            "{scoped}"
        );
        assert!(
            !all_snippets(&c)
                .iter()
                .any(|s| s.client != Client::YarnClassic && s.text.contains("always-auth"))
        );
    }

    #[test]
    fn ci_keeps_the_environment_variable_even_with_a_token() {
        let c = ctx("http://127.0.0.1:4873/r/acme/", Some("gth_abc"));
        for snippet in snippets(Client::Ci, &c) {
            assert!(!snippet.text.contains("gth_abc"), "{}", snippet.text);
        }
        assert!(first(Client::Ci, &c).ends_with("//127.0.0.1:4873/r/acme/:_authToken=${NPM_TOKEN}\n"));
        // Every other client gets the token filled in.
        for client in Client::ALL.into_iter().filter(|c| *c != Client::Ci) {
            assert!(first(client, &c).contains("gth_abc"), "{client:?}");
        }
    }

    #[test]
    fn without_a_token_snippets_read_it_from_the_environment() {
        let c = ctx("https://gh.example.com/r/acme/", None);
        assert!(first(Client::Npm, &c).contains(":_authToken=${NPM_TOKEN}"));
        assert!(first(Client::YarnBerry, &c).contains("npmAuthToken: \"${NPM_TOKEN}\""));
        assert!(first(Client::Bun, &c).contains("token = \"$NPM_TOKEN\""));
    }

    #[test]
    fn berry_whitelists_plain_http_hosts_only() {
        let http = first(Client::YarnBerry, &ctx("http://127.0.0.1:4873/r/acme/", None));
        assert!(http.contains("unsafeHttpWhitelist:\n  - \"127.0.0.1\"\n"), "{http}");
        assert!(http.contains("npmMinimalAgeGate: 0\n"));
        let https = first(Client::YarnBerry, &ctx("https://gh.example.com/r/acme/", None));
        assert!(!https.contains("unsafeHttpWhitelist"), "{https}");
    }

    #[test]
    fn unity_offers_bearer_and_basic_forms_keyed_by_the_exact_url() {
        let c = ctx("https://gh.example.com/r/acme/", Some("gth_abc"));
        let unity = snippets(Client::Unity, &c);
        assert_eq!(
            unity[0].text,
            "[npmAuth.\"https://gh.example.com/r/acme/\"]\ntoken = \"gth_abc\"\nalwaysAuth = true\n"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:gth_abc");
        assert!(unity[1].text.contains(&format!("_auth = \"{basic}\"")));
        assert!(unity[2].text.contains("\"url\": \"https://gh.example.com/r/acme/\""));
    }

    #[test]
    fn headings_and_slugs_round_trip() {
        let headings: Vec<_> = Client::ALL.iter().map(|c| c.heading()).collect();
        assert_eq!(
            headings,
            ["npm", "pnpm", "Yarn classic", "Yarn Berry", "Bun", "Unity", "CI"]
        );
        for client in Client::ALL {
            assert_eq!(Client::from_slug(client.slug()), Some(client));
        }
        assert_eq!(Client::from_slug("cargo"), None);
    }
}
