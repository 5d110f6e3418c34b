/* A bulk mailbox job's page follows its progress (the bar and the sentence under it, a
   polite live region) until the job is finished; then the page reloads once to show the
   result of every mailbox. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var bar = document.getElementById("job-progress");
    if (!bar || bar.getAttribute("data-finished") === "true") { return; }
    var status = document.getElementById("job-status");
    function poll() {
      fetch(bar.getAttribute("data-url"), { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (state) {
          if (!state) { window.setTimeout(poll, 5000); return; }
          bar.value = state.finished_items;
          bar.textContent = state.percent + "%";
          status.textContent = state.sentence;
          if (state.finished) { window.location.reload(); return; }
          window.setTimeout(poll, 2000);
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }
    window.setTimeout(poll, 1000);
  });
})();
