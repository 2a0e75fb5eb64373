
(function () {
  var table = document.querySelector("table.runs");
  if (!table) return;
  table.classList.add("sortable");
  var statuses = [];  // a status filter: the statuses present, in the table's order
  table.querySelectorAll("tbody tr").forEach(function (r) {
    var s = r.getAttribute("data-status");
    if (s && statuses.indexOf(s) < 0) statuses.push(s);
  });
  if (statuses.length > 1) {
    var select = document.createElement("select");
    select.id = "status-filter";
    select.setAttribute("aria-label", "status");
    ["every status"].concat(statuses).forEach(function (s, k) {
      var o = document.createElement("option");
      o.value = k ? s : ""; o.textContent = s;
      select.appendChild(o);
    });
    select.addEventListener("change", function () {
      table.querySelectorAll("tbody tr").forEach(function (r) {
        r.hidden = !!select.value && r.getAttribute("data-status") !== select.value;
      });
    });
    var controls = document.createElement("div");
    controls.className = "controls";
    controls.appendChild(select);
    table.parentNode.parentNode.insertBefore(controls, table.parentNode);
  }
  function key(row, i) {
    var cell = row.cells[i];
    var s = cell.getAttribute("data-sort");
    if (s === null) s = cell.textContent.trim();
    if (s === "") return null;
    var n = Number(s);
    return isNaN(n) ? s.toLowerCase() : n;
  }
  table.querySelectorAll("th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () {
      var i = Number(th.getAttribute("data-col"));
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, i), y = key(b, i);
        if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
        if (typeof x !== typeof y) return (typeof x === "number" ? -1 : 1) * dir;
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
