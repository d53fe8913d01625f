// The manager console in a real browser (Debian's Chromium through playwright-core) against a
// real `leadrouter serve` whose reps and manager are notified at a real local webhook receiver.
// Run by `make test` (scripts/console-tests.sh); node's own test runner.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { AxeBuilder } from "@axe-core/playwright";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, "target");
const BIN = path.join(TARGET, "debug", "leadrouter");
const SHOTS = path.join(TARGET, "console-screens");
const TOKEN = "console-test-token";
const WAIT = 20_000;

let receiver, received = [], serve, base, browser, work;

/** A webhook receiver that records every notification, as a rep's CRM would. */
function startReceiver() {
  return new Promise((resolve) => {
    const s = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        try {
          received.push({ hook: req.url.split("/").pop(), body: JSON.parse(body) });
        } catch {
          received.push({ hook: req.url, body: null });
        }
        res.end("ok");
      });
    });
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
}

function documentFor(port) {
  const hook = (n) => `webhook:http://127.0.0.1:${port}/hook/${n}`;
  return `
[server]
admin_token = "env:LEADROUTER_ADMIN_TOKEN"
webhook_secret = "console-test-webhook-secret"
allow_private_targets = true

[dedup]
default_phone_region = "US"

[sources.web]
monthly_spend = 300

[scoring]
grades = { A = 70, B = 40, C = 15 }

[[scoring.rules]]
name = "senior title"
field = "job_title"
matches = '(?i)\\b(vp|director|head of)\\b'
points = 45

[[reps]]
id = "ana"
name = "Ana Ortiz"
notify = ["${hook("ana")}"]

[[reps]]
id = "ben"
name = "Ben Okafor"
notify = ["${hook("ben")}"]

[[pools]]
id = "everyone"
match = {}
reps = [{ id = "ana" }, { id = "ben" }]
sla_minutes = 30
manager = { name = "Maria Chen", notify = ["${hook("manager")}"] }
`;
}

function startServe(config, db) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ["serve", "--config", config, "--listen", "127.0.0.1:0", "--db", db], {
      env: { ...process.env, LEADROUTER_ADMIN_TOKEN: TOKEN, RUST_LOG: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "", err = "";
    const timer = setTimeout(() => reject(new Error("serve did not start:\n" + out + err)), 30_000);
    timer.unref();
    p.stderr.on("data", (d) => (err += d));
    p.stdout.on("data", (d) => {
      out += d;
      for (const line of out.split("\n")) {
        const m = line.match(/listening on (http:\/\/[0-9.:]+)/);
        if (m) {
          clearTimeout(timer);
          resolve({ proc: p, url: m[1] });
        }
      }
    });
    p.on("exit", (code) => reject(new Error(`serve exited ${code}:\n${out}${err}`)));
  });
}

async function api(method, p, body) {
  const r = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json().catch(() => null) };
}

async function postLead(fields) {
  const r = await fetch(base + "/v1/leads", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(fields),
  });
  assert.equal(r.status, 202);
  return (await r.json()).lead_id;
}

async function until(what, pred) {
  const end = Date.now() + WAIT;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function notified(id) {
  return until(`lead ${id} notified`, async () => {
    const { json } = await api("GET", `/v1/leads/${id}`);
    return json && json.status === "notified" ? json : null;
  });
}

/** A logged-in page, 375 px wide as on a phone. */
async function loggedIn() {
  const ctx = await browser.newContext({ viewport: { width: 375, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(base + "/");
  await page.getByLabel("Your name").fill("Maria Chen");
  await page.getByLabel("Admin token").fill(TOKEN);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL("**/console/live");
  return { ctx, page };
}

async function axe(page, name) {
  const r = await new AxeBuilder({ page }).analyze();
  const bad = r.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`),
    [],
    `axe on ${name}`,
  );
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: build it with cargo build -p leadrouter-cli`);
  assert.ok(fs.existsSync("/usr/bin/chromium"), "Chromium is missing: scripts/console-tests.sh installs it");
  receiver = await startReceiver();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "lr-console-"));
  const config = path.join(work, "routing.toml");
  fs.writeFileSync(config, documentFor(receiver.address().port));
  const s = await startServe(config, path.join(work, "leads.db"));
  serve = s.proc;
  base = s.url;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });
});

after(async () => {
  await browser?.close();
  serve?.kill("SIGTERM");
  receiver?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test("a wrong token is refused and a manager logs in", async () => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(base + "/console/live");
  await page.waitForURL("**/login");
  await axe(page, "login");
  await page.getByLabel("Your name").fill("Maria Chen");
  await page.getByLabel("Admin token").fill("not-the-token");
  const [resp] = await Promise.all([page.waitForResponse("**/login"), page.getByRole("button", { name: "Log in" }).click()]);
  assert.equal(resp.status(), 401);
  await page.getByText("That is not the admin token.").waitFor();
  const cookies = await ctx.cookies();
  assert.equal(cookies.length, 0, "no session for a wrong token");
  await page.getByLabel("Admin token").fill(TOKEN);
  await page.getByLabel("Your name").fill("Maria Chen");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL("**/console/live");
  const [cookie] = await ctx.cookies();
  assert.equal(cookie.name, "lr_console");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  await page.getByText("Maria Chen").first().waitFor();
  await ctx.close();
});

test("a lead appears live, its reason shows, and a manager reassigns it", async () => {
  const { ctx, page } = await loggedIn();
  await page.locator("#live-state", { hasText: "Live" }).waitFor({ timeout: WAIT });
  const id = await postLead({ email: "live@acme.com", name: "Lia Live", company: "Acme", job_title: "VP Sales" });
  const row = page.locator(`tr[data-id="${id}"]`);
  await row.waitFor({ timeout: WAIT });
  await row.locator(".status", { hasText: "notified" }).waitFor({ timeout: WAIT });
  await axe(page, "live");
  const lead = await notified(id);
  const other = lead.owner === "ana" ? "ben" : "ana";

  await row.getByRole("link", { name: "Lia Live" }).click();
  await page.waitForURL(`**/console/leads/${id}`);
  await page.getByText("round-robin turn").first().waitFor();
  assert.ok((await page.locator(".why").innerText()).includes("pool everyone"));
  await axe(page, "lead");

  await page.getByLabel("Give to").selectOption(other);
  await page.getByLabel("Note", { exact: true }).first().fill("knows the account");
  await page.getByRole("button", { name: "Reassign" }).click();
  await page.getByText(`moved to ${other}`).waitFor();
  await page.getByText(`moved by Maria Chen from ${lead.owner} to ${other}: knows the account`).first().waitFor();
  await until("the new owner told", () =>
    received.some((r) => r.hook === other && r.body?.kind === "assigned" && r.body.lead.id === id),
  );
  await until("the old owner told", () =>
    received.some((r) => r.hook === lead.owner && r.body?.kind === "reassigned" && r.body.lead.id === id),
  );
  const moved = (await api("GET", `/v1/leads/${id}`)).json;
  assert.equal(moved.owner, other);
  assert.equal(moved.history.find((h) => h.by === "Maria Chen").owner, other);
  await ctx.close();
});

test("a rep marked out of office on Reps is skipped by the next lead", async () => {
  const { ctx, page } = await loggedIn();
  await page.goto(base + "/console/reps");
  await axe(page, "reps");
  await page.getByText("Edit Ana Ortiz").click();
  await page.locator("#ooo-ana").fill("2020-01-01/2099-12-31");
  await page.getByRole("button", { name: "Save ana" }).click();
  await page.getByText("ana saved").waitFor();
  await page.locator("section.rep", { hasText: "Ana Ortiz" }).getByText("out of office until 2099-12-31").waitFor();
  await page.locator("section.rep", { hasText: "Ana Ortiz" }).getByText("Changed by Maria Chen").waitFor();
  const whys = [];
  for (const n of [1, 2]) {
    const id = await postLead({ email: `skip@co${n}.example`, name: `Skip ${n}` });
    const l = await notified(id);
    assert.equal(l.owner, "ben", "ana is away");
    whys.push(l.why);
  }
  assert.ok(whys.some((w) => /skipped ana \(out of office until 2099-12-31\)/.test(w)), whys.join("\n"));
  await api("PUT", "/v1/reps/ana", { name: "Ana Ortiz", notify: [ (await api("GET", "/v1/reps/ana")).json.notify[0] ] });
  await ctx.close();
});

test("the SLA page counts down, the funnel shows the numbers, routing previews", async () => {
  const { ctx, page } = await loggedIn();
  await page.goto(base + "/console/sla");
  const countdown = page.locator(".countdown").first();
  await countdown.waitFor();
  const first = await countdown.innerText();
  assert.match(first, /\d+m \d+s left/, first);
  await page.waitForTimeout(1500);
  assert.notEqual(await countdown.innerText(), first, "it counts down");
  await axe(page, "sla");

  const { json: m } = await api("GET", "/v1/metrics");
  await page.goto(base + "/console/funnel?fresh=1");
  const web = page.locator("#by-source tr", { hasText: "web" });
  assert.equal(await web.locator("td").first().innerText(), String(m.sources.web.leads));
  const bars = page.locator("figure", { hasText: "Leads by source" }).locator("text.value");
  assert.equal(await bars.first().textContent(), String(m.sources.web.leads));
  const today = m.days[m.days.length - 1];
  const perDay = page.locator("figure", { hasText: "Leads per day by source" });
  assert.equal(await perDay.locator(".legend li", { hasText: "web" }).locator(".last").innerText(), String(today.leads.web));
  assert.equal(await perDay.locator("polyline").count(), Object.keys(m.sources).length);
  await axe(page, "funnel");

  await page.goto(base + "/console/routing");
  await page.getByLabel("Email").fill("preview@acme.com");
  await page.getByLabel("Job title").fill("VP Sales");
  await page.getByRole("button", { name: "Preview" }).click();
  await page.locator("#preview-result").getByText("round-robin turn").waitFor();
  assert.match(await page.locator("#preview-result").innerText(), /grade B/);
  await page.getByText("webhook_secret").first().waitFor();
  assert.ok(!(await page.content()).includes("console-test-webhook-secret"), "a literal secret is not shown");
  await axe(page, "routing");
  await ctx.close();
});

test("a lead's text is shown as text, and a form without its CSRF token is refused", async () => {
  const id = await postLead({ email: "xss@acme.com", name: "<script>alert(1)</script>", company: "<img src=x onerror=alert(2)>" });
  await notified(id);
  const { ctx, page } = await loggedIn();
  let dialogs = 0;
  page.on("dialog", (d) => { dialogs++; d.dismiss(); });
  await page.locator(`tr[data-id="${id}"]`).getByText("<script>alert(1)</script>").waitFor({ timeout: WAIT });
  await page.goto(base + `/console/leads/${id}`);
  await page.getByRole("heading", { name: "<script>alert(1)</script>" }).waitFor();
  await page.getByText("<img src=x onerror=alert(2)>").first().waitFor();
  assert.equal(dialogs, 0, "no script of the lead's ran");

  const before = (await api("GET", `/v1/leads/${id}`)).json;
  const forged = await page.request.post(base + `/console/leads/${id}/assign`, {
    form: { rep: before.owner === "ana" ? "ben" : "ana" },
    maxRedirects: 0,
  });
  assert.ok(forged.status() === 403 || forged.status() === 422, `status ${forged.status()}`);
  const wrong = await page.request.post(base + `/console/leads/${id}/assign`, {
    form: { rep: "ana", csrf: "0".repeat(32) },
    maxRedirects: 0,
  });
  assert.equal(wrong.status(), 403);
  assert.equal((await api("GET", `/v1/leads/${id}`)).json.owner, before.owner, "nothing changed");
  const headers = (await page.goto(base + "/console/live")).headers();
  assert.match(headers["content-security-policy"], /script-src 'self'/);
  assert.ok(!headers["content-security-policy"].includes("unsafe-inline"));
  await ctx.close();
});
