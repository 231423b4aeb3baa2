// The order dashboard of `hook-processor serve` (hook_processor/service/dashboard.py): the orders,
// one order's items and logs, the cancel button, the workflows; refreshed while something runs.
//
// Plain JavaScript modules, no build step, no library: api.js calls the service's own OData API
// with a Bearer token, dom.js builds the page with createElement/textContent only. Order names,
// StatusMessages and logs are the users' text: none of it is ever parsed as HTML.
import { ApiError, AuthNeeded, TOKEN_PATH, api, apiJSON, detailOf, forget, logIn, session } from "./api.js";
import { el, safeLink, setStatus, setText, setTime, sizeText, statusBadge, statusWord, syncRows, timeText } from "./dom.js";

const PAGE = 20;
const BUSY_EVERY = 1500; // ms between refreshes while something runs
const IDLE_EVERY = 5000; // ms between refreshes otherwise (new orders still appear)
const FINISHED = new Set(["completed", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const state = {
  skip: 0,
  selected: null, // the order shown below the list (from location.hash: #order=ID)
  logItem: null, // the item whose log is shown
  logFinal: false, // its log was read after it had finished: no need to read it again
  items: new Map(), // order id -> {status, items}: a finished order's items never change
  statuses: new Map(), // order id -> the status last shown (to announce changes)
  workflowsShown: false,
  focusOrder: false,
  timer: null,
  running: false,
  again: false,
};

function announce(text) {
  setText($("announce"), text);
}

// --- the login form (only where the service asks for one) --------------------------------

function showLogin(message) {
  $("content").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("refresh").hidden = true;
  $("token-path").textContent = TOKEN_PATH;
  $("login-error").textContent = message;
  $("updated").textContent = "Not logged in.";
}

async function submitLogin(event) {
  event.preventDefault();
  const password = $("login-password");
  $("login-error").textContent = "";
  const problem = await logIn($("login-user").value, password.value);
  password.value = ""; // never kept: only the access token is
  if (problem) {
    $("login-error").textContent = problem;
    return;
  }
  $("login").hidden = true;
  refresh();
}

function logOut() {
  forget();
  state.workflowsShown = false;
  $("workflows").replaceChildren();
  $("orders-body").replaceChildren();
  showLogin("Logged out.");
}

// --- orders ------------------------------------------------------------------------------

async function itemsOf(order) {
  const cached = state.items.get(order.Id);
  if (cached && cached.status === order.Status && FINISHED.has(order.Status)) return cached.items;
  const body = await apiJSON(`BatchOrder(${order.Id})/Products?$orderby=Id asc`);
  state.items.set(order.Id, { status: order.Status, items: body.value });
  return body.value;
}

function progressOf(order, items) {
  const done = items.filter((i) => i.Status === "completed").length;
  const ended = items.map((i) => i.CompletedDate).filter(Boolean).sort();
  const completed = FINISHED.has(order.Status) && ended.length ? ended[ended.length - 1] : null;
  return { done, total: items.length, completed };
}

function buildOrderRow({ order }) {
  const link = el("a", { href: `#order=${order.Id}` });
  const bar = el("progress", { "aria-hidden": "true" });
  const count = el("span", { className: "count" });
  const row = el(
    "tr",
    {},
    el("td", { className: "number" }),
    el("td", { className: "name" }, link),
    el("td"),
    el("td"),
    el("td", { className: "number" }),
    el("td", { className: "progress" }, bar, count, el("span", { className: "visually-hidden", text: " items completed" })),
    el("td"),
    el("td"),
  );
  return row;
}

function updateOrderRow(row, { order, items }) {
  const cells = row.cells;
  const progress = progressOf(order, items);
  setText(cells[0], String(order.Id));
  setText(cells[1].firstElementChild, order.Name || "(no name)");
  setText(cells[2], order.WorkflowName || "");
  setStatus(cells[3], order.Status);
  setText(cells[4], String(order.Priority));
  const bar = cells[5].querySelector("progress");
  bar.max = Math.max(progress.total, 1);
  bar.value = progress.done;
  setText(cells[5].querySelector(".count"), `${progress.done}/${progress.total}`);
  setTime(cells[6], order.SubmissionDate);
  setTime(cells[7], progress.completed);
  if (state.selected === order.Id) row.setAttribute("aria-current", "true");
  else row.removeAttribute("aria-current");
}

function noteChanges(orders) {
  for (const order of orders) {
    const before = state.statuses.get(order.Id);
    if (before !== undefined && before !== order.Status) {
      announce(`Order ${order.Id} (${order.Name}) is now ${statusWord(order.Status)}.`);
    }
    state.statuses.set(order.Id, order.Status);
  }
}

async function showOrders() {
  const list = await apiJSON(`BatchOrders?$orderby=Id desc&$top=${PAGE}&$skip=${state.skip}&$count=true`);
  const orders = list.value;
  const withItems = await Promise.all(orders.map(async (order) => ({ order, items: await itemsOf(order) })));
  syncRows($("orders-body"), withItems, (r) => r.order.Id, buildOrderRow, updateOrderRow);
  noteChanges(orders);
  const total = list["@odata.count"] ?? orders.length;
  $("orders-empty").hidden = total > 0;
  $("orders").hidden = total === 0;
  $("newer").hidden = state.skip === 0;
  $("older").hidden = state.skip + PAGE >= total;
  setText(
    $("page-info"),
    total > PAGE ? `Orders ${state.skip + 1}–${Math.min(state.skip + PAGE, total)} of ${total}` : "",
  );
  return orders;
}

// --- one order ---------------------------------------------------------------------------

async function showOrder(orders) {
  const section = $("order");
  if (state.selected === null) {
    section.hidden = true;
    return false;
  }
  section.hidden = false;
  let order = orders.find((o) => o.Id === state.selected);
  try {
    if (!order) order = (await apiJSON(`BatchOrder(${state.selected})`)).value;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    setText($("order-heading"), `No order ${state.selected}`);
    $("order-facts").replaceChildren(el("dt", { text: "Service" }), el("dd", { text: error.message }));
    $("items-body").replaceChildren();
    $("cancel").hidden = true;
    return false;
  }
  const items = await itemsOf(order);
  const progress = progressOf(order, items);
  setText($("order-heading"), `Order ${order.Id}: ${order.Name || "(no name)"}`);
  const options = (order.WorkflowOptions || []).map((o) => `${o.Name} = ${JSON.stringify(o.Value)}`);
  const facts = [
    ["Workflow", `${order.WorkflowName} (${order.WorkflowDisplayName || order.WorkflowName}, version ${order.WorkflowVersion ?? "—"})`],
    ["Status", statusBadge(order.Status)],
    ["Progress", `${progress.done} of ${progress.total} items completed`],
    ["Priority", String(order.Priority)],
    ["Submitted", timeText(order.SubmissionDate)],
    ["Completed", timeText(progress.completed)],
    ["Submitted by", order.KeycloakUUID || "—"],
    ["Options", options.length ? options.join("; ") : "none (secret options are never shown)"],
  ];
  const signature = JSON.stringify([order, progress]);
  if ($("order-facts").dataset.signature !== signature) {
    $("order-facts").dataset.signature = signature;
    $("order-facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]));
  }
  const cancel = $("cancel");
  cancel.hidden = false;
  cancel.disabled = FINISHED.has(order.Status);
  setText(cancel, FINISHED.has(order.Status) ? `Order ${order.Id} is ${statusWord(order.Status)}` : `Cancel order ${order.Id}`);
  cancel.dataset.order = String(order.Id);

  if (!items.some((i) => i.Id === state.logItem)) {
    const running = items.find((i) => i.Status === "in_progress");
    state.logItem = (running || items[0] || {}).Id ?? null;
    state.logFinal = false;
  }
  syncRows($("items-body"), items, (i) => i.Id, buildItemRow, updateItemRow);
  await showLog(order, items.find((i) => i.Id === state.logItem));
  return !FINISHED.has(order.Status);
}

function buildItemRow(item) {
  const button = el("button", { type: "button", className: "log-button", "aria-pressed": "false" });
  button.addEventListener("click", () => {
    state.logItem = item.Id;
    state.logFinal = false;
    refresh();
  });
  return el(
    "tr",
    {},
    el("td", { className: "number" }),
    el("td"),
    el("td"),
    el("td", { className: "message" }),
    el("td", { className: "name" }),
    el("td", { className: "number" }),
    el("td"),
    el("td", {}, button),
  );
}

function updateItemRow(row, item) {
  const cells = row.cells;
  setText(cells[0], String(item.Id));
  setText(cells[1], item.InputProductReference ?? "—");
  setStatus(cells[2], item.Status);
  setText(cells[3], item.StatusMessage || "");
  setText(cells[4], item.ProcessedName || "—");
  setText(cells[5], sizeText(item.ProcessedSize));
  cells[5].title = item.ProcessedSize == null ? "" : `${item.ProcessedSize} bytes`;
  const href = item.DownloadLink ? safeLink(item.DownloadLink) : null;
  const current = cells[6].querySelector("a");
  if (href && (!current || current.href !== href)) {
    cells[6].replaceChildren(
      el("a", { href, rel: "noreferrer" }, "Download", el("span", { className: "visually-hidden", text: ` the output of item ${item.Id}` })),
    );
  } else if (!href) {
    setText(cells[6], item.Status === "completed" && item.ProcessedName ? "in your bucket (PRIVATE)" : "—");
  }
  const button = cells[7].firstElementChild;
  const shown = item.Id === state.logItem;
  button.setAttribute("aria-pressed", String(shown));
  setText(button, shown ? `Log of item ${item.Id} shown` : `Show the log of item ${item.Id}`);
}

async function showLog(order, item) {
  const pre = $("log");
  if (!item) {
    setText($("log-heading"), "Log");
    setText($("log-note"), "This order has no items.");
    setText(pre, "");
    return;
  }
  setText($("log-heading"), `Log of item ${item.Id}`);
  if (state.logFinal) return;
  const finished = FINISHED.has(item.Status);
  const answer = await api(`BatchOrder(${order.Id})/Product(${item.Id})/Log`, { headers: { Accept: "text/plain" } });
  if (answer.status === 404) {
    setText($("log-note"), (await detailOf(answer)) + ".");
    setText(pre, "");
    state.logFinal = finished;
    return;
  }
  if (!answer.ok) throw new ApiError(answer.status, await detailOf(answer));
  const text = await answer.text();
  const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  setText(pre, text);
  if (atEnd) pre.scrollTop = pre.scrollHeight;
  setText($("log-note"), finished ? `The item is ${statusWord(item.Status)}: its whole log.` : "The item runs: the log grows here as it writes.");
  state.logFinal = finished;
}

async function cancelOrder() {
  const button = $("cancel");
  const id = Number(button.dataset.order);
  button.disabled = true;
  setText($("cancel-result"), `Cancelling order ${id}…`);
  try {
    const answer = await api(`BatchOrder(${id})/OData.CSC.Cancel`, { method: "POST" });
    setText(
      $("cancel-result"),
      answer.ok ? `Order ${id}: cancel sent (a running item stops, queued items will not run).` : `Not cancelled: ${await detailOf(answer)}`,
    );
  } catch (error) {
    if (!(error instanceof AuthNeeded)) setText($("cancel-result"), "Not cancelled: " + error.message);
  }
  refresh();
}

// --- workflows ---------------------------------------------------------------------------

async function showWorkflows() {
  const body = await apiJSON("Workflows?$expand=WorkflowOptions&$orderby=Name asc");
  const blocks = body.value.map((workflow) => {
    const options = workflow.WorkflowOptions || [];
    const rows = options.map((option) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: option.Name }),
        el("td", { text: option.Type ?? "—" }),
        el("td", { text: option.Default === null || option.Default === undefined ? "—" : String(option.Default) }),
        el("td", { text: Array.isArray(option.Value) ? option.Value.map((v) => v.value).join(", ") : "—" }),
        el("td", { text: option.Required ? "yes" : "no" }),
        el("td", { text: option.Description ?? "" }),
      ),
    );
    const header = ["Option", "Type", "Default", "Choices", "Required", "Description"].map((name) => el("th", { scope: "col", text: name }));
    const title = `${workflow.Name} — ${workflow.DisplayName || workflow.Name}, version ${workflow.WorkflowVersion ?? "—"} (${options.length} options)`;
    return el(
      "details",
      { className: "workflow" },
      el("summary", { text: title }),
      el("p", { text: workflow.Description || "" }),
      el(
        "div",
        { className: "scroll" },
        el(
          "table",
          {},
          el("caption", { text: `Options of ${workflow.Name}` }),
          el("thead", {}, el("tr", {}, ...header)),
          el("tbody", {}, ...rows),
        ),
      ),
    );
  });
  $("workflows").replaceChildren(...(blocks.length ? blocks : [el("p", { text: "No workflows." })]));
  state.workflowsShown = true;
}

// --- the refresh loop --------------------------------------------------------------------

async function refresh() {
  if (state.running) {
    state.again = true;
    return;
  }
  clearTimeout(state.timer);
  state.running = true;
  let busy = false;
  let wait = IDLE_EVERY;
  try {
    if (!state.workflowsShown) await showWorkflows();
    $("content").hidden = false;
    $("logout").hidden = !session.loginMode;
    $("refresh").hidden = false;
    const orders = await showOrders();
    const orderBusy = await showOrder(orders);
    if (state.focusOrder && !$("order").hidden) $("order-heading").focus();
    state.focusOrder = false;
    busy = orderBusy || orders.some((o) => !FINISHED.has(o.Status));
    const now = new Date().toISOString().slice(11, 19);
    setText($("updated"), `Updated ${now} UTC · ${busy ? "orders are running: refreshing every 1.5 s" : "nothing is running"}`);
    if (busy) wait = BUSY_EVERY;
  } catch (error) {
    if (error instanceof AuthNeeded) {
      wait = session.loginMode ? null : 500; // local: soon a new token; else wait for the login
    } else {
      setText($("updated"), `The service did not answer as expected (${error.message}); trying again.`);
    }
  } finally {
    state.running = false;
  }
  if (state.again) {
    state.again = false;
    wait = 0;
  }
  if (wait !== null) state.timer = setTimeout(refresh, wait);
}

function route() {
  const match = /^#order=(\d+)$/.exec(location.hash);
  const selected = match ? Number(match[1]) : null;
  if (selected !== state.selected) {
    state.selected = selected;
    state.logItem = null;
    state.logFinal = false;
    setText($("cancel-result"), "");
    setText($("log"), "");
    setText($("log-note"), "");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  session.loginNeeded = showLogin;
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", logOut);
  $("refresh").addEventListener("click", refresh);
  $("cancel").addEventListener("click", cancelOrder);
  $("newer").addEventListener("click", () => {
    state.skip = Math.max(0, state.skip - PAGE);
    refresh();
  });
  $("older").addEventListener("click", () => {
    state.skip += PAGE;
    refresh();
  });
  window.addEventListener("hashchange", () => {
    route();
    state.focusOrder = true; // a person chose an order: take them to it once it is shown
    refresh();
  });
  route();
  refresh();
});
