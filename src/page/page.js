"use strict";
// The chat page's script, served at /page.js (see index.html). It joins
// /ws/<room>, where every message goes to everyone in the room (the sender
// included), and asks /rooms/<room> how many are there.
//
// Credentials: a server started with tokens or a JWT key asks for them at
// the upgrade and on /rooms/. A browser cannot put a header on a WebSocket,
// and learns nothing of why an upgrade failed, so before each connection the
// page asks /rooms/<room> with `Authorization: Bearer <token>`, which the
// server answers as it would the upgrade: 401 (no token) or 403 (a token it
// refuses) stop the page, which says so and asks for a token, instead of
// retrying; any other answer, or none, goes on to the WebSocket, which
// carries the token as ?access_token= (the server never logs a query). The
// token comes from the form, or from the page's address as #token=...,
// and is kept in sessionStorage: for this tab, until it closes.
//
// Everything shown is set with textContent, never innerHTML: a message that
// contains HTML is displayed as text, not run.
const $ = (id) => document.getElementById(id);

// Reconnecting: 0.5 s, 1 s, 2 s ... up to 10 s, each scaled by a random 0.75
// to 1.25, so that the tabs of a restarted server do not all return at once.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
// A connection that stayed open this long resets the backoff; one that a
// server accepts and drops at once keeps backing off.
const STABLE_MS = 10000;
const PRESENCE_EVERY_MS = 2000;
// The server's longest room name, in bytes of the path segment.
const MAX_ROOM_BYTES = 128;

let wanted = null;        // { name, room, path, focusOnOpen } while the user wants to be in a room
let socket = null;
let openedAt = 0;
let attempt = 0;          // failed connections in a row
let retryTimer = null;
let countdownTimer = null;
let presenceTimer = null;
let connecting = 0;       // the latest connection attempt, so that a stale one gives up

// Which messages are our own. Not the name: with a JWT the server puts the
// token's name in place of the one typed, and anyone may type any name.
// Each message goes out with a random id, and the server sends every
// message back to its sender too, on the same socket: one that comes back
// with an id we sent, and have not yet seen, is ours. No one else learns an
// id before the server has queued our copy ahead of anything they could
// send in reply, so a copied id arrives after ours, and matches nothing.
let ownIds = new Set();   // sent on the current socket, not yet come back

// The token, if any: see the top of this file.
const TOKEN_KEY = "switchboard.token";
let token = null;

function storedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

function keepToken(value) {
  token = value;
  try {
    if (value === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, value);
  } catch { /* storage refused: the token lasts as long as the page */ }
}

// `#token=...` in the address is kept, then taken out of the address bar, so
// that it is not bookmarked, shared or left on screen. Read by hand, not with
// URLSearchParams, which would read a `+` (as base64 has) as a space.
function takeTokenFromAddress() {
  const parts = location.hash.slice(1).split("&");
  const at = parts.findIndex((part) => part.startsWith("token="));
  if (at < 0) return null;
  const written = parts[at].slice("token=".length);
  let given = written;
  try { given = decodeURIComponent(written); } catch { /* not percent-encoded: as written */ }
  parts.splice(at, 1);
  const rest = parts.filter((part) => part !== "").join("&");
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return given === "" ? null : given;
}

function withToken() {
  return token === null ? {} : { Authorization: `Bearer ${token}` };
}

const tokenInAddress = takeTokenFromAddress();
if (tokenInAddress === null) token = storedToken();
else keepToken(tokenInAddress);

// 128 random bits in hex. crypto.getRandomValues, not randomUUID, which a
// page served over plain http (other than from localhost) does not have.
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function setState(state, text) {
  $("state").dataset.state = state;
  $("state").textContent = text;
  const open = state === "open";
  $("text").disabled = !open;
  $("send-button").disabled = !open;
  $("leave-button").disabled = wanted === null;
}

function show(text, { who = null, mine = false } = {}) {
  const item = document.createElement("li");
  if (who === null) {
    item.className = "system";
    item.textContent = text;
  } else {
    if (mine) item.className = "mine";
    // Each in a <bdi> of its own: a name ending in a bidi control (U+202E
    // and the like) would otherwise reorder the text after it, so that a
    // sender could make their message read as something else.
    const name = document.createElement("bdi");
    name.className = "who";
    name.textContent = who;
    const body = document.createElement("bdi");
    body.className = "text";
    body.textContent = text;
    item.append(name, body);
  }
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function showMembers(count) {
  $("members").dataset.count = count === null ? "" : String(count);
  $("members").textContent =
    wanted === null ? "no room" : count === null ? "who is here: ?" : `${count} connected`;
}

// Presence: asked on open, every PRESENCE_EVERY_MS while open, and on close.
// Only the latest question's answer is shown, and only while the user is
// still in the room it was about.
let presenceAsked = 0;
async function refreshMembers() {
  const asked = wanted;
  if (asked === null) return;
  const ticket = ++presenceAsked;
  const current = () => ticket === presenceAsked && wanted === asked;
  try {
    const reply = await fetch(`/rooms/${asked.path}`, { cache: "no-store", headers: withToken() });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    const { members } = await reply.json();
    if (current()) showMembers(Number.isInteger(members) ? members : null);
  } catch {
    if (current()) showMembers(null);
  }
}

function stopTimers() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  clearInterval(presenceTimer);
  retryTimer = countdownTimer = presenceTimer = null;
}

function describeClose(event) {
  return `closed (${event.code}${event.reason ? " " + event.reason : ""})`;
}

// What the server says of the token, asked before each connection: the
// status and reason of a 401 or 403, or null to go on and connect (the
// room is open to us, or the server did not say: the WebSocket will tell).
async function credentialsRefused(path) {
  try {
    const reply = await fetch(`/rooms/${path}`, { cache: "no-store", headers: withToken() });
    if (reply.status !== 401 && reply.status !== 403) return null;
    const reason = (await reply.text()).trim().slice(0, 200);
    return { status: reply.status, reason };
  } catch {
    return null;
  }
}

async function connect() {
  const here = wanted;
  const ticket = ++connecting;
  setState("connecting", `connecting to “${here.room}”…`);
  const refused = await credentialsRefused(here.path);
  if (ticket !== connecting || wanted !== here) return; // the user left or moved on meanwhile
  if (refused !== null) {
    giveUp(refused);
    return;
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token === null ? "" : `?access_token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(`${scheme}//${location.host}/ws/${here.path}${query}`);
  socket = ws;
  ownIds = new Set(); // what went out on an earlier socket never comes back on this one
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    openedAt = Date.now();
    setState("open", `open: room “${here.room}”`);
    $("token-form").hidden = true;
    show(`connected to “${here.room}”`);
    // Once per join, move to the message box; a later reconnect leaves the focus alone.
    if (here.focusOnOpen) { here.focusOnOpen = false; $("text").focus(); }
    refreshMembers();
    presenceTimer = setInterval(refreshMembers, PRESENCE_EVERY_MS);
  };
  ws.onmessage = (event) => receive(event.data);
  ws.onclose = (event) => {
    if (socket !== ws) return; // a room the user has switched away from
    socket = null;
    stopTimers();
    const why = describeClose(event);
    if (openedAt !== 0) show(`connection ${why}`);
    if (openedAt !== 0 && Date.now() - openedAt >= STABLE_MS) attempt = 0;
    openedAt = 0;
    if (wanted === null) {
      setState("closed", why); // the user left: the server's answer to our close
      return;
    }
    refreshMembers();
    scheduleReconnect(why);
  };
}

// The server will not take us without a (different) token: no retrying,
// which would only be refused again. Says why, and asks for a token.
function giveUp({ status, reason }) {
  stopTimers();
  attempt = 0;
  let why;
  if (status === 401) {
    why = "this server asks for a token";
  } else {
    why = `the server refused the token${reason ? ` (${reason})` : ""}`;
    keepToken(null); // of no use again
  }
  setState("refused", `${why}; not retrying`);
  show(`${why}; enter a token below to join “${wanted.room}”`);
  showMembers(null);
  $("token-form").hidden = false;
  $("token").focus();
}

function scheduleReconnect(why) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  const delay = base * (0.75 + Math.random() / 2);
  attempt += 1;
  const due = Date.now() + delay;
  const countdown = () => {
    const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
    setState("reconnecting", `${why}; reconnecting in ${seconds} s`);
  };
  countdown();
  countdownTimer = setInterval(countdown, 250);
  retryTimer = setTimeout(() => {
    clearInterval(countdownTimer);
    connect();
  }, delay);
}

function receive(data) {
  if (typeof data !== "string") {
    show(`(a binary message of ${data.byteLength} bytes)`);
    return;
  }
  let message = null;
  try { message = JSON.parse(data); } catch { /* not ours: shown as it came */ }
  if (message === null || typeof message !== "object") {
    show(data, { who: "?" });
    return;
  }
  const who = typeof message.name === "string" ? message.name : "?";
  const text = typeof message.text === "string" ? message.text : JSON.stringify(message.text ?? "");
  const mine = typeof message.id === "string" && ownIds.delete(message.id);
  show(text, { who, mine });
}


$("join").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim() || "anonymous";
  const room = $("room").value.trim() || "lobby";
  // The server takes the path segment as written; encoding it here means two
  // tabs that type the same room meet, whatever characters it has.
  const path = encodeURIComponent(room);
  if (path.length > MAX_ROOM_BYTES) {
    show(`the room name is too long (at most ${MAX_ROOM_BYTES} bytes once encoded)`);
    return;
  }
  // encodeURIComponent leaves dots alone, and a browser resolves /ws/.. to /
  // and /ws/. to /ws/ before sending: the page would retry for ever against
  // a 404. %2E would not help: a browser resolves it as a dot too, and the
  // server, which takes the segment as written, would see another room.
  if (path === "." || path === "..") {
    show("a room cannot be called “.” or “..”: in an address they are steps in the path, not names");
    return;
  }
  stopTimers();
  if (socket !== null) {
    const old = socket;
    socket = null;
    old.close(1000, "switching rooms");
  }
  openedAt = 0;
  wanted = { name, room, path, focusOnOpen: true };
  attempt = 0;
  $("log").replaceChildren();
  show(`joining “${room}” as ${name}`);
  showMembers(null);
  connect();
});

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const given = $("token").value.trim();
  if (given === "") return;
  keepToken(given);
  $("token").value = "";
  $("token-form").hidden = true;
  // Join the room the server turned us away from, this time with the token.
  if (wanted !== null && socket === null) {
    stopTimers();
    attempt = 0;
    wanted.focusOnOpen = true;
    show(`joining “${wanted.room}” with the token given`);
    connect();
  }
});

$("leave-button").addEventListener("click", () => {
  wanted = null;
  connecting += 1;
  stopTimers();
  showMembers(null);
  if (socket === null) {
    setState("idle", "not connected");
  } else {
    // The close handler shows how the server answered.
    setState("closing", "closing…");
    socket.close(1000, "left the room");
  }
});

$("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (text === "" || socket === null || socket.readyState !== WebSocket.OPEN) return;
  const id = randomId();
  ownIds.add(id);
  socket.send(JSON.stringify({ name: wanted.name, text, id }));
  $("text").value = "";
});
