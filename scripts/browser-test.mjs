// Drives the chat page in headless Chromium through playwright-core, as a
// person would: type, press Enter or click Send, read what is on screen. Any
// Content-Security-Policy violation on a page, at any step, fails the run.
// Run by scripts/browser-test.sh, which passes:
//   --server BIN  --chromium PATH  --playwright DIR  --out DIR
//
// Every wait is a condition with a deadline (playwright's waitFor and
// waitForFunction, or a child process's exit), never a fixed sleep.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";

const { values: opts } = parseArgs({
  options: {
    server: { type: "string" },
    chromium: { type: "string" },
    playwright: { type: "string" },
    out: { type: "string" },
  },
});
for (const name of ["server", "chromium", "playwright", "out"]) {
  if (!opts[name]) throw new Error(`--${name} is required`);
}
const { chromium } = createRequire(path.resolve(opts.playwright, "package.json"))("playwright-core");

// How long one condition may take to come true. Reconnecting waits out the
// page's backoff (0.5 s, 1 s, 2 s ... with jitter), so it gets longer.
const PATIENCE_MS = 10_000;
const RECONNECT_PATIENCE_MS = 30_000;
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const XSS = "<script>alert(1)</script><b>bold</b>";
// How long a page that gave up is watched for a retry: more than its first
// backoff delay (0.5 s, at most 0.625 s with jitter) and a probe's round trip.
// Seeing that nothing happens takes a window; nothing waits on it to happen.
const NO_RETRY_WINDOW_MS = 2_000;
// The token of the server that asks for one: a `+`, a `/` and a `=`, as
// base64 has, must survive the address, the header and the query alike.
const TOKEN = "browser+secret/1=";
// The HS256 key of the server that vouches for names with JWTs.
const JWT_KEY = "browser-test-jwt-key-5f1c9a7e";

// ---------------------------------------------------------------------------
// The server, as a child process.

class Server {
  /** Starts the binary on `port` (0: a free one), with `args`, and waits for its address line. */
  static async start(port, logName, args = []) {
    const child = spawn(opts.server, ["--listen", `127.0.0.1:${port}`, ...args], {
      env: { ...process.env, RUST_LOG: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    const logPath = path.join(opts.out, logName);
    const log = createWriteStream(logPath);
    const logWritten = once(log, "finish");
    child.stderr.pipe(log);
    const exited = once(child, "exit");
    const listening = new Promise((resolve, reject) => {
      let seen = "";
      child.stderr.on("data", (chunk) => {
        seen += chunk;
        const found = /listening on http:\/\/(127\.0\.0\.1:\d+)\//.exec(seen);
        if (found) resolve(found[1]);
      });
      exited.then(([code, signal]) => reject(new Error(`server exited (${code ?? signal}) before listening`)));
    });
    const addr = await deadline(listening, PATIENCE_MS, "the server to log its address");
    const server = new Server(child, exited, addr);
    server.log = async () => {
      await deadline(logWritten, PATIENCE_MS, `${logName} to be written out`);
      return readFileSync(logPath, "utf8");
    };
    return server;
  }

  constructor(child, exited, addr) {
    this.child = child;
    this.exited = exited;
    this.addr = addr;
    this.port = Number(addr.split(":")[1]);
    this.url = `http://${addr}/`;
  }

  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Ctrl-C, as an operator would; resolves to the exit code. */
  async interrupt() {
    this.child.kill("SIGINT");
    const [code, signal] = await deadline(this.exited, PATIENCE_MS, "the server to exit after SIGINT");
    return code ?? signal;
  }
}

function deadline(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// A person at a page.

// Installed into every page before its own script runs: records each state
// the page shows, so that a state that lasted a moment can still be checked.
function recordStates() {
  window.__states = [];
  document.addEventListener("DOMContentLoaded", () => {
    const state = document.getElementById("state");
    const record = () => window.__states.push({ state: state.dataset.state, text: state.textContent });
    record();
    new MutationObserver(record).observe(state, {
      attributes: true,
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
}

// Installed into every page before its own script runs: records everything
// the page's Content-Security-Policy refuses (or would refuse, if it were
// only reported), each as the event describes it.
function recordViolations() {
  window.__violations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const where = e.sourceFile ? ` at ${e.sourceFile}:${e.lineNumber}` : "";
    window.__violations.push(`${e.effectiveDirective} (${e.disposition}) refused ${e.blockedURI || "?"}${where}`);
  });
}

class Person {
  /** Opens the page of `server`, with `fragment` (as `#token=...`) in its address. */
  static async open(browser, server, name, fragment = "") {
    const context = await browser.newContext({ viewport: { width: 760, height: 720 } });
    await context.addInitScript(recordStates);
    await context.addInitScript(recordViolations);
    const page = await context.newPage();
    const person = new Person(name, context, page);
    // What the server sent, by path, as the browser received it.
    page.on("response", (r) => person.responses.set(new URL(r.url()).pathname, r));
    // Anything going wrong inside the page fails the test, as does a request
    // for anything but the server itself (no CDN, fonts or images elsewhere)
    // and anything its Content-Security-Policy refuses: Chromium says so on
    // the console as well as with the event recorded above.
    page.on("pageerror", (e) => person.problems.push(`uncaught error: ${e.message}`));
    page.on("console", (m) => {
      if (/content security policy/i.test(m.text())) person.problems.push(`console: ${m.text()}`);
    });
    page.on("dialog", (d) => {
      person.problems.push(`a ${d.type()} dialog opened: ${d.message()}`);
      d.dismiss().catch(() => {});
    });
    page.on("websocket", (ws) => {
      person.websockets.push(ws.url());
      ws.on("framereceived", ({ payload }) => person.received.push(payload));
    });
    page.on("request", (r) => {
      person.requested.push(new URL(r.url()).pathname);
      if (new URL(r.url()).pathname.startsWith("/rooms/")) person.roomQueries += 1;
      const host = new URL(r.url()).host;
      if (r.url().startsWith("data:") || host === server.addr) return;
      person.problems.push(`request to somewhere else: ${r.url()}`);
    });
    await page.goto(server.url + fragment);
    return person;
  }

  constructor(name, context, page) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.problems = [];
    this.responses = new Map();
    this.websockets = []; // the URL of every WebSocket the page opened
    this.received = []; // every message its WebSockets received, as sent
    this.roomQueries = 0; // requests for /rooms/...
    this.requested = []; // the path of every request the page made, in order
  }

  async join(room, state = "open") {
    await this.page.locator("#name").fill(this.name);
    await this.page.locator("#room").fill(room);
    await this.page.locator("#join-button").click();
    await this.waitForState(state);
  }

  /** Types a token into the form the page shows when the server asks for one. */
  async giveToken(token) {
    await this.page.locator("#token").fill(token);
    await this.page.locator("#token-button").click();
  }

  async stateText() {
    return this.page.locator("#state").textContent();
  }

  async tokenFormShown() {
    return this.page.locator("#token-form").isVisible();
  }

  async storedToken() {
    return this.page.evaluate(() => sessionStorage.getItem("switchboard.token"));
  }

  /** Types a message and presses Enter. */
  async say(text) {
    await this.page.locator("#text").fill(text);
    await this.page.locator("#text").press("Enter");
  }

  /** Types a message and clicks Send. */
  async sayAndClick(text) {
    await this.page.locator("#text").fill(text);
    await this.page.locator("#send-button").click();
  }

  async waitForState(state, timeout = PATIENCE_MS) {
    await this.explain(`state ${state}`, () =>
      this.page.locator(`#state[data-state="${state}"]`).waitFor({ timeout }),
    );
  }

  async waitForMembers(count, timeout = PATIENCE_MS) {
    await this.explain(`${count} connected`, () =>
      this.page.locator(`#members[data-count="${count}"]`).waitFor({ timeout }),
    );
  }

  /** Waits until the log shows `text` from `who`, exactly, and returns that entry's text. */
  async waitForMessage(who, text, timeout = PATIENCE_MS) {
    const entry = await this.explain(`${who}: ${JSON.stringify(text)} in the log`, () =>
      this.page.waitForFunction(
        ([who, text]) =>
          [...document.querySelectorAll("#log li")].find(
            (li) => li.querySelector(".who")?.textContent === who && li.lastChild.textContent === text,
          ),
        [who, text],
        { timeout },
      ),
    );
    return entry.evaluate((li) => li.textContent);
  }

  /** Runs a wait; if it fails, says what this page was waiting for and what it showed. */
  async explain(what, wait) {
    try {
      return await wait();
    } catch (error) {
      const shown = await this.page
        .evaluate(() => ({
          state: document.getElementById("state").textContent,
          members: document.getElementById("members").textContent,
          log: [...document.querySelectorAll("#log li")].map((li) => li.innerHTML),
        }))
        .catch(() => "(the page could not be read)");
      const why = error.message.split("\n")[0];
      const problems = this.problems.length ? `\n  problems: ${this.problems.join("; ")}` : "";
      throw new Error(`${this.name} waited for ${what}: ${why}\n  the page shows ${JSON.stringify(shown)}${problems}`);
    }
  }

  /** Whether the log shows `text` from `who` as this page's own. */
  async isMine(who, text) {
    await this.waitForMessage(who, text);
    return this.page.evaluate(
      ([who, text]) =>
        [...document.querySelectorAll("#log li")]
          .find((li) => li.querySelector(".who")?.textContent === who && li.lastChild.textContent === text)
          .classList.contains("mine"),
      [who, text],
    );
  }

  async messages() {
    return this.page.$$eval("#log li:not(.system)", (items) => items.map((li) => li.textContent));
  }

  async states() {
    return this.page.evaluate(() => window.__states);
  }

  async violations() {
    return this.page.evaluate(() => window.__violations);
  }

  async screenshot(file) {
    await this.page.screenshot({ path: path.join(opts.out, file) });
  }
}

// ---------------------------------------------------------------------------
// The checks. They build on each other, so the first failure ends the run.

let passed = 0;
async function check(description, body) {
  await body();
  passed += 1;
  console.log(`ok ${passed} - ${description}`);
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

const servers = [];
let browser = null;
let people = [];

async function main() {
  const server = await Server.start(0, "server-1.log");
  servers.push(server);
  console.log(`server at ${server.url}`);
  browser = await chromium.launch({ executablePath: opts.chromium, headless: true, args: CHROMIUM_FLAGS });

  const alice = await Person.open(browser, server, "alice");
  const bob = await Person.open(browser, server, "bob");
  const carol = await Person.open(browser, server, "carol");
  people = [alice, bob, carol];

  await check("/ carries a CSP with frame-ancestors 'none', nosniff and X-Frame-Options", async () => {
    const page = alice.responses.get("/");
    assert(page, `alice's page saw the response for /: ${[...alice.responses.keys()]}`);
    const headers = await page.allHeaders();
    const policy = headers["content-security-policy"] ?? "";
    const directives = new Map(
      policy.split(";").map((d) => d.trim().split(/\s+/)).map(([name, ...sources]) => [name, sources.join(" ")]),
    );
    for (const [name, sources] of [
      ["default-src", "'none'"],
      ["script-src", "'self'"],
      ["style-src", "'self'"],
      ["frame-ancestors", "'none'"],
      ["base-uri", "'none'"],
    ]) {
      assert(directives.get(name) === sources, `${name} ${sources} in ${JSON.stringify(policy)}`);
    }
    assert(headers["x-content-type-options"] === "nosniff", `/ nosniff: ${JSON.stringify(headers)}`);
    assert(headers["x-frame-options"] === "DENY", `/ X-Frame-Options: ${JSON.stringify(headers)}`);
    // The script and style sheet the policy allows come from files of their own.
    for (const [file, type] of [
      ["/page.js", "text/javascript; charset=utf-8"],
      ["/page.css", "text/css; charset=utf-8"],
    ]) {
      const response = alice.responses.get(file);
      assert(response?.status() === 200, `${file} loaded: ${response?.status()}`);
      const got = await response.allHeaders();
      assert(got["content-type"] === type, `${file} is ${type}: ${got["content-type"]}`);
      assert(got["x-content-type-options"] === "nosniff", `${file} nosniff: ${JSON.stringify(got)}`);
    }
  });

  // A test that an inline script is refused, and that the two ways this test
  // hears of a violation (the page's event, the console) both work: the
  // check at the end, that there were none, means something.
  await check("the policy is enforced: an inline script added to the page is refused and reported", async () => {
    const probe = await Person.open(browser, server, "probe");
    try {
      const logged = probe.page.waitForEvent("console", {
        predicate: (m) => /content security policy/i.test(m.text()),
        timeout: PATIENCE_MS,
      });
      const ran = await probe.page.evaluate(() => {
        const script = document.createElement("script");
        script.textContent = "window.__injected = true";
        document.body.append(script);
        return window.__injected === true;
      });
      assert(!ran, "an inline script ran on the page");
      await probe.page.waitForFunction(() => window.__violations.length > 0, null, { timeout: PATIENCE_MS });
      const seen = await probe.violations();
      assert(seen.some((v) => v.startsWith("script-src")), `a script-src violation: ${JSON.stringify(seen)}`);
      await logged;
    } finally {
      await probe.context.close();
    }
  });

  await check("no other page can frame the chat page", async () => {
    const context = await browser.newContext();
    try {
      const framer = await context.newPage();
      const refused = framer.waitForEvent("console", {
        predicate: (m) => /frame-ancestors/.test(m.text()),
        timeout: PATIENCE_MS,
      });
      await framer.setContent(`<iframe src="${server.url}"></iframe>`);
      await refused;
      const framed = framer.frames().find((f) => f !== framer.mainFrame());
      const shown = await framed.locator("#join").count().catch(() => 0);
      assert(shown === 0, `the framed page shows its join form (${framed.url()})`);
    } finally {
      await context.close();
    }
  });

  // A browser resolves the dot segments of /ws/.. and /ws/. before sending,
  // so a page that tried would ask for / or /ws/ and retry for ever.
  await check("a room named . or .. is refused by the page, which connects nowhere", async () => {
    const dots = await Person.open(browser, server, "dots");
    try {
      const refusals = dots.page.locator("#log li.system", { hasText: "a room cannot be called “.” or “..”" });
      for (const [i, room] of [".", ".."].entries()) {
        await dots.page.locator("#name").fill(dots.name);
        await dots.page.locator("#room").fill(room);
        await dots.page.locator("#join-button").click();
        await dots.explain(`the refusal of ${JSON.stringify(room)}`, () =>
          refusals.nth(i).waitFor({ timeout: PATIENCE_MS }),
        );
        const state = await dots.page.locator("#state").getAttribute("data-state");
        assert(state === "idle", `after ${JSON.stringify(room)} the page is ${state}`);
      }
      // A WebSocket the page had opened for a dot room would be listed
      // before the one it opens now, as would its /rooms/ requests.
      await dots.join("dots");
      assert(
        dots.websockets.length === 1 && new URL(dots.websockets[0]).pathname === "/ws/dots",
        `the only WebSocket is the one to /ws/dots: ${JSON.stringify(dots.websockets)}`,
      );
      assert(
        dots.requested.every((p) => !p.startsWith("/rooms/") || p === "/rooms/dots"),
        `the only room asked about is dots: ${JSON.stringify(dots.requested)}`,
      );
      assert((await dots.violations()).length === 0, `the CSP refused: ${await dots.violations()}`);
      assert(dots.problems.length === 0, `dots: ${dots.problems.join("; ")}`);
    } finally {
      await dots.context.close();
    }
  });

  // "café" is sent percent-encoded, in the WebSocket path and in /rooms/ alike:
  // the count of 2 shows that both pages meet in the one room.
  await check("three pages join: alice and bob in café, carol in garden", async () => {
    await alice.join("café");
    await bob.join("café");
    await carol.join("garden");
  });

  await check("the presence count shows 2 in café and 1 in garden", async () => {
    await alice.waitForMembers(2);
    await bob.waitForMembers(2);
    await carol.waitForMembers(1);
  });

  await check("a message typed by alice (Enter) appears for bob and alice, as alice's own on hers only", async () => {
    await alice.say("hello from alice");
    assert(!(await bob.isMine("alice", "hello from alice")), "bob's page shows alice's message as his own");
    assert(await alice.isMine("alice", "hello from alice"), "alice's page does not show her message as her own");
  });

  await check("a message sent by bob (Send button) appears for alice", async () => {
    await bob.sayAndClick("hi alice, bob here");
    await alice.waitForMessage("bob", "hi alice, bob here");
  });

  await check("carol, in another room, does not see café's messages", async () => {
    // The hub hands a message to every member of its room in one step, and
    // each client's queue keeps order. Bob has seen alice's message, so had
    // it gone to carol too, it would be in her queue before her own marker.
    await carol.say("marker from garden");
    await carol.waitForMessage("carol", "marker from garden");
    const seen = await carol.messages();
    assert(seen.length === 1, `carol sees only her own marker, saw ${JSON.stringify(seen)}`);
    const cafe = await alice.messages();
    assert(!cafe.some((m) => m.includes("marker")), `café sees no garden message: ${JSON.stringify(cafe)}`);
  });

  await check("a message containing HTML is shown as literal text", async () => {
    await alice.say(XSS);
    for (const person of [alice, bob]) {
      const shown = await person.waitForMessage("alice", XSS);
      assert(shown === `alice${XSS}`, `${person.name} shows ${JSON.stringify(shown)}`);
      const elements = await person.page.$$eval("#log b, #log script", (found) => found.length);
      assert(elements === 0, `${person.name}'s log has ${elements} <b> or <script> elements`);
      const dialogs = person.problems.filter((p) => p.includes("dialog"));
      assert(dialogs.length === 0, `${person.name}: ${dialogs.join("; ")}`);
    }
  });

  // U+202E (right-to-left override) at the end of a name, left open, would
  // run on into the message after it and show it backwards: "abc" as "cba".
  await check("a bidi control in a sender's name does not reorder the message shown after it", async () => {
    const mallory = await Person.open(browser, server, "mallory\u202e");
    try {
      await mallory.join("bidi");
      await mallory.say("abc");
      await mallory.waitForMessage(mallory.name, "abc");
      const shown = await mallory.page.evaluate(() => {
        const entry = [...document.querySelectorAll("#log li:not(.system)")].at(-1);
        const [name, text] = [entry.querySelector(".who"), entry.lastChild];
        const letters = text.nodeType === Node.TEXT_NODE ? text : text.firstChild;
        const left = (i) => {
          const range = document.createRange();
          range.setStart(letters, i);
          range.setEnd(letters, i + 1);
          return range.getBoundingClientRect().left;
        };
        const isolation = (node) => (node instanceof Element ? getComputedStyle(node).unicodeBidi : "none");
        return {
          lefts: [0, 1, 2].map(left),
          nameEnds: name.getBoundingClientRect().right,
          isolated: [isolation(name), isolation(text)],
        };
      });
      const [a, b, c] = shown.lefts;
      assert(a < b && b < c, `"abc" is drawn left to right, its letters at x = ${shown.lefts}`);
      assert(shown.nameEnds <= a, `the name ends (x = ${shown.nameEnds}) before the text starts (x = ${a})`);
      assert(
        shown.isolated.every((value) => value === "isolate"),
        `the name and the text are each isolated: unicode-bidi ${shown.isolated}`,
      );
      assert((await mallory.violations()).length === 0, `the CSP refused: ${await mallory.violations()}`);
      assert(mallory.problems.length === 0, `mallory: ${mallory.problems.join("; ")}`);
    } finally {
      await mallory.context.close();
    }
  });

  const before = await Promise.all(people.map((p) => p.states().then((s) => s.length)));
  let restarted = null;

  await check("on SIGINT the server exits 0 and every page shows 1001 and reconnecting", async () => {
    const code = await server.interrupt();
    assert(code === 0, `the server exits 0 after SIGINT, got ${code}`);
    for (const [i, person] of people.entries()) {
      // The server is gone, so no page can be open now.
      await person.waitForState("reconnecting");
      const states = (await person.states()).slice(before[i]);
      assert(
        states.some((s) => s.state === "reconnecting" && s.text.includes("closed (1001 server shutting down)")),
        `${person.name} showed the close code and reason: ${JSON.stringify(states.slice(0, 3))}`,
      );
      assert(
        states.some((s) => /reconnecting in \d+ s/.test(s.text)),
        `${person.name} showed when it reconnects: ${JSON.stringify(states.slice(0, 3))}`,
      );
    }
    await alice.screenshot("alice-reconnecting.png");
  });

  await check("after a restart on the same port every page reconnects by itself", async () => {
    restarted = await Server.start(server.port, "server-2.log");
    servers.push(restarted);
    assert(restarted.port === server.port, `same port: ${restarted.port} vs ${server.port}`);
    for (const [i, person] of people.entries()) {
      await person.waitForState("open", RECONNECT_PATIENCE_MS);
      const states = (await person.states()).slice(before[i]).map((s) => s.state);
      const down = states.indexOf("reconnecting");
      assert(down >= 0 && states.indexOf("open", down) > down, `${person.name} went ${states.join(" → ")}`);
    }
    await alice.waitForMembers(2);
    await bob.waitForMembers(2);
    await carol.waitForMembers(1);
  });

  await check("after reconnecting alice and bob can talk again", async () => {
    await bob.say("back again");
    await alice.waitForMessage("bob", "back again");
    await alice.sayAndClick("welcome back");
    await bob.waitForMessage("alice", "welcome back");
  });

  for (const person of people) await person.screenshot(`${person.name}.png`);

  await check("bob leaves: his page shows the server's 1000 and alice's count drops to 1", async () => {
    await bob.page.locator("#leave-button").click();
    await bob.waitForState("closed");
    const shown = await bob.page.locator("#state").textContent();
    assert(shown === "closed (1000 left the room)", `bob's state reads ${JSON.stringify(shown)}`);
    await alice.waitForMembers(1);
  });

  await checkCredentials(people);
  await checkVerifiedNames(people);

  await check("no page had an error, a dialog, a CSP violation, or a request to anywhere else", async () => {
    for (const person of people) {
      const violations = await person.violations();
      assert(violations.length === 0, `${person.name}'s CSP refused: ${violations.join("; ")}`);
      assert(person.problems.length === 0, `${person.name}: ${person.problems.join("; ")}`);
    }
  });
}

// A server that asks for a token: the page asks for one, stops on 401 and
// 403 instead of retrying, and takes a token typed or given in its address.
// Adds its own pages to `everyone`, for the last check.
async function checkCredentials(everyone) {
  const tokens = path.join(opts.out, "tokens");
  writeFileSync(tokens, `${TOKEN}\n`);
  const server = await Server.start(0, "server-credentials-1.log", ["--auth-token-file", tokens]);
  servers.push(server);
  const dave = await Person.open(browser, server, "dave");
  everyone.push(dave);

  await check("with credentials on, joining without a token shows that one is needed, and stops", async () => {
    await dave.join("vault", "refused");
    const shown = await dave.stateText();
    assert(/^this server asks for a token; not retrying$/.test(shown), `dave's state reads ${JSON.stringify(shown)}`);
    assert(await dave.tokenFormShown(), "dave is shown the token form");
    assert(dave.websockets.length === 0, `no WebSocket was tried: ${dave.websockets}`);
    const [queries, states] = [dave.roomQueries, (await dave.states()).length];
    await dave.page.waitForTimeout(NO_RETRY_WINDOW_MS);
    assert(dave.roomQueries === queries, `no retry: ${dave.roomQueries - queries} more /rooms/ requests`);
    assert(dave.websockets.length === 0, `no retry: ${dave.websockets}`);
    const later = (await dave.states()).slice(states);
    assert(later.length === 0, `dave's state stayed put: ${JSON.stringify(later)}`);
    await dave.screenshot("dave-token-asked.png");
  });

  await check("a wrong token typed in is refused with the server's reason, and forgotten", async () => {
    await dave.giveToken("not-the-token");
    await dave.page.waitForFunction(
      () => /refused the token \(invalid credentials\)/.test(document.getElementById("state").textContent),
      null,
      { timeout: PATIENCE_MS },
    );
    await dave.waitForState("refused");
    assert(dave.websockets.length === 0, `no WebSocket was tried: ${dave.websockets}`);
    assert((await dave.storedToken()) === null, "a refused token is not kept");
  });

  await check("the right token typed in joins the room; the WebSocket carries it", async () => {
    await dave.giveToken(TOKEN);
    await dave.waitForState("open");
    assert(!(await dave.tokenFormShown()), "the token form is hidden once open");
    assert(dave.websockets.length === 1, `one WebSocket: ${dave.websockets}`);
    const url = new URL(dave.websockets[0]);
    assert(url.searchParams.get("access_token") === TOKEN, `the token is in ${url.pathname}?…`);
    await dave.waitForMembers(1);
  });

  const erin = await Person.open(browser, server, "erin", `#token=${TOKEN}`);
  everyone.push(erin);

  await check("a token given as #token= in the address is used, and taken out of the address", async () => {
    const address = erin.page.url();
    assert(!address.includes("secret") && !address.includes("#"), `erin's address is ${address}`);
    await erin.join("vault");
    await dave.waitForMembers(2);
    await erin.waitForMembers(2);
    await erin.say("erin, with the token from the address");
    await dave.waitForMessage("erin", "erin, with the token from the address");
  });

  await check("the token lasts as long as the tab: after a reload the page joins without asking", async () => {
    const websockets = erin.websockets.length;
    await erin.page.reload();
    assert(!erin.page.url().includes("#"), `erin's address is ${erin.page.url()}`);
    await erin.join("vault");
    assert(erin.websockets.length === websockets + 1, "erin joined again with the kept token");
  });

  // The operator replaces the token and restarts the server: the pages drop,
  // and when the server is back they are refused for good, rather than
  // retrying every few seconds for ever.
  await check("after a restart with another token, the pages stop on 403 and say why", async () => {
    const before = (await Promise.all([dave, erin].map((p) => p.states()))).map((s) => s.length);
    const code = await server.interrupt();
    assert(code === 0, `the server exits 0 after SIGINT, got ${code}`);
    writeFileSync(tokens, "rotated-secret\n");
    const rotated = await Server.start(server.port, "server-credentials-2.log", ["--auth-token-file", tokens]);
    servers.push(rotated);
    for (const [i, person] of [dave, erin].entries()) {
      await person.waitForState("refused", RECONNECT_PATIENCE_MS);
      const shown = await person.stateText();
      assert(/refused the token \(invalid credentials\)/.test(shown), `${person.name} reads ${JSON.stringify(shown)}`);
      const states = (await person.states()).slice(before[i]).map((s) => s.state);
      assert(states.includes("reconnecting"), `${person.name} went ${states.join(" → ")}`);
      assert(await person.tokenFormShown(), `${person.name} is shown the token form`);
      assert((await person.storedToken()) === null, `${person.name} forgot the refused token`);
    }
    const websockets = erin.websockets.length;
    await erin.page.waitForTimeout(NO_RETRY_WINDOW_MS);
    assert(erin.websockets.length === websockets, "erin does not retry after the 403");
    await erin.screenshot("erin-token-refused.png");

    await erin.giveToken("rotated-secret");
    await erin.waitForState("open");
    await erin.say("back with the new token");
    await erin.waitForMessage("erin", "back with the new token");

    // No upgrade was ever refused: every refusal came to the pages' probes,
    // which the server logs only at debug, so the log has no line per retry.
    // (The first server's: the second came up while the pages were retrying,
    // and one of them may have found it between a failed probe and its
    // WebSocket.)
    const log = await server.log();
    assert(!/refused \d+ upgrade/.test(log), `no refused upgrades in the log:\n${log}`);
  });
}

/** An HS256 JWT with `claims`, signed with JWT_KEY. */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  return `${signed}.${createHmac("sha256", JWT_KEY).update(signed).digest("base64url")}`;
}

// A server that vouches for names with JWTs puts the token's name in place
// of the one typed: a page knows its own messages by what it sent, not by
// the name it typed. Both pages here type "ivy"; one holds a token for
// henry. Adds its pages to `everyone`, for the last check.
async function checkVerifiedNames(everyone) {
  const key = path.join(opts.out, "jwt-key");
  writeFileSync(key, `${JWT_KEY}\n`);
  const server = await Server.start(0, "server-jwt.log", ["--jwt-secret-file", key]);
  servers.push(server);
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const henry = await Person.open(browser, server, "ivy", `#token=${jwt({ sub: "henry", exp })}`);
  const ivy = await Person.open(browser, server, "ivy", `#token=${jwt({ sub: "ivy", exp })}`);
  everyone.push(henry, ivy);

  await check("with JWTs, a page marks as its own what it sent, under the token's name, and nothing else", async () => {
    await henry.join("names");
    await ivy.join("names");
    await henry.waitForMembers(2);
    await henry.say("said by henry");
    assert(await henry.isMine("henry", "said by henry"), "henry's page does not show his message as its own");
    assert(!(await ivy.isMine("henry", "said by henry")), "ivy's page shows henry's message as its own");
    await ivy.say("said by ivy");
    assert(await ivy.isMine("ivy", "said by ivy"), "ivy's page does not show her message as its own");
    assert(!(await henry.isMine("ivy", "said by ivy")), "henry's page, where ivy was typed, shows ivy's as its own");
  });

  await check("a member that copies the id of another's message does not get it shown as theirs", async () => {
    const copied = ivy.received.map((m) => JSON.parse(m)).find((m) => m.text === "said by henry")?.id;
    assert(typeof copied === "string", `ivy received henry's message with an id: ${ivy.received}`);
    // Sent on ivy's own socket, as any client in the room could.
    await ivy.page.evaluate((id) => socket.send(JSON.stringify({ text: "with henry's id", id })), copied);
    assert(!(await henry.isMine("ivy", "with henry's id")), "henry's page takes ivy's copy as its own");
    assert(!(await ivy.isMine("ivy", "with henry's id")), "ivy's page takes a message with henry's id as its own");
  });
}

async function shutdown() {
  if (browser) await browser.close().catch(() => {});
  for (const server of servers) {
    if (server.running) await server.interrupt().catch(() => server.child.kill("SIGKILL"));
  }
}

// The shell script stops this process group with SIGTERM if it is itself
// stopped; close the browser and the servers on the way out.
process.on("SIGTERM", () => {
  shutdown().finally(() => process.exit(143));
});

try {
  await main();
  console.log(`browser-test: ${passed} passed, 0 failed`);
  console.log(`screenshots in ${opts.out}/`);
} catch (error) {
  console.error(`not ok ${passed + 1} - ${error.message}`);
  for (const person of people) {
    await person.screenshot(`${person.name}-failed.png`).catch(() => {});
  }
  console.error(`browser-test: ${passed} passed, 1 failed (screenshots and server logs in ${opts.out}/)`);
  process.exitCode = 1;
} finally {
  await shutdown();
}
