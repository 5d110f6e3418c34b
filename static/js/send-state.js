/* An email's page follows its sending state (waiting, sending, sent with the time, not sent
   with the reason) until it is final; then the page reloads once to offer Retry or Reply. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("send-state");
    if (!box) { return; }
    var waiting = ["pending_send", "sending"];
    if (waiting.indexOf(box.getAttribute("data-status")) < 0) { return; }
    function poll() {
      fetch(box.getAttribute("data-url"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (state) {
          if (!state) { window.setTimeout(poll, 5000); return; }
          var badge = document.getElementById("send-status");
          badge.textContent = state.label;
          badge.className = "badge status-" + state.status;
          document.getElementById("send-error").textContent = state.error || "";
          if (state.final) { window.location.reload(); return; }
          window.setTimeout(poll, 1500);
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 1000);
  });
})();
