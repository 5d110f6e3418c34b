/* Small progressive enhancements for the server-rendered pages; every page works without
   them. Loaded as a file (the CSP allows no inline script):
   - a filter box above long link selects narrows their options as one types;
   - list filters marked .autosubmit submit their form when changed. */
(function () {
  "use strict";

  function filterSelect(input) {
    var select = document.getElementById(input.getAttribute("data-filter-for"));
    if (!select) { return; }
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(select.options, function (option) {
        var keep = !needle || option.value === "" || option.selected ||
          option.text.toLowerCase().indexOf(needle) !== -1;
        option.hidden = !keep;
      });
    });
  }

  function autosubmit(select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.submit(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("input.lookup-filter[data-filter-for]").forEach(filterSelect);
    document.querySelectorAll("select.autosubmit").forEach(autosubmit);
  });
}());
