// The web app as a person uses it, in Debian's Chromium, one step per run:
//   node flow.mjs STEP
// with GATEHOUSE_URL, GATEHOUSE_PASSWORD (the admin's), UI_OUT (a folder for what the
// step hands back: copied snippets, screenshots, the session) and CHROMIUM.
// The cargo test crates/gatehouse/tests/it/web_browser.rs runs the steps and, in
// between, the real package managers with what was copied from the page.
// Every screen is checked with axe-core: no serious or critical violation.
import { chromium } from "playwright-core";
import { AxeBuilder } from "@axe-core/playwright";
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

const base = need("GATEHOUSE_URL");
const password = need("GATEHOUSE_PASSWORD");
const out = need("UI_OUT");
const step = process.argv[2];
const state = join(out, "session.json");
const shots = join(out, "screenshots");
mkdirSync(shots, { recursive: true });

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-sandbox",
  ],
});
const context = await browser.newContext({
  baseURL: base,
  storageState: existsSync(state) ? state : undefined,
  viewport: { width: 1280, height: 900 },
});
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
const page = await context.newPage();
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("dialog", (d) => {
  problems.push(`a dialog opened: ${d.message()}`);
  d.dismiss();
});
page.on("console", (m) => {
  // A CSP refusal is how an injected script would show up.
  if (m.type() === "error") problems.push(`console error: ${m.text()}`);
});

/// No serious or critical accessibility violation on the screen shown now.
async function accessible(screen) {
  const result = await new AxeBuilder({ page }).analyze();
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const summary = bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  check(bad.length === 0, `${screen}: accessibility violations:\n  ${summary.join("\n  ")}`);
}

async function screenshot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
}

/// Clicks a section's Copy button and returns what reached the clipboard.
async function copyFrom(heading, file) {
  const section = page.getByRole("region", { name: heading, exact: true });
  await section.getByRole("button", { name: `Copy ${heading} ${file}`, exact: true }).first().click();
  await page.waitForFunction(() => [...document.querySelectorAll("button[data-copy]")].some((b) => b.textContent === "Copied"));
  return page.evaluate(() => navigator.clipboard.readText());
}

async function signIn() {
  await page.goto("/-/ui/");
  check(page.url().includes("/-/ui/login"), `a stranger is sent to sign in, got ${page.url()}`);
  await accessible("sign in");
  await screenshot("sign-in");
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Registries", exact: true }).waitFor();
}

const steps = {
  // Sign in, create a registry, add an upstream, create a token on Setup and copy
  // the npm, pnpm, Yarn Berry and Bun snippets.
  async setup() {
    await signIn();
    await accessible("registries");
    await page.getByLabel("Name", { exact: true }).fill("web");
    await page.getByRole("button", { name: "Create registry" }).click();
    await page.getByRole("heading", { name: "Registry web" }).waitFor();
    check((await page.getByRole("status").first().textContent()).includes("Registry web created."), "created flash");

    await page.getByRole("navigation", { name: "Registry" }).getByRole("link", { name: "Upstreams" }).click();
    await page.getByLabel("Upstream", { exact: true }).fill("registry:default");
    await page.getByRole("button", { name: "Add upstream" }).click();
    await page.getByRole("cell", { name: "registry:default", exact: true }).waitFor();
    const upstreams = await page.locator("table tbody tr td:nth-child(2)").allTextContents();
    check(JSON.stringify(upstreams) === JSON.stringify(["npmjs", "registry:default"]), `upstreams in order: ${upstreams}`);
    await page.getByRole("button", { name: "Move registry:default earlier" }).click();
    const reordered = await page.locator("table tbody tr td:nth-child(2)").allTextContents();
    check(reordered[0] === "registry:default", `reordered: ${reordered}`);
    await page.getByRole("button", { name: "Move registry:default later" }).click();
    await accessible("upstreams");
    await screenshot("upstreams");

    await page.getByRole("navigation", { name: "Registry" }).getByRole("link", { name: "Setup" }).click();
    for (const heading of ["npm", "pnpm", "Yarn classic", "Yarn Berry", "Bun", "Unity", "CI"]) {
      await page.getByRole("heading", { name: heading, exact: true }).waitFor();
    }
    await page.getByRole("button", { name: "Create token" }).click();
    const token = await page.getByLabel("Token", { exact: true }).inputValue();
    check(/^gth_/.test(token), `a token is shown: ${token}`);
    await accessible("setup");
    await screenshot("setup");
    const copied = {
      npm: await copyFrom("npm", ".npmrc"),
      pnpm: await copyFrom("pnpm", ".npmrc"),
      berry: await copyFrom("Yarn Berry", ".yarnrc.yml"),
      bun: await copyFrom("Bun", "bunfig.toml"),
      ci: await copyFrom("CI", ".npmrc"),
    };
    for (const [client, text] of Object.entries(copied)) {
      check(client === "ci" ? !text.includes(token) && text.includes("${NPM_TOKEN}") : text.includes(token), `${client} snippet and the token`);
      writeFileSync(join(out, `${client}.snippet`), text);
    }
    writeFileSync(join(out, "token"), token);
    // Gone after a reload (which creates nothing: the form was answered with a redirect).
    await page.reload();
    check(!(await page.content()).includes(token), "the token is not shown again");
    await page.getByText("That token was shown once and is not shown again").waitFor();
    await context.storageState({ path: state });
  },

  // Revoke the setup token on the Tokens page.
  async revoke() {
    await page.goto("/-/ui/");
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Tokens" }).click();
    await page.getByRole("cell", { name: "web setup (read-only, web app)", exact: true }).waitFor();
    await accessible("tokens");
    await screenshot("tokens");
    await page.getByRole("button", { name: "Revoke web setup (read-only, web app)" }).click();
    check((await page.getByRole("status").first().textContent()).includes("Token revoked"), "revoked flash");
    check((await page.getByRole("cell", { name: "web setup (read-only, web app)", exact: true }).count()) === 0, "the token is gone from the list");
  },

  // Approve the quarantined version from the queue.
  async approve() {
    await page.goto("/-/ui/");
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Quarantine" }).click();
    await page.getByRole("link", { name: "native@1.1.0" }).waitFor();
    await accessible("quarantine");
    await screenshot("quarantine");
    await page.getByLabel("Reason for native@1.1.0").fill("reviewed the postinstall script");
    await page.getByRole("button", { name: "Approve native@1.1.0" }).click();
    check((await page.getByRole("status").first().textContent()).includes("native@1.1.0 approved"), "approved flash");
    // What would the policy do to a project? Upload its lockfile on the Policy tab.
    await page.goto("/-/ui/r/default/policy");
    const lock = { name: "app", lockfileVersion: 3, packages: { "": { name: "app" }, "node_modules/native": { version: "1.0.0" } } };
    await page.getByLabel(/^Lockfile/).setInputFiles({ name: "package-lock.json", mimeType: "application/json", buffer: Buffer.from(JSON.stringify(lock)) });
    await page.getByRole("button", { name: "Check lockfile" }).click();
    await page.getByRole("heading", { name: "Lockfile check" }).waitFor();
    const result = await page.getByRole("status").first().textContent();
    check(result.includes("1 version checked against the saved policy") && result.includes("Nothing would be held back."), `lockfile check: ${result}`);
    await accessible("policy");
  },

  // Users: create one and grant a role; the audit log shows it, filtered by action.
  async admin() {
    await page.goto("/-/ui/");
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" }).click();
    await page.getByRole("heading", { name: "Users", exact: true }).waitFor();
    await page.getByLabel("Username").fill("carol");
    await page.getByLabel("Password (at least 8 characters)").fill("carol-password-1");
    await page.getByRole("button", { name: "Create user" }).click();
    check((await page.getByRole("status").first().textContent()).includes("Created user carol."), "created flash");
    const grant = page.getByRole("form", { name: "Grant a role" });
    await grant.getByLabel("User", { exact: true }).selectOption("carol");
    await grant.getByLabel("Registry", { exact: true }).selectOption("web");
    await grant.getByLabel("Role", { exact: true }).selectOption("publish");
    await grant.getByRole("button", { name: "Grant role" }).click();
    await page.getByRole("cell", { name: "web: publish", exact: true }).waitFor();
    await accessible("users");
    await screenshot("users");
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit log" }).click();
    await page.getByLabel("Action").selectOption("user.create");
    await page.getByLabel("User", { exact: true }).fill("admin");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.getByRole("cell", { name: "carol admin=false", exact: true }).waitFor();
    check((await page.getByRole("cell", { name: "registry.grant", exact: true }).count()) === 0, "filtered by action");
    await accessible("audit log");
  },

  // A README with script, handlers and javascript: links: nothing runs. Then sign out.
  async readme() {
    await page.goto("/-/ui/r/web");
    await accessible("packages");
    await page.getByRole("searchbox").fill("hostile-readme");
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByRole("link", { name: "gatehouse-e2e-hostile-readme", exact: true }).click();
    await page.getByRole("heading", { name: "Hostile readme" }).waitFor();
    await page.getByText("hover me").hover();
    const links = page.locator(".readme a");
    for (let i = 0; i < (await links.count()); i++) {
      await links.nth(i).click({ noWaitAfter: true }).catch(() => {});
    }
    await page.waitForTimeout(300);
    const pwned = await page.evaluate(() => window.pwned);
    check(pwned === undefined, `README code ran: window.pwned = ${pwned}`);
    const readme = await page.locator(".readme").innerHTML();
    for (const bad of ["<script", "onerror", "onmouseover", "javascript:", "tracker.example"]) {
      check(!readme.includes(bad), `${bad} in the README`);
    }
    check((await page.locator(".readme img").count()) === 1, "the image stays, by its alt text");
    await accessible("package");
    await screenshot("package");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await page.goto("/-/ui/tokens");
    check(page.url().includes("/-/ui/login"), "signed out: the tokens page asks to sign in");
  },
};

try {
  const run = steps[step];
  if (!run) throw new Error(`unknown step ${step}: one of ${Object.keys(steps).join(", ")}`);
  await run();
  const real = problems.filter((p) => !p.includes("favicon"));
  check(real.length === 0, `the browser reported:\n  ${real.join("\n  ")}`);
  console.log(`step ${step}: ok`);
} finally {
  await browser.close();
}
