/**
 * Who is who: everyone on the item except the user, each with the CRM record their address
 * resolves to (a card: name, job title, account, email, phone, owner, and a link), or
 * "Not in CRM" with Add as contact / Add as lead.
 */
import { colorIndex, h, initials } from "../dom.js";
import { ic } from "../icons.js";
import { _, ngettext } from "../i18n.js";
import { badge, button, crmLink, roleLabel, section, typeLabel } from "./common.js";

const RELATABLE = new Set(["contact", "account", "lead"]);

/** Parties merged by address (someone in To and Cc is one person with two roles). */
export function groupParties(parties) {
  const byKey = new Map();
  for (const party of parties) {
    if (party.status === "self") continue;
    const key = (party.address || party.name || "").toLowerCase();
    const seen = byKey.get(key);
    if (seen) {
      if (!seen.roles.includes(party.role)) seen.roles.push(party.role);
    } else {
      byKey.set(key, { ...party, roles: [party.role] });
    }
  }
  return [...byKey.values()];
}

function avatar(name) {
  return h("span", { class: `avatar c${colorIndex(name)}`, "aria-hidden": "true" }, initials(name));
}

function detail(iconName, content, label) {
  return h("li", {}, ic(iconName), h("span", { class: "visually-hidden" }, _("%(label)s: ", { label })), content);
}

/** "Open contact", "Open account", … (whole phrases: the translations need not compose them). */
export function openLabel(type) {
  const labels = {
    account: _("Open account"), contact: _("Open contact"), lead: _("Open lead"), opportunity: _("Open opportunity"),
    case: _("Open case"), user: _("Open user"), queue: _("Open queue"), task: _("Open task"), phone_call: _("Open phone call"),
  };
  return labels[type] || _("Open in CRM");
}

function matchCard(match, { selected, onRelated }) {
  const card = match.card || {};
  const lines = [];
  if (card.job_title || card.account || card.company) {
    lines.push(h("li", { class: "job" },
      card.job_title ? h("span", {}, card.job_title) : null,
      card.job_title && (card.account || card.company) ? h("span", { "aria-hidden": "true" }, " · ") : null,
      card.account ? crmLink(card.account.url, card.account.name) : card.company ? h("span", {}, card.company) : null));
  }
  if (card.email) lines.push(detail("email", h("a", { href: `mailto:${card.email}` }, card.email), _("Email")));
  if (card.phone) lines.push(detail("phone_call", h("a", { href: `tel:${card.phone.replace(/[^\d+]/g, "")}` }, card.phone), _("Phone")));
  if (card.owner) lines.push(detail("person", h("span", {}, _("Owner: %(name)s", { name: card.owner })), _("Owner")));
  const relatable = RELATABLE.has(match.type);
  return h("div", { class: "match" },
    lines.length ? h("ul", { class: "details" }, lines) : null,
    h("div", { class: "card-actions" },
      match.url ? h("a", { class: "btn btn-subtle btn-small", href: match.url, target: "_blank", rel: "noopener noreferrer" },
        ic("open"), h("span", { class: "btn-label" }, openLabel(match.type))) : null,
      relatable ? button(selected ? _("Showing related") : _("Show related"), () => onRelated(match),
        { kind: "subtle", iconName: "chevron", small: true, key: `related-${match.type}-${match.id}` }) : null));
}

function personCard(party, state, actions) {
  const [first, ...others] = party.matches;
  const name = (first && first.name) || party.name || party.address;
  const roles = party.roles.map(roleLabel).join(", ");
  const selected = first && state.relatedFor && state.relatedFor.type === first.type && state.relatedFor.id === first.id;
  const header = h("div", { class: "person-head" },
    avatar(name),
    h("div", { class: "person-name" },
      h("h3", {}, first && first.url ? crmLink(first.url, name) : name),
      h("p", { class: "person-sub" },
        h("span", { class: "role" }, roles),
        first ? badge(typeLabel(first.type), first.type) : badge(_("Not in CRM"), "missing"))));
  const body = [];
  if (first) {
    if (party.address && (!first.card || first.card.email !== party.address)) {
      body.push(h("p", { class: "address" }, party.address));
    }
    body.push(matchCard(first, { selected, onRelated: actions.showRelated }));
    if (others.length) {
      body.push(h("div", { class: "more-matches" },
        h("p", { class: "hint" }, ngettext("This address also matches %(count)s more record:", "This address also matches %(count)s more records:", others.length)),
        h("ul", {}, others.map((m) => h("li", {},
          crmLink(m.url, m.name), " ", badge(typeLabel(m.type), m.type),
          m.card && m.card.account ? h("span", { class: "muted" }, ` · ${m.card.account.name}`) : null)))));
    }
  } else {
    if (party.address && party.address !== name) body.push(h("p", { class: "address" }, party.address));
    const can = state.ctx.can;
    const adds = [];
    if (can.create_contact) {
      adds.push(button(_("Add as contact"), () => actions.addPerson(party, "contact"),
        { iconName: "plus", small: true, key: `add-contact-${party.address}`, disabled: Boolean(state.busy) }));
    }
    if (can.create_lead) {
      adds.push(button(_("Add as lead"), () => actions.addPerson(party, "lead"),
        { iconName: "plus", small: true, key: `add-lead-${party.address}`, disabled: Boolean(state.busy) }));
    }
    if (adds.length) body.push(h("div", { class: "card-actions" }, adds));
  }
  return h("li", { class: ["person", first ? "resolved" : "unresolved"], dataset: { address: party.address || "" } },
    header, ...body);
}

export function peopleSection(state, actions) {
  const people = groupParties(state.ctx.parties);
  const title = state.item.type === "appointment" ? _("Organizer and attendees") : _("People");
  if (!people.length) {
    return section(title, { id: "people-title" },
      h("p", { class: "empty" }, state.item.mode === "compose"
        ? _("Add recipients to see who they are in the CRM.")
        : _("Only you are on this item.")));
  }
  return section(title, { id: "people-title", count: people.length },
    h("ul", { class: "people" }, people.map((p) => personCard(p, state, actions))));
}
