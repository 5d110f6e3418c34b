/**
 * The add-in API client (``/api/addin/...``, same origin as the pane). Every call carries the
 * bearer token from auth.js and no cookies. Errors come back typed (ApiError with the
 * server's code, message and field messages); on ``token_expired`` (or a refused token) the
 * client gets a new token once and repeats the call. Calls carry Outlook's display language as
 * Accept-Language, so what the server says for people comes in the pane's language.
 */
import { NeedsSignIn } from "./auth.js";
import { _ } from "./i18n.js";
import { displayLanguage } from "./office-host.js";

const BASE = new URL("../../api/addin/", import.meta.url);

export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || {};
  }
}

/** [code, message] for an HTTP status the server gave no message with. */
function fallback(status) {
  const known = {
    0: ["network", _("Could not reach the CRM server. Check your connection and try again.")],
    400: ["invalid", _("Some of what was sent is not valid.")],
    401: ["unauthenticated", _("Sign in to continue.")],
    403: ["forbidden", _("You do not have the privilege to do this.")],
    404: ["not_found", _("That record was not found, or you may not see it.")],
    413: ["too_large", _("This item is too large to send to the CRM.")],
  };
  return known[status] || ["error", _("The CRM server had a problem. Try again in a moment.")];
}

export function createApi(auth) {
  async function send(method, path, body, token) {
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (displayLanguage()) headers["Accept-Language"] = displayLanguage();
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(new URL(path, BASE), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", cache: "no-store", redirect: "error",
      });
    } catch {
      const [code, message] = fallback(0);
      throw new ApiError(0, code, message);
    }
  }

  async function call(method, path, body, { interactive = false } = {}) {
    let token = await auth.token();
    for (let attempt = 0; ; attempt += 1) {
      const response = await send(method, path, body, token);
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = null;
      }
      if (response.ok) return data;
      const error = (data && data.error) || {};
      const [code, message] = fallback(response.status);
      const err = new ApiError(response.status, error.code || code, error.message || message, error.fields);
      if (response.status === 401 && attempt === 0) {
        token = await auth.refresh(err.code, { interactive });
        continue;
      }
      if (response.status === 401) throw new NeedsSignIn(err.message);
      throw err;
    }
  }

  const write = (method, path, body) => call(method, path, body, { interactive: true });

  return {
    context: (item) => call("POST", "context", { item }),
    related: (type, id) => call("GET", `related/${encodeURIComponent(type)}/${encodeURIComponent(id)}`, undefined, { interactive: true }),
    search: (q, types, limit = 20) => {
      const params = new URLSearchParams({ q, limit: String(limit) });
      if (types && types.length) params.set("types", types.join(","));
      return call("GET", `search?${params}`, undefined, { interactive: true });
    },
    track: (item, regarding) => write("POST", "track", { item, regarding: regarding || null }),
    pending: (item, regarding) => write("POST", "pending", { item, regarding: regarding || null }),
    setRegarding: (identity, regarding) => write("PUT", "regarding", { ...identity, regarding: regarding || null }),
    untrack: (identity, deleteCopy) => write("POST", "untrack", { ...identity, delete_copy: Boolean(deleteCopy) }),
    createRecord: (type, fields, setRegardingFor, newAccount = null) => write("POST", `records/${encodeURIComponent(type)}`,
      { fields, set_regarding_for: setRegardingFor || null, ...(newAccount ? { new_account: newAccount } : {}) }),
    searchAccounts: (q) => call("GET", `search?${new URLSearchParams({ q, types: "account", limit: "10" })}`, undefined, { interactive: true }),
    createActivity: (type, fields, regarding) => write("POST", `activities/${encodeURIComponent(type)}`,
      { fields, regarding: regarding || null }),
    signOut: () => call("POST", "signout", {}),
    myMailbox: () => call("GET", "mailbox", undefined, { interactive: true }),
    mailboxAction: (action) => write("POST", `mailbox/${encodeURIComponent(action)}`),
  };
}
