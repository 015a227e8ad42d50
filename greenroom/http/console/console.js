// greenroom console: plain JavaScript, no build step, nothing fetched from elsewhere.
//
// Everything on the page comes from the v1 API. The token the user types is kept in this
// tab's sessionStorage and sent only in the Authorization header; an event stream
// (EventSource cannot send headers) is opened with a short-lived ticket for its session.
"use strict";

const API = new URL("../", document.baseURI); // the page is served at <root>/console/
const TOKEN_KEY = "greenroom.token";
const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out", "interrupted"]);
const STREAM_EVENTS = [
  "task.queued", "task.started", "task.completed",
  "message.delta", "message.completed", "stream.gap",
];

// Measured by the page, per task.completed event: when its SSE message reached the
// handler (performance.now()), how long until its row showed the status (dom_ms), until
// the next animation frame (frame_ms), and since the task's finished_at (server clock).
window.greenroomTimings = [];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  sid: null,
  generation: 0, // bumped on each session switch: answers for an earlier one are dropped
  snapshotSeq: 0, // the session's last seq when it was opened: older events are replays
  tasks: new Map(), // task id -> {id, task, prompt, events, history, row, storyRow}
  results: new Map(), // seq -> li
  acked: 0,
  lastSeq: 0,
  seen: new Set(), // event seqs already applied (replays after a reconnect)
  messageSeqs: new Set(), // assistant messages already shown
  turn: null, // {turnId, li} of the foreground turn being streamed
  source: null,
  retryTimer: null,
  retryDelayMs: 1000,
  sessionsAfter: null,
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// --- the API --------------------------------------------------------------------------

async function api(method, path, body, headers = {}) {
  const all = { Accept: "application/json", ...headers };
  if (state.token) all.Authorization = "Bearer " + state.token;
  const init = { method, headers: all, cache: "no-store" };
  if (body !== undefined) {
    all["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(new URL(path, API), init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || { code: "http_" + response.status, message: response.statusText };
    if (response.status === 401) needToken(state.token ? "The server refused that token." : null);
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

const sessionPath = (sid) => "v1/sessions/" + encodeURIComponent(sid);

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return String(Date.now()) + "-" + String(Math.random()).slice(2);
}

// --- small formatters -----------------------------------------------------------------

const short = (id) => (id && id.length > 14 ? id.slice(0, 12) + "…" : id || "—");
const label = (status) => (status || "").replace("_", " ");
const rank = (status) => (status === "queued" ? 0 : status === "running" ? 1 : 2);

function clock(ts) {
  if (typeof ts !== "number") return "";
  const d = new Date(ts * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function took(task) {
  if (typeof task.finished_at !== "number" || typeof task.started_at !== "number") return "";
  const s = Math.max(0, task.finished_at - task.started_at);
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

// --- notices and the token ------------------------------------------------------------

function notice(message) {
  $("notice").hidden = !message;
  $("notice").textContent = message || "";
}

function report(error) {
  if (error instanceof ApiError && error.status === 401) return; // the token form says it
  notice(error && error.message ? error.message : String(error));
}

function needToken(message) {
  $("token-form").hidden = false;
  $("token-set").hidden = true;
  notice(message);
  closeStream();
  $("token-input").focus();
}

function tokenAccepted() {
  $("token-form").hidden = true;
  $("token-set").hidden = !state.token;
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  notice(null);
  loadSessions(true).catch(report);
  if (state.sid) selectSession(state.sid);
});

$("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  needToken(null);
});

// --- sessions -------------------------------------------------------------------------

async function loadSessions(reset) {
  const query = new URLSearchParams({ limit: "20" });
  if (!reset && state.sessionsAfter) query.set("after", state.sessionsAfter);
  const page = await api("GET", "v1/sessions?" + query);
  tokenAccepted();
  if (reset) $("sessions").replaceChildren();
  for (const session of page.sessions) $("sessions").append(sessionItem(session));
  state.sessionsAfter = page.next_after;
  $("more-sessions").hidden = !page.has_more;
}

function sessionItem(session) {
  const when = new Date(session.created_at * 1000).toLocaleString();
  const item = el(
    "li",
    { "data-session-id": session.id, tabindex: "0", title: session.id },
    el("code", { text: session.id }),
    el("span", { class: "when", text: `${session.agent} · ${when}` }),
  );
  item.addEventListener("click", () => selectSession(session.id));
  item.addEventListener("keydown", (event) => {
    if (event.key === "Enter") selectSession(session.id);
  });
  if (session.id === state.sid) item.setAttribute("aria-current", "true");
  return item;
}

$("more-sessions").addEventListener("click", () => loadSessions(false).catch(report));

$("new-session").addEventListener("click", async () => {
  try {
    const session = await api("POST", "v1/sessions", {});
    $("sessions").prepend(sessionItem(session));
    await selectSession(session.id);
  } catch (error) {
    report(error);
  }
});

async function selectSession(sid) {
  closeStream();
  const generation = ++state.generation;
  Object.assign(state, {
    sid, tasks: new Map(), results: new Map(), acked: 0, lastSeq: 0, snapshotSeq: 0,
    seen: new Set(), messageSeqs: new Set(), turn: null, retryDelayMs: 1000,
  });
  for (const item of $("sessions").children) {
    item.setAttribute("aria-current", String(item.dataset.sessionId === sid));
  }
  $("empty").hidden = true;
  $("session").hidden = false;
  $("session-title").textContent = sid;
  $("session-agent").textContent = "";
  for (const id of ["tasks", "results", "messages"]) $(id).replaceChildren();
  refreshEmpties();
  try {
    const info = await api("GET", sessionPath(sid));
    if (generation !== state.generation) return;
    $("session-agent").textContent = "agent " + info.agent;
    state.acked = info.acked_up_to;
    state.snapshotSeq = info.last_seq;
    const [tasks, results, messages] = await Promise.all([
      api("GET", sessionPath(sid) + "/tasks"),
      api("GET", `${sessionPath(sid)}/results?after=${info.acked_up_to}&limit=1000`),
      api("GET", sessionPath(sid) + "/messages"),
    ]);
    if (generation !== state.generation) return;
    for (const task of tasks.tasks) upsertTask(task, null);
    for (const result of results.results) addResult(result);
    for (const message of messages.messages) {
      if (message.seq !== null) state.messageSeqs.add(message.seq);
      addMessage(message.role, message.content);
    }
    showAcked();
    // From the first event: the replay gives each task its story; later states win.
    await openStream(generation, 0);
  } catch (error) {
    report(error);
  }
}

// --- the event stream -----------------------------------------------------------------

function setStream(streamState, text) {
  $("stream-state").dataset.state = streamState;
  $("stream-state").textContent = text;
}

function closeStream() {
  clearTimeout(state.retryTimer);
  if (state.source) state.source.close();
  state.source = null;
  setStream("closed", "stream closed");
}

async function openStream(generation, after) {
  setStream("connecting", "connecting…");
  const url = new URL(sessionPath(state.sid) + "/events", API);
  url.searchParams.set("after", String(after));
  if (state.token) {
    // A ticket for this session's stream, valid for a minute; never the token itself.
    const ticket = await api("POST", sessionPath(state.sid) + "/events/ticket");
    url.searchParams.set("ticket", ticket.ticket);
  }
  if (generation !== state.generation) return;
  const source = new EventSource(url);
  state.source = source;
  source.onopen = () => {
    state.retryDelayMs = 1000;
    setStream("open", "live");
  };
  source.onerror = () => reconnect(source, generation);
  for (const type of STREAM_EVENTS) {
    source.addEventListener(type, (event) => onEvent(type, event));
  }
  // The server ends the stream after these; resume from the last event seen.
  source.addEventListener("reset", () => reconnect(source, generation));
  source.addEventListener("shutdown", () => reconnect(source, generation));
}

function reconnect(source, generation) {
  if (state.source !== source) return;
  source.close();
  state.source = null;
  setStream("connecting", "reconnecting…");
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(() => {
    if (generation !== state.generation) return;
    openStream(generation, state.lastSeq).catch((error) => {
      report(error);
      if (!(error instanceof ApiError && error.status === 401)) reconnect(null, generation);
    });
  }, state.retryDelayMs);
  state.retryDelayMs = Math.min(state.retryDelayMs * 2, 15000);
}

function onEvent(type, event) {
  const arrived = performance.now();
  let data;
  try {
    data = JSON.parse(event.data);
  } catch {
    return;
  }
  if (typeof data.seq === "number") {
    if (state.seen.has(data.seq)) return;
    state.seen.add(data.seq);
    state.lastSeq = Math.max(state.lastSeq, data.seq);
  }
  const story = { type, seq: data.seq, data };
  if (type === "task.queued" || type === "task.started") {
    upsertTask(data.task, story);
  } else if (type === "task.completed") {
    onCompleted(data, story, arrived);
  } else if (type === "message.delta") {
    turnItem(data.turn_id).append(data.content);
  } else if (type === "message.completed") {
    onTurnDone(data);
  } else if (type === "stream.gap") {
    notice(`Older events were pruned (${data.message}); task stories may be partial.`);
  }
}

function onCompleted(data, story, arrived) {
  const entry = upsertTask(
    {
      id: data.task_id, status: data.status, content: data.content, error: data.error,
      started_at: data.started_at, finished_at: data.finished_at, seq: data.seq,
    },
    story,
  );
  addResult(data);
  const shown = performance.now();
  requestAnimationFrame(() => {
    window.greenroomTimings.push({
      task_id: data.task_id,
      status: entry.row.dataset.status,
      replayed: data.seq <= state.snapshotSeq,
      arrived_ms: arrived,
      dom_ms: shown - arrived,
      frame_ms: performance.now() - arrived,
      since_finished_ms: Date.now() - data.finished_at * 1000,
    });
  });
}

// --- tasks ----------------------------------------------------------------------------

function upsertTask(task, story) {
  let entry = state.tasks.get(task.id);
  if (!entry) {
    entry = { id: task.id, task: { ...task }, prompt: null, events: [], history: [], row: null, storyRow: null };
    state.tasks.set(task.id, entry);
    entry.row = taskRow(entry);
    $("tasks").prepend(entry.row);
  } else if (rank(task.status) >= rank(entry.task.status) || (story && story.data.requeued)) {
    // A state never goes back (a replayed event is older than the listing), except a
    // task queued again after a restart.
    entry.task = { ...entry.task, ...task };
  }
  if (story && !entry.events.some((known) => known.seq === story.seq)) {
    entry.events.push(story);
    entry.events.sort((a, b) => a.seq - b.seq);
  }
  renderTask(entry);
  return entry;
}

function taskRow(entry) {
  const cancel = el("button", { type: "button", class: "small danger", "data-action": "cancel", text: "Cancel" });
  cancel.addEventListener("click", () => cancelTask(entry, cancel));
  const storyButton = el("button", { type: "button", class: "small secondary", "data-action": "story", text: "Story" });
  storyButton.addEventListener("click", () => toggleStory(entry));
  return el(
    "tr",
    { "data-task-id": entry.id },
    el("td", {}, el("code", { text: short(entry.id), title: entry.id }), el("div", { class: "prompt-line" })),
    el("td", { class: "kind" }),
    el("td", { class: "agent" }),
    el("td", {}, el("span", { class: "status" })),
    el("td", { class: "took" }),
    el("td", { class: "actions" }, cancel, storyButton),
  );
}

function renderTask(entry) {
  const { task, row } = entry;
  const status = row.querySelector(".status");
  status.dataset.status = task.status;
  status.textContent = label(task.status);
  row.dataset.status = task.status;
  if (entry.history[entry.history.length - 1] !== task.status) {
    entry.history.push(task.status);
    row.dataset.history = entry.history.join(" ");
  }
  row.querySelector(".kind").textContent = task.kind || "—";
  row.querySelector(".agent").textContent = task.agent || "—";
  row.querySelector(".took").textContent = took(task);
  row.querySelector(".prompt-line").textContent = entry.prompt || "";
  row.querySelector("[data-action=cancel]").hidden = TERMINAL.has(task.status);
  if (entry.storyRow) renderStory(entry);
  refreshEmpties();
}

async function cancelTask(entry, button) {
  button.disabled = true;
  try {
    const task = await api("POST", `${sessionPath(state.sid)}/tasks/${encodeURIComponent(entry.id)}/cancel`);
    upsertTask(task, null);
  } catch (error) {
    report(error);
  } finally {
    button.disabled = false;
  }
}

function toggleStory(entry) {
  if (entry.storyRow) {
    entry.storyRow.remove();
    entry.storyRow = null;
    return;
  }
  entry.storyRow = el("tr", { class: "story", "data-story-for": entry.id }, el("td", { colspan: "6" }));
  entry.row.after(entry.storyRow);
  renderStory(entry);
}

function storyLine(story) {
  const data = story.data;
  let what = story.type;
  let when = "";
  if (story.type === "task.queued") {
    what += data.requeued ? " (queued again after a restart)" : "";
    when = clock(data.task.created_at);
  } else if (story.type === "task.started") {
    what += ` (attempt ${data.task.attempt})`;
    when = clock(data.task.started_at);
  } else if (story.type === "task.completed") {
    what += `: ${label(data.status)}`;
    when = clock(data.finished_at);
  }
  return el("li", { "data-event": story.type }, el("code", { text: `#${story.seq}` }), ` ${when}  ${what}`);
}

function renderStory(entry) {
  const { task } = entry;
  const cell = entry.storyRow.firstChild;
  const lines = el("ol", { class: "events" }, ...entry.events.map(storyLine));
  const parts = [el("div", { class: "muted", text: `task ${task.id}` + (entry.prompt ? ` — ${entry.prompt}` : "") })];
  parts.push(entry.events.length ? lines : el("div", { class: "muted", text: `no events seen; it is ${label(task.status)}` }));
  if (task.error) {
    parts.push(el("div", { class: "error", "data-error": task.error.type, text: `${task.error.type}: ${task.error.message}` }));
  } else if (typeof task.content === "string") {
    parts.push(el("div", { class: "content", text: task.content }));
  }
  cell.replaceChildren(...parts);
}

// --- results --------------------------------------------------------------------------

function addResult(result) {
  if (result.seq <= state.acked || state.results.has(result.seq)) return;
  const ack = el("button", { type: "button", class: "small secondary", "data-action": "ack", text: "Ack up to here" });
  ack.addEventListener("click", () => acknowledge(result.seq, ack));
  const body = result.error ? `${result.error.type}: ${result.error.message}` : result.content;
  const item = el(
    "li",
    { "data-seq": String(result.seq), "data-task-id": result.task_id },
    el("span", { class: "status", "data-status": result.status, text: label(result.status) }),
    el("code", { text: `#${result.seq} ${short(result.task_id)}`, title: result.task_id }),
    ack,
    el("div", { class: result.error ? "body error" : "body", text: body }),
  );
  const later = [...$("results").children].find((other) => Number(other.dataset.seq) > result.seq);
  $("results").insertBefore(item, later || null);
  state.results.set(result.seq, item);
  refreshEmpties();
}

async function acknowledge(upTo, button) {
  button.disabled = true;
  try {
    const answer = await api("POST", sessionPath(state.sid) + "/results/ack", { up_to: upTo });
    state.acked = Math.max(state.acked, answer.acked_up_to);
    for (const [seq, item] of state.results) {
      if (seq <= state.acked) {
        item.remove();
        state.results.delete(seq);
      }
    }
    showAcked();
  } catch (error) {
    report(error);
    button.disabled = false;
  }
}

function showAcked() {
  $("acked").textContent = state.acked ? `acknowledged up to #${state.acked}` : "";
  refreshEmpties();
}

function refreshEmpties() {
  $("no-tasks").hidden = state.tasks.size > 0;
  $("no-results").hidden = state.results.size > 0;
  $("no-messages").hidden = $("messages").children.length > 0;
  const counts = {};
  for (const { task } of state.tasks.values()) counts[task.status] = (counts[task.status] || 0) + 1;
  $("task-counts").textContent = Object.entries(counts).map(([s, n]) => `${n} ${label(s)}`).join(" · ");
}

// --- the conversation -----------------------------------------------------------------

function addMessage(role, content) {
  const item = el("li", { "data-role": role }, el("span", { class: "role", text: role }), content);
  $("messages").append(item);
  refreshEmpties();
  return item;
}

function turnItem(turnId) {
  if (!state.turn || state.turn.turnId !== turnId) {
    state.turn = { turnId, item: addMessage("assistant", "") };
  }
  return state.turn.item;
}

function onTurnDone(data) {
  const message = data.message;
  if (message && state.messageSeqs.has(message.seq)) return; // in the transcript already
  const item = turnItem(data.turn_id);
  if (data.status === "completed") {
    item.replaceChildren(el("span", { class: "role", text: "assistant" }), message.content);
    state.messageSeqs.add(message.seq);
  } else {
    item.dataset.role = "error";
    item.replaceChildren(el("span", { class: "role", text: "turn failed" }), `${data.error.type}: ${data.error.message}`);
  }
  state.turn = null;
}

// --- the work form --------------------------------------------------------------------

$("work-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = $("prompt").value;
  if (!prompt.trim() || !state.sid) return;
  $("start-task").disabled = true;
  try {
    const task = await api(
      "POST", sessionPath(state.sid) + "/tasks", { prompt, kind: $("kind").value },
      { "Idempotency-Key": newKey() },
    );
    const entry = upsertTask(task, null);
    entry.prompt = prompt;
    renderTask(entry);
    $("prompt").value = "";
  } catch (error) {
    report(error);
  } finally {
    $("start-task").disabled = false;
  }
});

$("send-message").addEventListener("click", async () => {
  const content = $("prompt").value;
  if (!content.trim() || !state.sid) return;
  $("send-message").disabled = true;
  const mine = addMessage("user", content); // before the answer's first chunk can arrive
  try {
    // The answer streams in on the event stream (message.delta, then message.completed).
    await api("POST", sessionPath(state.sid) + "/messages", { content });
    $("prompt").value = "";
  } catch (error) {
    mine.remove();
    refreshEmpties();
    report(error);
  } finally {
    $("send-message").disabled = false;
  }
});

loadSessions(true).catch(report);
