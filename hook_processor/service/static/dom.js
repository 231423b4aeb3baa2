// Small DOM builders of the dashboard. Text only: every value reaches the page through
// textContent or an attribute, never as markup (order names, StatusMessages and logs are the
// users' text).

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function statusBadge(status) {
  return el("span", { className: "status", "data-status": status || "unknown", text: statusWord(status) });
}

export function statusWord(status) {
  return (status || "unknown").replace(/_/g, " ");
}

export function setStatus(cell, status) {
  const badge = cell.firstElementChild;
  if (badge && badge.dataset.status === status) return;
  cell.replaceChildren(statusBadge(status));
}

export function timeText(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC");
}

export function setTime(cell, iso) {
  if (cell.dataset.iso === (iso || "")) return;
  cell.dataset.iso = iso || "";
  cell.replaceChildren(iso ? el("time", { datetime: iso, text: timeText(iso) }) : "—");
}

export function sizeText(bytes) {
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

export function safeLink(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

// Rows keyed by id: an existing row is updated in place (a focused link keeps its focus).
export function syncRows(tbody, records, key, build, update) {
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
