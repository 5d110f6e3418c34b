/* The compose page: the Squire rich-text editor over the message box (its HTML is put back
   into the form on submit; the server sanitizes it), type-ahead on To, Cc and Bcc from
   /compose/suggest (people and records the user may read), and the sender's signature
   swapped when the From choice changes. */
(function () {
  "use strict";

  function cleanFragment(html) {
    // Parsed inert, without scripts, frames, handlers or script URLs (the server sanitizes
    // again; the page's policy runs no inline script anyway).
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("script,style,iframe,object,embed,link,meta,form").forEach(function (n) { n.remove(); });
    doc.body.querySelectorAll("*").forEach(function (el) {
      Array.prototype.slice.call(el.attributes).forEach(function (a) {
        var v = a.value.replace(/\s+/g, "").toLowerCase();
        if (a.name.indexOf("on") === 0 || v.indexOf("javascript:") === 0 || v.indexOf("data:text") === 0) {
          el.removeAttribute(a.name);
        }
      });
    });
    var frag = document.createDocumentFragment();
    Array.prototype.slice.call(doc.body.childNodes).forEach(function (n) { frag.appendChild(document.importNode(n, true)); });
    return frag;
  }

  function setUpEditor(form) {
    var area = form.querySelector("#html_body");
    var box = form.querySelector("#editor");
    var toolbar = form.querySelector(".editor-toolbar");
    if (!area || !box || typeof window.Squire !== "function") { return; }
    box.hidden = false;
    toolbar.hidden = false;
    area.hidden = true;
    var editor = new window.Squire(box, { sanitizeToDOMFragment: cleanFragment, blockTag: "P" });
    editor.setHTML(area.value || "");
    box.setAttribute("role", "textbox");
    box.setAttribute("aria-multiline", "true");
    box.setAttribute("aria-label", "Message");
    toolbar.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-cmd]");
      if (!button) { return; }
      var cmd = button.getAttribute("data-cmd");
      if (cmd === "link") {
        var url = window.prompt("Link address (https://...)");
        if (url && /^(https?:|mailto:)/i.test(url.trim())) { editor.makeLink(url.trim()); }
      } else {
        editor[cmd]();
      }
      editor.focus();
    });
    form.addEventListener("submit", function () { area.value = editor.getHTML(); });
    form.editor = editor;
  }

  function setUpSuggestions(input) {
    var list = input.parentNode.querySelector(".suggestions");
    var timer = null;
    var seq = 0;
    function lastTerm() {
      var parts = input.value.split(/[,;]/);
      return parts[parts.length - 1].trim();
    }
    function choose(value) {
      var parts = input.value.split(/[,;]/);
      parts[parts.length - 1] = " " + value;
      input.value = parts.map(function (p) { return p.trim(); }).filter(Boolean).join(", ") + ", ";
      list.hidden = true;
      input.focus();
    }
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      var term = lastTerm();
      if (term.length < 2) { list.hidden = true; return; }
      timer = window.setTimeout(function () {
        var mine = ++seq;
        fetch(input.getAttribute("data-suggest") + "?q=" + encodeURIComponent(term), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : { items: [] }; })
          .then(function (data) {
            if (mine !== seq) { return; }
            list.textContent = "";
            data.items.forEach(function (item) {
              var li = document.createElement("li");
              li.setAttribute("role", "option");
              li.setAttribute("data-value", item.value);
              li.textContent = item.value + " · " + item.kind;
              li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(item.value); });
              list.appendChild(li);
            });
            list.hidden = data.items.length === 0;
          });
      }, 150);
    });
    input.addEventListener("blur", function () { list.hidden = true; });
  }

  // Changing the sender swaps the signature: the block marked title="Signature" (the
  // server marks it so) is replaced by the new sender's, or the new one is added at the end.
  function setUpSender(form) {
    var select = form.querySelector("#sender");
    if (!select) { return; }
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      var html = option ? option.getAttribute("data-signature") || "" : "";
      var editor = form.editor;
      var area = form.querySelector("#html_body");
      // Parsed inert (DOMParser): nothing in the body loads or runs while it is edited here.
      var holder = new DOMParser().parseFromString(editor ? editor.getHTML() : area.value,
                                                   "text/html").body;
      var old = holder.querySelector('div[title="Signature"]');
      if (old) { old.remove(); }
      var body = holder.innerHTML;
      if (html) { body = body.replace(/(<p><br><\/p>)?\s*$/, "") + "<p><br></p>" + html; }
      if (editor) { editor.setHTML(body); } else { area.value = body; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form.compose");
    if (!form) { return; }
    setUpEditor(form);
    setUpSender(form);
    form.querySelectorAll("input[data-suggest]").forEach(setUpSuggestions);
  });
})();
