/**
 * The regarding picker: a search across accounts, contacts, leads, opportunities and cases
 * (by name, email, number; ranked by the server), showing what tells same-named records
 * apart, with suggestions from the item itself (the people on it and their open deals and
 * cases) before anything is typed. A keyboard-usable combobox (arrows, Enter, Escape).
 */
import { clear, h, uid } from "../dom.js";
import { _, ngettext } from "../i18n.js";
import { ic } from "../icons.js";
import { banner, button, panelHeader, typeLabel } from "./common.js";

function typeChoices() {
  return [["", _("All types")], ["account", _("Accounts")], ["contact", _("Contacts")], ["lead", _("Leads")],
    ["opportunity", _("Opportunities")], ["case", _("Cases")]];
}
const REGARDING_TYPES = new Set(["account", "contact", "lead", "opportunity", "case"]);
const DEBOUNCE_MS = 250;

/** Records the item already points at: its people, and what is related to them. */
export function suggestions(ctx, related) {
  const out = [];
  const seen = new Set();
  const add = (type, id, name, detail) => {
    const key = `${type}:${id}`;
    if (!REGARDING_TYPES.has(type) || name == null || seen.has(key)) return;
    seen.add(key);
    out.push({ type, id, name, detail: detail || "" });
  };
  for (const party of ctx.parties) {
    for (const m of party.matches || []) {
      const card = m.card || {};
      add(m.type, m.id, m.name, [card.email, card.account && card.account.name].filter(Boolean).join(" · "));
      if (card.account) add("account", card.account.id, card.account.name, "");
    }
  }
  for (const source of [ctx.related, related]) {
    if (!source || !source.for) continue;
    add(source.for.type, source.for.id, source.for.name, "");
    if (source.parent_account) add("account", source.parent_account.id, source.parent_account.name, "");
    for (const o of source.open_opportunities || []) add("opportunity", o.id, o.name, _("Open opportunity"));
    for (const c of source.open_cases || []) add("case", c.id, c.title, c.ticket_number || _("Open case"));
  }
  return out.slice(0, 12);
}

export function regardingPanel({ title, current, suggested, search, onChoose, onClear, onBack, purpose }) {
  const inputId = uid("regarding-q");
  const listId = uid("regarding-list");
  const statusId = uid("regarding-status");
  let results = suggested;
  let active = -1;
  let timer = null;
  let generation = 0;

  const input = h("input", {
    id: inputId, class: "input search-input", type: "search", role: "combobox", autocomplete: "off",
    "aria-autocomplete": "list", "aria-expanded": "true", "aria-controls": listId,
    placeholder: _("Name, email or number"), maxlength: "200", dataset: { key: "regarding-q" },
  });
  const typeSelect = h("select", { class: "input type-filter", "aria-label": _("Record type") },
    typeChoices().map(([value, text]) => h("option", { value }, text)));
  const list = h("ul", { id: listId, role: "listbox", class: "results", "aria-label": _("Records") });
  const caption = h("p", { class: "results-caption", id: statusId, role: "status" });
  const errorArea = h("div");

  function optionId(index) {
    return `${listId}-opt-${index}`;
  }

  function renderResults(label) {
    clear(list);
    caption.textContent = label;
    results.forEach((r, index) => {
      list.append(h("li", {
        id: optionId(index), role: "option", class: ["result", index === active && "active"],
        "aria-selected": index === active ? "true" : "false",
        dataset: { type: r.type, id: String(r.id) },
        onmousedown: (event) => event.preventDefault(),
        onclick: () => choose(index),
      },
      h("span", { class: `result-icon t-${r.type}`, "aria-hidden": "true" }, ic(r.type)),
      h("span", { class: "result-text" },
        h("span", { class: "result-name" }, r.name),
        h("span", { class: "result-detail" }, [typeLabel(r.type), r.detail].filter(Boolean).join(" · ")))));
    });
    if (active >= 0) input.setAttribute("aria-activedescendant", optionId(active));
    else input.removeAttribute("aria-activedescendant");
  }

  function move(delta) {
    if (!results.length) return;
    active = active < 0 ? (delta > 0 ? 0 : results.length - 1) : (active + delta + results.length) % results.length;
    renderResults(caption.textContent);
    const el = list.querySelector(`#${CSS.escape(optionId(active))}`);
    if (el && el.scrollIntoView) el.scrollIntoView({ block: "nearest" });
  }

  function choose(index) {
    const r = results[index];
    if (r) onChoose({ type: r.type, id: r.id, name: r.name });
  }

  async function run() {
    const q = input.value.trim();
    const mine = ++generation;
    clear(errorArea);
    active = -1;
    if (!q) {
      results = suggested;
      renderResults(suggested.length ? _("Suggested from this item") : _("Type to search"));
      return;
    }
    caption.textContent = _("Searching…");
    try {
      const types = typeSelect.value ? [typeSelect.value] : null;
      const data = await search(q, types);
      if (mine !== generation) return;
      results = data.results || [];
      renderResults(results.length ? ngettext("%(count)s result", "%(count)s results", results.length) : _("No records match."));
    } catch (exc) {
      if (mine !== generation) return;
      results = [];
      renderResults("");
      errorArea.append(banner(exc.message || _("Search failed.")));
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(run, DEBOUNCE_MS);
  }

  input.addEventListener("input", schedule);
  typeSelect.addEventListener("change", run);
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") { event.preventDefault(); move(1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); move(-1); }
    else if (event.key === "Enter") {
      event.preventDefault();
      if (active >= 0) choose(active);
      else { clearTimeout(timer); run(); }
    } else if (event.key === "Escape") {
      event.preventDefault();
      if (input.value) { input.value = ""; run(); } else onBack();
    }
  });

  renderResults(suggested.length ? _("Suggested from this item") : _("Type to search"));
  const label = h("label", { for: inputId, class: "search-label" }, _("Search accounts, contacts, leads, opportunities and cases"));
  return h("div", { class: "panel", role: "region", "aria-labelledby": "panel-title" },
    panelHeader(title, onBack),
    purpose ? h("p", { class: "panel-intro" }, purpose) : null,
    current ? h("p", { class: "current-regarding" }, _("Now regarding "), h("strong", {}, current.name || _("a record you may not see")),
      ` (${typeLabel(current.type)})`) : null,
    h("div", { class: "search-box" }, label,
      h("div", { class: "search-row" }, h("span", { class: "search-icon", "aria-hidden": "true" }, ic("search")), input),
      typeSelect),
    errorArea, caption, list,
    current && onClear ? h("div", { class: "actions" },
      button(_("Remove regarding"), onClear, { kind: "subtle", iconName: "unlink", key: "clear-regarding" })) : null);
}
