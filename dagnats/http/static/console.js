// dagnats console: live updates (SSE or polling) and the actions' API calls. No build step.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf"]').content;
const TERMINAL = new Set(["workflow.completed", "workflow.failed", "workflow.cancelled",
  "workflow.compensated", "workflow.compensate_failed"]);

// One API call with the CSRF header; resolves to [ok, parsed body].
async function api(method, url, body) {
  const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch(url, init);
  let data = null;
  try { data = await reply.json(); } catch (_) { /* no body */ }
  return [reply.ok, data];
}

function flash(text, bad) {
  let box = document.getElementById("flash");
  if (!box) {
    box = document.createElement("div");
    box.id = "flash";
    box.setAttribute("role", "status");
    document.querySelector("main").prepend(box);
  }
  box.textContent = text;
  box.className = bad ? "bad" : "good";
}

// What a person was doing in the live part survives its refresh: typed values, the focus,
// opened details.
const fieldKey = (el) => {
  const form = el.closest("form");
  return form ? `${form.className}/${form.dataset.kind || ""}/${el.name}` : null;
};
const detailsKey = (d) => d.querySelector("summary")?.textContent;
function replaceKeeping(box, html) {
  const typed = new Map([...box.querySelectorAll("form [name]")]
    .map((el) => [fieldKey(el), el.value]));
  const focused = box.contains(document.activeElement) ? fieldKey(document.activeElement) : null;
  const opened = new Set([...box.querySelectorAll("details[open]")].map(detailsKey));
  box.innerHTML = html;
  box.querySelectorAll("form [name]").forEach((el) => {
    const key = fieldKey(el);
    if (typed.has(key)) el.value = typed.get(key);
    if (key === focused) el.focus();
  });
  box.querySelectorAll("details").forEach((d) => { if (opened.has(detailsKey(d))) d.open = true; });
}

// The live part: fetched again when something changes, one fetch at a time.
const live = document.getElementById("live");
let fetching = false, again = false;
async function refresh() {
  if (!live) return;
  if (fetching) { again = true; return; }
  fetching = true;
  try {
    const reply = await fetch(live.dataset.fragment, { credentials: "same-origin" });
    if (reply.ok) replaceKeeping(live, await reply.text());
  } finally {
    fetching = false;
    if (again) { again = false; refresh(); }
  }
}

function eventRow(event) {
  const row = document.createElement("tr");
  row.dataset.seq = event.seq;
  const data = Object.assign({}, event.data);
  delete data.definition;
  const cells = [String(event.seq), new Date(event.timestamp).toISOString(),
    null, event.step_id || "", event.attempt ? String(event.attempt) : ""];
  cells.forEach((text, i) => {
    const cell = document.createElement("td");
    if (i === 1) cell.className = "mono";
    if (text === null) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = event.type;
      const pre = document.createElement("pre");
      pre.textContent = JSON.stringify(data, null, 2);
      details.append(summary, pre);
      cell.append(details);
    } else {
      cell.textContent = text;
    }
    row.append(cell);
  });
  return row;
}

function follow(url) {
  const source = new EventSource(url);
  const table = document.getElementById("events");
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    if (table && Number(table.dataset.shown) < Number(table.dataset.max)
        && !table.querySelector(`tr[data-seq="${event.seq}"]`)) {
      table.append(eventRow(event));
      table.dataset.shown = Number(table.dataset.shown) + 1;
    }
    refresh();
    if (TERMINAL.has(event.type)) source.close();
  };
  ["workflow.started", "workflow.completed", "workflow.failed", "workflow.cancelled",
    "workflow.resumed", "workflow.compensating", "workflow.compensated",
    "workflow.compensate_failed", "step.queued", "step.waiting", "step.started",
    "step.completed", "step.failed", "step.recovered", "step.skipped", "step.iterated",
    "step.planned", "step.expanded", "timer.fired", "signal.sent"]
    .forEach((type) => source.addEventListener(type, onEvent));
  source.addEventListener("changed", () => refresh());  // a list: some run changed
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) refresh();
  });
}

if (live && live.dataset.sse) follow(live.dataset.sse);
if (live && live.dataset.poll) {
  setInterval(() => { if (!document.hidden) refresh(); }, Number(live.dataset.poll));
}

// Buttons with data-url: confirm, call, say what happened.
document.addEventListener("click", async (click) => {
  const button = click.target.closest("button[data-url]");
  if (!button) return;
  if (!window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
  const [ok, data] = await api(button.dataset.method, button.dataset.url, body);
  button.disabled = false;
  if (!ok) { flash((data && data.detail) || "The call failed.", true); return; }
  if (button.dataset.then === "goto-run" && data && data.run_id) {
    window.location = "/runs/" + data.run_id;
    return;
  }
  flash(button.textContent.trim() + ": done" + (data && data.status ? ` (${data.status})` : ""),
    false);
  if (live) refresh(); else window.location.reload();
});

// JSON typed by hand: parse it, or say where it is wrong.
function parsed(text, what) {
  if (!text.trim()) return [true, null];
  try { return [true, JSON.parse(text)]; } catch (error) {
    return [false, `${what} is not valid JSON: ${error.message}`];
  }
}

// The start form: the input is checked as it is typed, and sent only when it is valid JSON.
const start = document.getElementById("start-run");
if (start) {
  const input = document.getElementById("run-input");
  const problem = document.getElementById("input-error");
  const submit = start.querySelector("button[type=submit]");
  const check = () => {
    const [ok, value] = parsed(input.value, "The input");
    problem.textContent = ok ? "" : value;
    submit.disabled = !ok;
    input.setAttribute("aria-invalid", String(!ok));
    return ok ? [true, value] : [false, null];
  };
  input.addEventListener("input", check);
  start.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const [ok, value] = check();
    if (!ok) return;
    submit.disabled = true;
    const [started, data] = await api("POST", "/api/v1/runs", {
      workflow: start.dataset.workflow, version: start.dataset.version, input: value });
    submit.disabled = false;
    if (started) window.location = "/runs/" + data.run_id;
    else problem.textContent = (data && data.detail) || "The run did not start.";
  });
}

// Signal and event forms on a run's page.
document.addEventListener("submit", async (submitted) => {
  const form = submitted.target.closest("form.send");
  if (!form) return;
  submitted.preventDefault();
  const name = form.elements.name.value.trim();
  const [ok, value] = parsed(form.elements.value.value, "The value");
  if (!ok) { flash(value, true); return; }
  const what = form.dataset.kind === "signal" ? `signal ${name}` : `event ${name}`;
  if (!window.confirm(`Send ${what}?`)) return;
  const body = form.dataset.kind === "signal" ? { value } : { data: value };
  const [sent, data] = await api("POST", form.dataset.url + encodeURIComponent(name), body);
  flash(sent ? `Sent ${what}.` : (data && data.detail) || "Not sent.", !sent);
  if (sent) form.reset();
});

// Rerun with a new input (a run's page): the input is checked, then a new run starts.
document.addEventListener("submit", async (submitted) => {
  const form = submitted.target.closest("form.rerun");
  if (!form) return;
  submitted.preventDefault();
  const problem = form.querySelector(".err");
  const [ok, value] = parsed(form.elements.input.value, "The input");
  problem.textContent = ok ? "" : value;
  if (!ok || !window.confirm("Start a new run with this input?")) return;
  const [started, data] = await api("POST", form.dataset.url, { input: value });
  if (started) window.location = "/runs/" + data.run_id;
  else problem.textContent = (data && data.detail) || "The run did not start.";
});
