/* Administration pages: Dynamics-like depth icons in the privilege grid.
 *
 * Without this script every cell is a <select>, which works as is. With it, each select
 * gets a button showing the depth as an icon; a click (or Enter/Space) moves to the next
 * depth and writes it back into the select, which stays the form field that is sent.
 * A click on a column heading moves every editable cell of the column to the next depth. */
(function () {
  "use strict";

  function syncButton(select, button) {
    var option = select.options[select.selectedIndex];
    button.className = "depth-icon d" + select.value;
    button.setAttribute("aria-label", select.getAttribute("aria-label") + ": " + option.text);
    button.title = option.text;
  }

  function step(select) {
    select.selectedIndex = (select.selectedIndex + 1) % select.options.length;
    select.dispatchEvent(new Event("change"));
  }

  function enhance(grid) {
    var selects = grid.querySelectorAll("select.depth-select");
    selects.forEach(function (select) {
      var button = document.createElement("button");
      button.type = "button";
      button.disabled = select.disabled;
      syncButton(select, button);
      button.addEventListener("click", function () { step(select); });
      select.addEventListener("change", function () { syncButton(select, button); });
      select.hidden = true;
      select.parentNode.insertBefore(button, select);
    });
    grid.classList.add("enhanced");

    var headings = grid.querySelectorAll("thead th");
    headings.forEach(function (th, column) {
      if (column === 0) { return; }
      var cells = Array.prototype.map.call(grid.querySelectorAll("tbody tr"), function (row) {
        return row.children[column].querySelector("select.depth-select");
      }).filter(function (s) { return s && !s.disabled; });
      if (!cells.length) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "column-step";
      button.textContent = th.textContent;
      button.title = "Change the whole column";
      button.setAttribute("aria-label", th.textContent.trim() + ": next depth for the whole column");
      button.addEventListener("click", function () {
        var next = (cells[0].selectedIndex + 1) % cells[0].options.length;
        cells.forEach(function (s) { s.selectedIndex = next; s.dispatchEvent(new Event("change")); });
      });
      th.textContent = "";
      th.appendChild(button);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.privilege-grid").forEach(enhance);
  });
})();
