/**
 * Related data for the selected person or the regarding record: its parent account, open
 * opportunities, open cases and the last five activities, each linked into the CRM.
 */
import { formatDate, formatMoney, h, humanize } from "../dom.js";
import { _ } from "../i18n.js";
import { ic } from "../icons.js";
import { crmLink, section, spinner, typeLabel } from "./common.js";

function group(title, items, render, empty) {
  return h("div", { class: "related-group" },
    h("h3", {}, title, h("span", { class: "count", "aria-label": `(${items.length})` }, String(items.length))),
    items.length ? h("ul", { class: "related-list" }, items.map(render)) : h("p", { class: "empty" }, empty));
}

/** An opportunity's or case's status in the pane's language ("in_progress" → "In progress"). */
function statusLabel(status) {
  const labels = {
    open: _("Open"), won: _("Won"), lost: _("Lost"), in_progress: _("In progress"), on_hold: _("On hold"),
    waiting: _("Waiting"), resolved: _("Resolved"), canceled: _("Canceled"),
  };
  return labels[status] || humanize(status);
}

function opportunity(o) {
  const value = formatMoney(o.estimated_value);
  return h("li", {}, ic("opportunity"),
    h("div", { class: "related-text" },
      crmLink(o.url, o.name),
      h("p", { class: "muted" }, [value ? _("Est. %(value)s", { value }) : null, o.status ? statusLabel(o.status) : null].filter(Boolean).join(" · "))));
}

function supportCase(c) {
  return h("li", {}, ic("case"),
    h("div", { class: "related-text" },
      crmLink(c.url, c.title),
      h("p", { class: "muted" }, [c.ticket_number, c.status ? statusLabel(c.status) : null].filter(Boolean).join(" · "))));
}

function activity(a) {
  return h("li", {}, ic(a.type),
    h("div", { class: "related-text" },
      crmLink(a.url, a.subject == null ? _("(hidden)") : a.subject || _("(no subject)")),
      h("p", { class: "muted" }, [typeLabel(a.type), formatDate(a.occurred_on)].filter(Boolean).join(" · "))));
}

/** "Open opportunities" (of the account; "Other open …" under an opportunity), whole phrases. */
function opportunitiesTitle(others, account) {
  if (account) {
    return others ? _("Other open opportunities of %(account)s", { account }) : _("Open opportunities of %(account)s", { account });
  }
  return others ? _("Other open opportunities") : _("Open opportunities");
}

function casesTitle(others, account) {
  if (account) return others ? _("Other open cases of %(account)s", { account }) : _("Open cases of %(account)s", { account });
  return others ? _("Other open cases") : _("Open cases");
}

export function relatedSection(state) {
  const related = state.related;
  if (state.relatedLoading) {
    return section(_("Related"), { id: "related-title" }, spinner(_("Loading related records…")));
  }
  if (!related || !related.for) {
    return section(_("Related"), { id: "related-title" },
      h("p", { class: "empty" }, _("Track the item regarding a record, or show related data for a person in the CRM.")));
  }
  const about = related.for;
  // Under an opportunity (or case) the list of opportunities (cases) is of its customer's
  // others: said so, so that "none" does not read as "this one is not open".
  const underDeal = about.type === "opportunity" || about.type === "case";
  const account = underDeal && related.parent_account ? related.parent_account.name : null;
  const others = (type) => about.type === type;
  return section(_("Related to %(name)s", { name: about.name }), { id: "related-title" },
    h("p", { class: "related-for" }, ic(about.type), crmLink(about.url, about.name), h("span", { class: "muted" }, ` · ${typeLabel(about.type)}`)),
    related.parent_account ? h("p", { class: "parent-account" }, ic("account"),
      h("span", { class: "muted" }, _("Account: ")), crmLink(related.parent_account.url, related.parent_account.name)) : null,
    group(opportunitiesTitle(others("opportunity"), account), related.open_opportunities || [], opportunity,
      others("opportunity") ? _("No other open opportunities.") : _("No open opportunities.")),
    group(casesTitle(others("case"), account), related.open_cases || [], supportCase,
      others("case") ? _("No other open cases.") : _("No open cases.")),
    group(_("Recent activities"), related.recent_activities || [], activity, _("No activities yet.")));
}
