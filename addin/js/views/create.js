/**
 * Quick create from the pane: contact, lead, opportunity, case, task and phone call, each
 * prefilled from the item (a person's split name and address, the subject, the customer the
 * item is about). A new record can become what the item is regarding. Field messages from
 * the server are shown beside their fields.
 */
import { append, clear, h } from "../dom.js";
import { _, ngettext } from "../i18n.js";
import { companyFromAddress, splitName } from "../names.js";
import { banner, button, checkbox, field, panelHeader, typeLabel } from "./common.js";

/** What the pane creates: [kind, the privilege it needs] (labels: typeLabel). */
export const CREATE_KINDS = [
  ["contact", "create_contact"], ["lead", "create_lead"], ["opportunity", "create_opportunity"],
  ["case", "create_case"], ["task", "create_task"], ["phone_call", "create_phone_call"],
];

/** The quick create panel's title for a kind ("New contact"), a whole phrase. */
function newTitle(kind) {
  const titles = {
    contact: _("New contact"), lead: _("New lead"), opportunity: _("New opportunity"), case: _("New case"),
    task: _("New task"), phone_call: _("New phone call"),
  };
  return titles[kind] || typeLabel(kind);
}
const ACTIVITY_KINDS = new Set(["task", "phone_call"]);

function domain(address) {
  return String(address || "").split("@")[1]?.toLowerCase() || "";
}

/** Accounts and contacts the item knows about, for customer and regarding choices. */
function knownRecords(ctx, related) {
  const out = [];
  const seen = new Set();
  const add = (type, id, name, extra = {}) => {
    const key = `${type}:${id}`;
    if (name == null || seen.has(key)) return;
    seen.add(key);
    out.push({ type, id, name, ...extra });
  };
  for (const party of ctx.parties) {
    for (const m of party.matches || []) {
      if (m.card && m.card.account) add("account", m.card.account.id, m.card.account.name, { domain: domain(party.address) });
      if (["account", "contact", "lead", "opportunity", "case"].includes(m.type)) add(m.type, m.id, m.name, { domain: domain(party.address) });
    }
  }
  for (const source of [ctx.related, related]) {
    if (!source || !source.for) continue;
    add(source.for.type, source.for.id, source.for.name);
    if (source.parent_account) add("account", source.parent_account.id, source.parent_account.name);
    for (const o of source.open_opportunities || []) add("opportunity", o.id, o.name);
    for (const c of source.open_cases || []) add("case", c.id, c.title);
  }
  return out;
}

function firstExternal(ctx) {
  for (const party of ctx.parties) {
    if (party.status === "resolved" && party.matches[0] && ["contact", "account", "lead"].includes(party.matches[0].type)) {
      return party;
    }
  }
  return null;
}

function tomorrowAtNine() {
  const d = new Date();
  d.setDate(d.getDate() + 1);
  d.setHours(9, 0, 0, 0);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Initial values for a form, from the item and (for Add as …) the person. */
export function prefill(kind, { item, ctx, party }) {
  const subject = item.subject || "";
  const who = party || firstExternal(ctx) || null;
  const known = knownRecords(ctx, null);
  const customer = known.find((r) => r.type === "account") || known.find((r) => r.type === "contact");
  if (kind === "contact" || kind === "lead") {
    const person = party || { name: "", address: "" };
    const names = splitName(person.name, person.address);
    /** @type {Record<string, string>} */
    const values = { ...names, email1: person.address || "" };
    if (kind === "contact") {
      const sameDomain = known.find((r) => r.type === "account" && r.domain && r.domain === domain(person.address));
      values.parent_account_id = sameDomain ? String(sameDomain.id) : "";
    } else {
      values.company_name = companyFromAddress(person.address);
      values.topic = subject;
    }
    return values;
  }
  if (kind === "opportunity") return { name: subject, customer: customer ? `${customer.type}:${customer.id}` : "" };
  if (kind === "case") return { title: subject, customer: customer ? `${customer.type}:${customer.id}` : "", priority: "normal" };
  const regarding = ctx.tracking.regarding;
  const regardingDefault = regarding && regarding.name != null ? `${regarding.type}:${regarding.id}`
    : customer ? `${customer.type}:${customer.id}` : "";
  if (kind === "task") return { subject: subject ? _("Follow up: %(subject)s", { subject }) : _("Follow up"), scheduled_end: tomorrowAtNine(), regarding: regardingDefault };
  const phone = who && who.matches && who.matches[0] && who.matches[0].card ? who.matches[0].card.phone || "" : "";
  const name = who ? (who.matches && who.matches[0] ? who.matches[0].name : who.name) : "";
  return { subject: name ? _("Call %(name)s", { name }) : _("Call about %(subject)s", { subject }), phone_number: phone, scheduled_end: tomorrowAtNine(), regarding: regardingDefault };
}

function options(records, types) {
  return [["", _("None")], ...records.filter((r) => types.includes(r.type))
    .map((r) => [`${r.type}:${r.id}`, `${r.name} (${typeLabel(r.type)})`])];
}

/**
 * The contact's Account: the accounts the item knows, those found by a search, or a new
 * account named after the person's email domain (when the user may create accounts).
 */
function accountField(values, errors, known, accounts) {
  const { found, fresh, onSearch, status } = accounts;
  const choices = [...known.filter((r) => r.type === "account"),
    ...found.filter((r) => !known.some((k) => k.type === "account" && k.id === r.id))];
  /** @type {Array<[string, string]>} */
  const opts = [["", _("None")], ...choices.map((r) => /** @type {[string, string]} */ ([String(r.id), r.detail ? `${r.name} (${r.detail})` : r.name]))];
  if (fresh) opts.push(["new", _("New account: %(name)s", { name: fresh.name })]);
  const error = errors.parent_account_id || errors["fields.parent_account_id"] || errors["new_account.name"];
  const query = h("input", { type: "search", class: "input", id: "account-q", maxlength: 200, autocomplete: "off",
    dataset: { key: "account-q" }, "aria-describedby": "account-q-status" });
  query.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); onSearch(query.value); }
  });
  return [
    field({ name: "parent_account_id", label: _("Account"), value: values.parent_account_id ?? "", error, options: opts }),
    h("div", { class: "field account-search" },
      h("div", { class: "label-row" }, h("label", { for: "account-q" }, _("Find an account"))),
      h("div", { class: "search-row" }, query,
        button(_("Search"), () => onSearch(query.value), { iconName: "search", key: "account-search", small: true })),
      h("p", { class: "hint", id: "account-q-status", role: "status" }, status || "")),
  ];
}

function fieldsFor(kind, values, errors, known, accounts) {
  const f = (name, label, extra = {}) => field({ name, label, value: values[name] ?? "", error: errors[name] || errors[`fields.${name}`], ...extra });
  const customerError = errors.customer || errors.customer_account_id || errors.customer_contact_id;
  switch (kind) {
    case "contact":
      return [f("first_name", _("First name"), { maxlength: 100 }), f("last_name", _("Last name"), { required: true, maxlength: 100 }),
        f("email1", _("Email"), { type: "email", maxlength: 320 }), f("job_title", _("Job title"), { maxlength: 100 }),
        f("phone", _("Business phone"), { type: "tel", maxlength: 50 }),
        ...accountField(values, errors, known, accounts)];
    case "lead":
      return [f("first_name", _("First name"), { maxlength: 100 }), f("last_name", _("Last name"), { required: true, maxlength: 100 }),
        f("email1", _("Email"), { type: "email", maxlength: 320 }), f("company_name", _("Company"), { maxlength: 160 }),
        f("topic", _("Topic"), { maxlength: 200 }), f("phone", _("Phone"), { type: "tel", maxlength: 50 })];
    case "opportunity":
      return [f("name", _("Topic"), { required: true, maxlength: 200 }),
        field({ name: "customer", label: _("Customer"), value: values.customer || "", error: customerError, options: options(known, ["account", "contact"]) }),
        f("estimated_value", _("Est. revenue"), { inputmode: "decimal" }),
        f("estimated_close_date", _("Est. close date"), { type: "date" })];
    case "case":
      return [f("title", _("Case title"), { required: true, maxlength: 200 }),
        field({ name: "customer", label: _("Customer"), value: values.customer || "", error: customerError, options: options(known, ["account", "contact"]) }),
        f("priority", _("Priority"), { options: [["high", _("High")], ["normal", _("Normal")], ["low", _("Low")]] }),
        f("description", _("Description"), { rows: 3 })];
    case "task":
      return [f("subject", _("Subject"), { required: true, maxlength: 400 }),
        f("scheduled_end", _("Due"), { type: "datetime-local" }),
        field({ name: "regarding", label: _("Regarding"), value: values.regarding || "", error: errors.regarding, options: options(known, ["account", "contact", "lead", "opportunity", "case"]) }),
        f("description", _("Description"), { rows: 3 })];
    default:
      return [f("subject", _("Subject"), { required: true, maxlength: 400 }),
        f("phone_number", _("Phone number"), { type: "tel", maxlength: 50 }),
        f("scheduled_end", _("Due"), { type: "datetime-local" }),
        field({ name: "regarding", label: _("Regarding"), value: values.regarding || "", error: errors.regarding, options: options(known, ["account", "contact", "lead", "opportunity", "case"]) }),
        f("description", _("Description"), { rows: 3 })];
  }
}

function ref(value) {
  const [type, id] = String(value || "").split(":");
  return type && id ? { type, id: Number(id) } : null;
}

/**
 * The form's values as the API wants them (empty strings left out); ``fresh``: the new
 * account offered for a contact.
 */
export function payload(kind, form, fresh = null) {
  const data = Object.fromEntries(new FormData(form).entries());
  /** @type {Record<string, any>} */
  const fields = {};
  for (const [key, value] of Object.entries(data)) {
    if (key === "track_regarding" || key === "customer" || key === "regarding") continue;
    if (typeof value === "string" && value.trim() !== "") fields[key] = value.trim();
  }
  if (kind === "opportunity" || kind === "case") {
    const customer = ref(data.customer);
    if (customer) fields[`customer_${customer.type}_id`] = customer.id;
  }
  let newAccount = null;
  if (fields.parent_account_id === "new") {
    delete fields.parent_account_id;
    newAccount = fresh;
  } else if (fields.parent_account_id) {
    fields.parent_account_id = Number(fields.parent_account_id);
  }
  if (fields.scheduled_end) {
    const when = new Date(fields.scheduled_end);
    if (!Number.isNaN(when.getTime())) fields.scheduled_end = when.toISOString();
  }
  if (data.description) fields.description = data.description; // multi-line as typed
  return {
    fields,
    regarding: ACTIVITY_KINDS.has(kind) ? ref(data.regarding) : null,
    trackRegarding: data.track_regarding === "on",
    newAccount,
  };
}

/** The account a new contact's email domain suggests ({name, website}), or null. */
function accountFromDomain(address) {
  const name = companyFromAddress(address);
  const host = domain(address);
  return name && host ? { name, website: `https://${host}` } : null;
}

/** The quick create's "track regarding the new record" choice, for an email or a meeting. */
function trackLabel(untracked, meeting, type) {
  if (untracked) {
    return meeting ? _("Track this meeting regarding the new %(type)s", { type })
      : _("Track this email regarding the new %(type)s", { type });
  }
  return meeting ? _("Set the new %(type)s as what this meeting is regarding", { type })
    : _("Set the new %(type)s as what this email is regarding", { type });
}

export function createPanel({ kind, state, party, onSubmit, onBack, searchAccounts }) {
  const label = typeLabel(kind);
  const known = knownRecords(state.ctx, state.related);
  const isActivity = ACTIVITY_KINDS.has(kind);
  const meeting = state.item.type === "appointment";
  const tracking = state.ctx.tracking;
  /** @type {Record<string, any>} */
  let values = prefill(kind, { item: state.item, ctx: state.ctx, party });
  let errors = {};
  let message = null;
  let busy = false;
  let trackChecked = null; // null: the default below
  const accounts = {
    found: [], status: "",
    fresh: kind === "contact" && state.ctx.can.create_account && party ? accountFromDomain(party.address) : null,
    onSearch: async (q) => {
      if (!q.trim()) return;
      values = Object.fromEntries(new FormData(form).entries());
      accounts.status = _("Searching…");
      render();
      try {
        accounts.found = (await searchAccounts(q.trim())).results;
        accounts.status = accounts.found.length
          ? ngettext("%(count)s account found: choose one under Account.", "%(count)s accounts found: choose one under Account.",
            accounts.found.length)
          : _("No account found.");
        if (accounts.found.length) values.parent_account_id = String(accounts.found[0].id);
      } catch (exc) {
        accounts.status = exc.message || _("The search did not work.");
      }
      render();
      /** @type {HTMLElement | null} */
      const next = form.querySelector(accounts.found.length ? "select[name=parent_account_id]" : "#account-q");
      if (next) next.focus();
    },
  };

  const form = h("form", { class: "create-form", novalidate: true });
  const wrap = h("div", { class: "panel", role: "region", "aria-labelledby": "panel-title" },
    panelHeader(newTitle(kind), onBack), form);

  function render() {
    clear(form);
    const trackable = !isActivity && state.ctx.can.track && (tracking.status !== "failed");
    const regardingElsewhere = tracking.regarding && tracking.regarding.name != null;
    append(form, [
      message ? banner(message, { details: Object.entries(errors).filter(([k]) => k.startsWith("item") || k === "type").map(([, v]) => v) }) : null,
      ...fieldsFor(kind, values, errors, known, accounts),
      trackable ? checkbox({
        name: "track_regarding",
        label: trackLabel(tracking.status === "not_tracked", meeting, label.toLowerCase()),
        checked: trackChecked ?? (Boolean(party) || !regardingElsewhere),
      }) : null,
      h("div", { class: "actions form-actions" },
        button(busy ? _("Saving…") : _("Save"), null, { kind: "primary", type: "submit", key: "create-save", disabled: busy }),
        button(_("Cancel"), onBack, { key: "create-cancel", disabled: busy })),
    ]);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    values = Object.fromEntries(new FormData(form).entries());
    const data = payload(kind, form, accounts.fresh);
    trackChecked = data.trackRegarding;
    busy = true;
    render();
    const problem = await onSubmit(kind, data);
    busy = false;
    if (problem) {
      errors = problem.fields || {};
      message = problem.message;
      render();
      const invalid = form.querySelector("[aria-invalid=true]");
      (invalid || form.querySelector(".banner") || form).focus?.();
    }
  });
  render();
  return wrap;
}
