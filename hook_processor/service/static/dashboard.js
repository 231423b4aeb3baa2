// The order dashboard of `hook-processor serve` (hook_processor/service/dashboard.py).
//
// Plain JavaScript, no build step, no library: it calls the service's own OData API with a Bearer
// token and builds the page with createElement/textContent only. Order names, StatusMessages and
// logs are the users' text: none of it is ever parsed as HTML.
"use strict";

(() => {
  const ROOT = "/odata/v1/";
  const TOKEN_PATH = "/auth/realms/dedl/protocol/openid-connect/token";
  const LOCAL_TOKEN = "/dashboard/token";
  const TOKEN_KEY = "hook-processor-dashboard-token";
  const PAGE = 20;
  const BUSY_EVERY = 1500; // ms between refreshes while something runs
  const IDLE_EVERY = 5000; // ms between refreshes otherwise (new orders still appear)
  const FINISHED = new Set(["completed", "failed", "cancelled"]);

  const $ = (id) => document.getElementById(id);
  const state = {
    loginMode: false, // the service asked for a login (403 from LOCAL_TOKEN)
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

  class AuthNeeded extends Error {}
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // --- tokens ------------------------------------------------------------------------------

  // sessionStorage holds {token, login}: the access token (never a password) and whether it came
  // from the login form (then the page offers "Log out").
  function saved() {
    try {
      return JSON.parse(sessionStorage.getItem(TOKEN_KEY)) || null;
    } catch {
      return null;
    }
  }

  function keep(accessToken, login) {
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify({ token: accessToken, login }));
    state.loginMode = login;
  }

  async function token() {
    const kept = saved();
    if (kept && kept.token) {
      state.loginMode = Boolean(kept.login);
      return kept.token;
    }
    if (state.loginMode) throw new AuthNeeded();
    const answer = await fetch(LOCAL_TOKEN, { method: "POST", headers: { Accept: "application/json" } });
    if (answer.status === 403) {
      state.loginMode = true;
      showLogin("");
      throw new AuthNeeded();
    }
    if (!answer.ok) throw new ApiError(answer.status, await detailOf(answer));
    const body = await answer.json();
    keep(body.access_token, false);
    return body.access_token;
  }

  async function api(path, options = {}) {
    const bearer = await token();
    const headers = { Accept: "application/json", ...(options.headers || {}), Authorization: "Bearer " + bearer };
    const answer = await fetch(ROOT + path, { ...options, headers });
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      if (state.loginMode) showLogin("Your session has ended: log in again.");
      throw new AuthNeeded();
    }
    return answer;
  }

  async function apiJSON(path) {
    const answer = await api(path);
    if (!answer.ok) throw new ApiError(answer.status, await detailOf(answer));
    return answer.json();
  }

  async function detailOf(answer) {
    const text = await answer.text();
    try {
      const body = JSON.parse(text);
      if (typeof body.detail === "string") return body.detail;
      if (body.error_description) return body.error_description;
      return JSON.stringify(body.detail ?? body);
    } catch {
      return text || answer.statusText;
    }
  }

  function showLogin(message) {
    $("content").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("refresh").hidden = true;
    $("token-path").textContent = TOKEN_PATH;
    $("login-error").textContent = message;
    $("updated").textContent = "Not logged in.";
  }

  async function logIn(event) {
    event.preventDefault();
    const user = $("login-user").value;
    const password = $("login-password");
    const form = new URLSearchParams({
      grant_type: "password",
      client_id: "ordering",
      username: user,
      password: password.value,
    });
    $("login-error").textContent = "";
    let answer;
    try {
      answer = await fetch(TOKEN_PATH, { method: "POST", body: form });
    } catch (error) {
      $("login-error").textContent = "The service does not answer: " + error.message;
      return;
    }
    password.value = ""; // never kept: only the access token is
    if (!answer.ok) {
      $("login-error").textContent = "Not logged in: " + (await detailOf(answer));
      return;
    }
    keep((await answer.json()).access_token, true);
    $("login").hidden = true;
    $("logout").hidden = false;
    refresh();
  }

  function logOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.workflowsShown = false;
    $("workflows").replaceChildren();
    $("orders-body").replaceChildren();
    showLogin("Logged out.");
  }

  // --- small builders (text only) ----------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function statusBadge(status) {
    return el("span", { className: "status", "data-status": status || "unknown", text: statusWord(status) });
  }

  function statusWord(status) {
    return (status || "unknown").replace(/_/g, " ");
  }

  function setStatus(cell, status) {
    const badge = cell.firstElementChild;
    if (badge && badge.dataset.status === status) return;
    cell.replaceChildren(statusBadge(status));
  }

  function timeText(iso) {
    if (!iso) return "—";
    return iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC");
  }

  function setTime(cell, iso) {
    if (cell.dataset.iso === (iso || "")) return;
    cell.dataset.iso = iso || "";
    cell.replaceChildren(iso ? el("time", { datetime: iso, text: timeText(iso) }) : "—");
  }

  function sizeText(bytes) {
    if (bytes === null || bytes === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function safeLink(url) {
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  function announce(text) {
    setText($("announce"), text);
  }

  // Rows keyed by id: an existing row is updated in place (a focused link keeps its focus).
  function syncRows(tbody, records, key, build, update) {
    const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
    let previous = null;
    for (const record of records) {
      const id = String(key(record));
      let row = existing.get(id);
      if (row) existing.delete(id);
      else {
        row = build(record);
        row.dataset.key = id;
      }
      update(row, record);
      const expected = previous ? previous.nextElementSibling : tbody.firstElementChild;
      if (row !== expected) tbody.insertBefore(row, expected);
      previous = row;
    }
    for (const row of existing.values()) row.remove();
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
      $("logout").hidden = !state.loginMode;
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
        wait = state.loginMode ? null : 500; // local: soon a new token; else wait for the login
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
    $("login-form").addEventListener("submit", logIn);
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
})();
