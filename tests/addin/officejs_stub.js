/*
 * A test stand-in for Office.js (served in place of Microsoft's CDN script by
 * tests.servers.browser.route_office_js). It fakes the part of the Outlook API the pane
 * uses, with Office's async callback shapes, and records every call in window.__office.calls
 * so tests can assert what the pane read and when.
 *
 * Configure it by prepending `window.__OFFICE_CONFIG = {...};` to this script:
 *   item:      the selected item (see makeItem below), or null
 *   user:      {displayName, emailAddress}
 *   sets:      requirement sets, e.g. {Mailbox: "1.8", IdentityAPI: "1.3", DialogApi: "1.2"}
 *   sso:       {tokens: ["jwt", ...]} handed out in turn (the last one repeats), or
 *              {error: {code: 13003, message: "..."}}
 *   dialog:    "popup" (default: window.open the URL) or "blocked" (fails with 12009)
 *   bodyFails: body.getAsync fails (the pane cannot read the content)
 *   masterCategories: [{displayName, color}]
 *   displayLanguage: Outlook's display language (default "en-US"), e.g. "cs-CZ"
 *
 * In a window opened by displayDialogAsync (window.opener is set) the stub is the dialog's
 * Office.js: Office.context.ui.messageParent posts to the opener, which hands the message to
 * the pane's DialogMessageReceived handler.
 */
/*
 * Its shapes are checked against Microsoft's @types/office-js by the pane's type check
 * (`tsc -p tsconfig.json`, tests/addin/test_office_tools.py): each object it builds
 * "satisfies" a Stand (addin/office-standin.d.ts) of the real type, so it cannot drift.
 */
(function () {
  "use strict";
  var page = /** @type {any} */ (window);
  var config = window.__OFFICE_CONFIG || {};
  var calls = [];
  var handlers = {};
  var state = {
    calls: calls,
    config: config,
    categories: [],
    master: (config.masterCategories || []).slice(),
    ssoTokens: ((config.sso && config.sso.tokens) || []).slice(),
    subjectSets: [],
    dialogs: [],
  };
  page.__office = state;

  function copy(value) {
    try { return JSON.parse(JSON.stringify(value === undefined ? null : value)); } catch (e) { return String(value); }
  }
  function record(name, args) { calls.push({ name: name, args: copy(args || []) }); }
  function later(fn) { setTimeout(fn, config.latency || 0); }
  /** @returns {Stand<Office.AsyncResult<any>>} */
  function ok(value) { return { status: "succeeded", value: value, error: null }; }
  /**
   * @param {number} code
   * @param {string} [message]
   * @returns {Stand<Office.AsyncResult<any>>}
   */
  function fail(code, message) { return { status: "failed", value: null, error: { code: code, name: "Error", message: message || "failed" } }; }
  function callbackOf(args) {
    for (var i = args.length - 1; i >= 0; i--) if (typeof args[i] === "function") return args[i];
    return function () {};
  }
  function versionAtLeast(have, want) {
    var a = String(have).split(".").map(Number), b = String(want).split(".").map(Number);
    for (var i = 0; i < Math.max(a.length, b.length); i++) {
      var x = a[i] || 0, y = b[i] || 0;
      if (x !== y) return x > y;
    }
    return true;
  }

  var sets = config.sets || { Mailbox: "1.8", DialogApi: "1.2" };
  var isDialog = Boolean(window.opener) && !config.notDialog;

  // -- the selected item ------------------------------------------------------------------------

  function asyncValue(name, get, set) {
    return /** @satisfies {Stand<Office.Subject>} */ ({
      getAsync: function () { var cb = callbackOf(arguments); record(name + ".getAsync"); later(function () { cb(ok(copy(get()))); }); },
      setAsync: function (value) { var cb = callbackOf(arguments); record(name + ".setAsync", [value]); set(value); later(function () { cb(ok()); }); },
    });
  }

  function dateOf(value) { return value ? new Date(value) : null; }

  function makeItem(spec) {
    if (!spec) return null;
    var s = copy(spec);
    var compose = s.mode === "compose";
    /** @type {any} the members every item has (below: those of its mode and type) */
    var item = /** @satisfies {Stand<Office.MessageRead>} */ ({
      itemType: s.type === "appointment" ? "appointment" : "message",
      itemId: s.itemId || null,
      conversationId: s.conversationId || null,
      attachments: (s.attachments || []).map(function (a) {
        return { id: a.id, name: a.name, contentType: a.contentType, size: a.size, attachmentType: a.attachmentType || "file", isInline: Boolean(a.isInline) };
      }),
      body: /** @satisfies {Stand<Office.Body>} */ ({
        getAsync: function (coercion) {
          var cb = callbackOf(arguments);
          record("body.getAsync", [coercion]);
          later(function () {
            if (config.bodyFails || s.bodyFails) cb(fail(9020, "Could not read the body."));
            else cb(ok(coercion === "html" ? (s.bodyHtml || "") : (s.bodyText || "")));
          });
        },
      }),
      categories: /** @satisfies {Stand<Office.Categories>} */ ({
        getAsync: function () { var cb = callbackOf(arguments); record("categories.getAsync"); later(function () { cb(ok(state.categories.map(function (n) { return { displayName: n, color: "Preset9" }; }))); }); },
        addAsync: function (names) { var cb = callbackOf(arguments); record("categories.addAsync", [names]); names.forEach(function (n) { if (state.categories.indexOf(n) < 0) state.categories.push(n); }); later(function () { cb(ok()); }); },
        removeAsync: function (names) { var cb = callbackOf(arguments); record("categories.removeAsync", [names]); state.categories = state.categories.filter(function (n) { return names.indexOf(n) < 0; }); later(function () { cb(ok()); }); },
      }),
      getAllInternetHeadersAsync: function () {
        var cb = callbackOf(arguments);
        record("getAllInternetHeadersAsync");
        later(function () { cb(ok(s.headers || "")); });
      },
      getAttachmentContentAsync: function (id) {
        var cb = callbackOf(arguments);
        record("getAttachmentContentAsync", [id]);
        var found = (s.attachments || []).filter(function (a) { return a.id === id; })[0];
        later(function () {
          if (!found || found.content == null) cb(fail(9002, "No such attachment content."));
          else cb(ok({ format: found.format || "base64", content: found.content }));
        });
      },
      getSharedPropertiesAsync: function () {
        var cb = callbackOf(arguments);
        record("getSharedPropertiesAsync");
        later(function () {
          if (!s.shared) cb(fail(9048, "The item is not in a shared folder."));
          else cb(ok({ owner: s.shared.owner, targetMailbox: s.shared.owner, targetRestUrl: "https://outlook.example/api",
                       delegatePermissions: s.shared.permissions || 1 }));
        });
      },
      addHandlerAsync: function (type, handler) {
        var cb = callbackOf(Array.prototype.slice.call(arguments, 2));
        record("item.addHandlerAsync", [type]);
        (handlers[type] = handlers[type] || []).push(handler);
        later(function () { cb(ok()); });
      },
    });
    if (compose) {
      item.subject = asyncValue("subject", function () { return s.subject || ""; }, function (v) { s.subject = v; state.subjectSets.push(v); });
      item.getItemIdAsync = function () {
        var cb = callbackOf(arguments);
        record("getItemIdAsync");
        later(function () { cb(s.itemId ? ok(s.itemId) : fail(9051, "The item has not been saved.")); });
      };
      item.saveAsync = function () { var cb = callbackOf(arguments); record("saveAsync"); s.itemId = s.itemId || ("draft-" + Math.random().toString(36).slice(2)); item.itemId = null; later(function () { cb(ok(s.itemId)); }); };
      if (item.itemType === "appointment") {
        item.organizer = asyncValue("organizer", function () { return s.organizer || null; }, function () {});
        item.requiredAttendees = asyncValue("requiredAttendees", function () { return s.requiredAttendees || []; }, function (v) { s.requiredAttendees = v; });
        item.optionalAttendees = asyncValue("optionalAttendees", function () { return s.optionalAttendees || []; }, function (v) { s.optionalAttendees = v; });
        item.start = asyncValue("start", function () { return s.start; }, function (v) { s.start = v; });
        item.end = asyncValue("end", function () { return s.end; }, function (v) { s.end = v; });
        item.location = asyncValue("location", function () { return s.location || ""; }, function (v) { s.location = v; });
      } else {
        item.from = asyncValue("from", function () { return s.from || null; }, function () {});
        item.to = asyncValue("to", function () { return s.to || []; }, function (v) { s.to = v; });
        item.cc = asyncValue("cc", function () { return s.cc || []; }, function (v) { s.cc = v; });
      }
    } else {
      item.subject = s.subject || "";
      item.internetMessageId = s.internetMessageId || null;
      if (item.itemType === "appointment") {
        item.organizer = s.organizer || null;
        item.requiredAttendees = s.requiredAttendees || [];
        item.optionalAttendees = s.optionalAttendees || [];
        item.start = dateOf(s.start);
        item.end = dateOf(s.end);
        item.location = s.location || "";
      } else {
        item.from = s.from || null;
        item.sender = s.from || null;
        item.to = s.to || [];
        item.cc = s.cc || [];
      }
    }
    state.spec = s;
    return item;
  }

  // -- the dialog -------------------------------------------------------------------------------

  function displayDialogAsync(url, options) {
    var cb = callbackOf(arguments);
    record("displayDialogAsync", [url, options && typeof options === "object" ? options : null]);
    if (config.dialog === "blocked") { later(function () { cb(fail(12009, "The user chose to ignore the dialog box.")); }); return; }
    var win = window.open(url, "office-dialog", "width=480,height=640");
    if (!win) { later(function () { cb(fail(12009, "Pop-up blocked.")); }); return; }
    var dialogHandlers = {};
    var closedByApp = false;
    function fire(type, arg) { (dialogHandlers[type] || []).forEach(function (h) { h(arg); }); }
    function onMessage(event) {
      if (event.source !== win || event.origin !== window.location.origin) return;
      if (!event.data || event.data.__officeDialog !== true) return;
      record("dialog.message");
      fire(Office.EventType.DialogMessageReceived, { message: event.data.message, origin: event.origin });
    }
    window.addEventListener("message", onMessage);
    var watch = setInterval(function () {
      if (win.closed) {
        clearInterval(watch);
        window.removeEventListener("message", onMessage);
        if (!closedByApp) fire(Office.EventType.DialogEventReceived, { error: 12006 });
      }
    }, 100);
    var dialog = /** @satisfies {Stand<Office.Dialog>} */ ({
      addEventHandler: function (type, handler) { (dialogHandlers[type] = dialogHandlers[type] || []).push(handler); },
      close: function () { record("dialog.close"); closedByApp = true; try { win.close(); } catch (e) { /* gone */ } },
      messageChild: function () {},
    });
    state.dialogs.push(dialog);
    later(function () { cb(ok(dialog)); });
  }

  function messageParent(message, options) {
    record("messageParent", [options || null]);
    var target = window.opener || (window.parent !== window ? window.parent : null);
    if (!target) throw new Error("messageParent outside a dialog");
    target.postMessage({ __officeDialog: true, message: String(message) }, window.location.origin);
  }

  // -- Office -----------------------------------------------------------------------------------

  var currentItem = isDialog ? null : makeItem(config.item);
  var user = config.user || { displayName: "Ann Archer", emailAddress: "ann@contoso.test" };

  var mailbox = isDialog ? undefined : /** @satisfies {Stand<Office.Mailbox>} */ ({
    get item() { return currentItem; },
    userProfile: { displayName: user.displayName, emailAddress: user.emailAddress, timeZone: "UTC" },
    masterCategories: /** @satisfies {Stand<Office.MasterCategories>} */ ({
      getAsync: function () { var cb = callbackOf(arguments); record("masterCategories.getAsync"); later(function () { cb(ok(copy(state.master))); }); },
      addAsync: function (list) { var cb = callbackOf(arguments); record("masterCategories.addAsync", [list]); state.master = state.master.concat(list); later(function () { cb(ok()); }); },
    }),
    addHandlerAsync: function (type, handler) {
      var cb = callbackOf(Array.prototype.slice.call(arguments, 2));
      record("mailbox.addHandlerAsync", [type]);
      (handlers[type] = handlers[type] || []).push(handler);
      later(function () { cb(ok()); });
    },
  });

  var Office = /** @satisfies {Stand<typeof globalThis.Office>} */ ({
    AsyncResultStatus: { Succeeded: "succeeded", Failed: "failed" },
    CoercionType: { Html: "html", Text: "text" },
    EventType: {
      ItemChanged: "olkItemSelectedChanged", RecipientsChanged: "olkRecipientsChanged",
      DialogMessageReceived: "dialogMessageReceived", DialogEventReceived: "dialogEventReceived",
    },
    HostType: { Outlook: "Outlook" },
    MailboxEnums: {
      ItemType: { Message: "message", Appointment: "appointment" },
      AttachmentContentFormat: { Base64: "base64", Url: "url", Eml: "eml", ICalendar: "iCalendar" },
      AttachmentType: { File: "file", Item: "item", Cloud: "cloud" },
      CategoryColor: { Preset0: "Preset0", Preset9: "Preset9" },
    },
    context: {
      displayLanguage: config.displayLanguage || "en-US",
      mailbox: mailbox,
      requirements: {
        isSetSupported: function (name, version) {
          record("isSetSupported", [name, version || null]);
          return Object.prototype.hasOwnProperty.call(sets, name) && versionAtLeast(sets[name], version || "1.1");
        },
      },
      ui: { displayDialogAsync: displayDialogAsync, messageParent: messageParent },
    },
    auth: {
      getAccessToken: function (options) {
        record("auth.getAccessToken", [options || null]);
        return new Promise(function (resolve, reject) {
          later(function () {
            var sso = config.sso || { error: { code: 13012, message: "SSO is not supported here." } };
            if (sso.error) { reject({ code: sso.error.code, name: "Error", message: sso.error.message }); return; }
            var token = state.ssoTokens.length > 1 ? state.ssoTokens.shift() : state.ssoTokens[0];
            if (!token) reject({ code: 13001, message: "No token." }); else resolve(token);
          });
        });
      },
    },
    onReady: function (callback) {
      record("onReady");
      /** @type {any} */
      var info = { host: "Outlook", platform: "OfficeOnline" };
      return new Promise(function (resolve) {
        later(function () { if (callback) callback(info); resolve(info); });
      });
    },
  });
  page.Office = Office;

  /** Tests: select another item, as Outlook does when the user clicks another email. */
  state.selectItem = function (spec) {
    currentItem = makeItem(spec);
    (handlers[Office.EventType.ItemChanged] || []).forEach(function (h) { h({ type: Office.EventType.ItemChanged }); });
  };
  /** Tests: change a compose item's recipients and tell the pane. */
  state.setRecipients = function (to) {
    state.spec.to = to;
    (handlers[Office.EventType.RecipientsChanged] || []).forEach(function (h) { h({ type: Office.EventType.RecipientsChanged, changedRecipientFields: { to: true } }); });
  };
})();
