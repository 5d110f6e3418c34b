/**
 * Related data for the selected person or the regarding record: its parent account, open
 * opportunities, open cases and the last five activities, each linked into the CRM.
 */
import { formatDate, formatMoney, h, humanize } from "../dom.js";
import { ic } from "../icons.js";
import { crmLink, section, spinner, typeLabel } from "./common.js";

function group(title, items, render, empty) {
  return h("div", { class: "related-group" },
    h("h3", {}, title, h("span", { class: "count", "aria-label": `(${items.length})` }, String(items.length))),
    items.length ? h("ul", { class: "related-list" }, items.map(render)) : h("p", { class: "empty" }, empty));
}

function opportunity(o) {
  const value = formatMoney(o.estimated_value);
  return h("li", {}, ic("opportunity"),
    h("div", { class: "related-text" },
      crmLink(o.url, o.name),
      h("p", { class: "muted" }, [value ? `Est. ${value}` : null, o.status ? humanize(o.status) : null].filter(Boolean).join(" · "))));
}

function supportCase(c) {
  return h("li", {}, ic("case"),
    h("div", { class: "related-text" },
      crmLink(c.url, c.title),
      h("p", { class: "muted" }, [c.ticket_number, c.status ? humanize(c.status) : null].filter(Boolean).join(" · "))));
}

function activity(a) {
  return h("li", {}, ic(a.type),
    h("div", { class: "related-text" },
      crmLink(a.url, a.subject == null ? "(hidden)" : a.subject || "(no subject)"),
      h("p", { class: "muted" }, [typeLabel(a.type), formatDate(a.occurred_on)].filter(Boolean).join(" · "))));
}

export function relatedSection(state) {
  const related = state.related;
  if (state.relatedLoading) {
    return section("Related", { id: "related-title" }, spinner("Loading related records…"));
  }
  if (!related || !related.for) {
    return section("Related", { id: "related-title" },
      h("p", { class: "empty" }, "Track the item regarding a record, or show related data for a person in the CRM."));
  }
  const about = related.for;
  // Under an opportunity (or case) the list of opportunities (cases) is of its customer's
  // others: said so, so that "none" does not read as "this one is not open".
  const underDeal = about.type === "opportunity" || about.type === "case";
  const of = underDeal && related.parent_account ? ` of ${related.parent_account.name}` : "";
  const listTitle = (type, plural) => `${about.type === type ? "Other open" : "Open"} ${plural}${of}`;
  const emptyText = (type, plural) => `No ${about.type === type ? "other " : ""}open ${plural}.`;
  return section(`Related to ${about.name}`, { id: "related-title" },
    h("p", { class: "related-for" }, ic(about.type), crmLink(about.url, about.name), h("span", { class: "muted" }, ` · ${typeLabel(about.type)}`)),
    related.parent_account ? h("p", { class: "parent-account" }, ic("account"),
      h("span", { class: "muted" }, "Account: "), crmLink(related.parent_account.url, related.parent_account.name)) : null,
    group(listTitle("opportunity", "opportunities"), related.open_opportunities || [], opportunity, emptyText("opportunity", "opportunities")),
    group(listTitle("case", "cases"), related.open_cases || [], supportCase, emptyText("case", "cases")),
    group("Recent activities", related.recent_activities || [], activity, "No activities yet."));
}
