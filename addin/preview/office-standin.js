/*
 * A small stand-in for Office.js, used only by the add-in preview (/addin/preview): it gives
 * the real task pane the Office.context.mailbox.item API surface it uses, for the sample item
 * selected in the preview page (window.parent.RegardingPreview), and routes the sign-in
 * dialog to the real /addin/signin page shown over the preview. In the dialog page itself it
 * provides Office.context.ui.messageParent (a postMessage to this origin only).
 *
 * Requirement sets: Mailbox 1.8 (categories, headers, attachment contents) and DialogApi
 * 1.2; no IdentityAPI, so the pane signs in with the dialog, as it does without SSO.
 *
 * Its shapes are checked against Microsoft's @types/office-js by the pane's type check
 * (`tsc -p tsconfig.json`): each object "satisfies" a Stand (addin/office-standin.d.ts).
 */
(function () {
  "use strict";

  var SETS = { Mailbox: "1.8", DialogApi: "1.2" };
  var inDialog = window.location.pathname.slice(-"/addin/signin".length) === "/addin/signin";
  var preview = null; // the preview page's API, once it is there
  var itemChanged = [];
  var built = { key: null, item: null };
  var masterList = []; // the mailbox's master categories

  window.__regardingPreview = true; // the pane asks for the dialog's preview flavour

  /** @returns {Stand<Office.AsyncResult<any>>} */
  function ok(value) { return { status: "succeeded", value: value, error: null }; }
  /**
   * @param {number} code
   * @param {string} message
   * @returns {Stand<Office.AsyncResult<any>>}
   */
  function fail(code, message) { return { status: "failed", value: null, error: { code: code, name: "Error", message: message } }; }
  function callbackOf(args) {
    for (var i = args.length - 1; i >= 0; i--) if (typeof args[i] === "function") return args[i];
    return function () {};
  }
  function async(cb, result) { setTimeout(function () { cb(result); }, 0); }
  function atLeast(have, want) {
    var a = String(have).split(".").map(Number), b = String(want || "1.1").split(".").map(Number);
    for (var i = 0; i < Math.max(a.length, b.length); i++) {
      if ((a[i] || 0) !== (b[i] || 0)) return (a[i] || 0) > (b[i] || 0);
    }
    return true;
  }
  function value(get, set) {
    return /** @satisfies {Stand<Office.Subject>} */ ({
      getAsync: function () { async(callbackOf(arguments), ok(get())); },
      setAsync: function (v) { set(v); async(callbackOf(arguments), ok()); },
    });
  }
  function headersOf(s) {
    var lines = [];
    if (s.internetMessageId) lines.push("Message-ID: " + s.internetMessageId);
    if (s.date) lines.push("Date: " + new Date(s.date).toUTCString());
    if (s.subject) lines.push("Subject: " + s.subject.replace(/[\r\n]+/g, " "));
    return lines.join("\r\n") + "\r\n";
  }

  function build(s) {
    var compose = s.mode === "compose";
    var appointment = s.type === "appointment";
    /** @type {any} the members every item has (below: those of its mode and type) */
    var item = /** @satisfies {Stand<Office.MessageRead>} */ ({
      itemType: appointment ? "appointment" : "message",
      itemId: s.itemId || undefined,
      conversationId: s.conversationId || undefined,
      attachments: (s.attachments || []).map(function (a) {
        return { id: a.id, name: a.name, contentType: a.contentType, size: a.size, attachmentType: a.attachmentType || "file", isInline: Boolean(a.isInline) };
      }),
      body: /** @satisfies {Stand<Office.Body>} */ ({
        getAsync: function (coercion) {
          async(callbackOf(arguments), ok(coercion === "html" ? (s.bodyHtml || "") : (s.bodyText || "")));
        },
      }),
      categories: /** @satisfies {Stand<Office.Categories>} */ ({
        getAsync: function () {
          var names = Array.from(preview.categories(s.key));
          async(callbackOf(arguments), ok(names.map(function (n) { return { displayName: n, color: "Preset9" }; })));
        },
        addAsync: function (names) {
          var set = preview.categories(s.key);
          names.forEach(function (n) { set.add(n); });
          preview.categoriesChanged();
          async(callbackOf(arguments), ok());
        },
        removeAsync: function (names) {
          var set = preview.categories(s.key);
          names.forEach(function (n) { set.delete(n); });
          preview.categoriesChanged();
          async(callbackOf(arguments), ok());
        },
      }),
      getAllInternetHeadersAsync: function () { async(callbackOf(arguments), ok(headersOf(s))); },
      getAttachmentContentAsync: function (id) {
        var found = (s.attachments || []).filter(function (a) { return a.id === id; })[0];
        async(callbackOf(arguments), found && found.contentBase64 ? ok({ format: "base64", content: found.contentBase64 })
          : fail(9002, "The attachment could not be read."));
      },
      addHandlerAsync: function (type, handler) {
        if (type === Office.EventType.RecipientsChanged) {
          preview.subscribe(function (what) { if (what === "recipients" && built.key === s.key) handler({ type: type }); });
        }
        async(callbackOf(Array.prototype.slice.call(arguments, 2)), ok());
      },
    });
    if (compose) {
      item.subject = value(function () { return s.subject || ""; }, function (v) { preview.setSubject(s.key, v); });
      item.getItemIdAsync = function () {
        async(callbackOf(arguments), s.itemId ? ok(s.itemId) : fail(9051, "The item has not been saved."));
      };
      item.saveAsync = function () {
        s.itemId = s.itemId || ("preview-draft-" + Math.random().toString(36).slice(2, 10));
        async(callbackOf(arguments), ok(s.itemId));
      };
      item.from = value(function () { return s.from || preview.user; }, function () {});
      item.to = value(function () { return s.to || []; }, function (v) { s.to = v; });
      item.cc = value(function () { return s.cc || []; }, function (v) { s.cc = v; });
    } else {
      item.subject = s.subject || "";
      item.internetMessageId = s.internetMessageId || undefined;
      if (appointment) {
        item.organizer = s.organizer || null;
        item.requiredAttendees = s.requiredAttendees || [];
        item.optionalAttendees = s.optionalAttendees || [];
        item.start = s.start ? new Date(s.start) : null;
        item.end = s.end ? new Date(s.end) : null;
        item.location = s.location || "";
      } else {
        item.from = s.from || null;
        item.to = s.to || [];
        item.cc = s.cc || [];
      }
    }
    return item;
  }

  function currentItem() {
    var s = preview && preview.currentItem();
    if (!s) return null;
    if (built.key !== s.key) built = { key: s.key, item: build(s) };
    return built.item;
  }

  function displayDialogAsync(url) {
    var cb = callbackOf(arguments);
    var handlers = {};
    var dialog;
    function fire(type, arg) { (handlers[type] || []).forEach(function (h) { h(arg); }); }
    try {
      dialog = preview.openDialog(url, {
        onMessage: function (message) { fire(Office.EventType.DialogMessageReceived, { message: message, origin: window.location.origin }); },
        onClosed: function () { fire(Office.EventType.DialogEventReceived, { error: 12006 }); },
      });
    } catch (exc) {
      async(cb, fail(12004, String(exc && exc.message)));
      return;
    }
    async(cb, ok(/** @satisfies {Stand<Office.Dialog>} */ ({
      addEventHandler: function (type, handler) { (handlers[type] = handlers[type] || []).push(handler); },
      close: function () { dialog.close(); },
    })));
  }

  function messageParent(message) {
    var target = window.opener || (window.parent !== window ? window.parent : null);
    if (target) target.postMessage({ __officeDialog: true, message: String(message) }, window.location.origin);
  }

  var Office = /** @satisfies {Stand<typeof globalThis.Office>} */ ({
    AsyncResultStatus: { Succeeded: "succeeded", Failed: "failed" },
    CoercionType: { Html: "html", Text: "text" },
    EventType: {
      ItemChanged: "olkItemSelectedChanged", RecipientsChanged: "olkRecipientsChanged",
      DialogMessageReceived: "dialogMessageReceived", DialogEventReceived: "dialogEventReceived",
    },
    MailboxEnums: {
      ItemType: { Message: "message", Appointment: "appointment" },
      AttachmentContentFormat: { Base64: "base64", Url: "url", Eml: "eml", ICalendar: "iCalendar" },
      CategoryColor: { Preset9: "Preset9" },
    },
    context: {
      displayLanguage: navigator.language || "en-US",
      requirements: { isSetSupported: function (name, version) { return name in SETS && atLeast(SETS[name], version); } },
      ui: { displayDialogAsync: displayDialogAsync, messageParent: messageParent },
      mailbox: inDialog ? undefined : {
        get item() { return currentItem(); },
        get userProfile() {
          var u = (preview && preview.user) || {};
          return { displayName: u.displayName || "", emailAddress: u.emailAddress || "", timeZone: "UTC" };
        },
        masterCategories: {
          getAsync: function () { async(callbackOf(arguments), ok(masterList.slice())); },
          addAsync: function (more) { masterList = masterList.concat(more); async(callbackOf(arguments), ok()); },
        },
        addHandlerAsync: function (type, handler) {
          if (type === Office.EventType.ItemChanged) itemChanged.push(handler);
          async(callbackOf(Array.prototype.slice.call(arguments, 2)), ok());
        },
      },
    },
    onReady: function (callback) {
      return new Promise(function (resolve) {
        var started = Date.now();
        (function wait() {
          var parentPreview = null;
          try { parentPreview = window.parent !== window ? window.parent.RegardingPreview : null; } catch { parentPreview = null; }
          if (!inDialog && !parentPreview && Date.now() - started < 10000) { setTimeout(wait, 20); return; }
          preview = parentPreview;
          if (preview) {
            preview.subscribe(function (what) {
              if (what !== "item") return;
              itemChanged.forEach(function (h) { h({ type: Office.EventType.ItemChanged }); });
            });
          }
          /** @type {any} */
          var info = { host: "Outlook", platform: "OfficeOnline" };
          if (callback) callback(info);
          resolve(info);
        })();
      });
    },
  });
  /** @type {any} */ (window).Office = Office;
})();
