
(function () {
  // The run table of a large report, from the columns in #runs-data (see report/table.py):
  // a page of rows at a time, sorted by a click on a column, filtered by status and text.
  var source = document.getElementById("runs-data");
  if (!source) return;
  var D = JSON.parse(source.textContent);
  var box = document.getElementById("runs-table");
  var GOOD = {ok: true, warned: true, running: true};
  var LOOKUP = {};
  for (var a = 0; a < D.alphabet.length; a++) LOOKUP[D.alphabet.charCodeAt(a)] = a;
  function unpack(codes) {  // one character a row (few values), or already a list
    if (typeof codes !== "string") return codes;
    var out = new Array(codes.length);
    for (var k = 0; k < codes.length; k++) out[k] = LOOKUP[codes.charCodeAt(k)];
    return out;
  }
  ["status", "sweep", "parent", "link", "error", "traceback"].forEach(function (key) {
    D[key] = unpack(D[key]);
  });
  D.columns.forEach(function (col) {
    if (col.nums) col.num = unpack(col.codes).map(function (c) { return col.nums[c]; });
    else if (col.values && !col.codes) col.codes = col.values.map(function (v, k) { return k; });
    else if (col.codes) col.codes = unpack(col.codes);
  });
  var rank = D.statuses.map(function (s) {
    var i = D.order.indexOf(s);
    return i < 0 ? D.order.length - 1.5 : i;
  });

  function quote(s) {  // Python's urllib.parse.quote(s, safe="")
    return encodeURIComponent(s).replace(/[!'()*]/g, function (c) {
      return "%" + c.charCodeAt(0).toString(16).toUpperCase();
    });
  }
  function dir(i) { return D.parents[D.parent[i]] + quote(D.names[i] || D.run[i]); }
  function status(i) { return D.statuses[D.status[i]]; }
  function seconds(s) {
    if (s === null || !isFinite(s)) return "\u2013";
    if (s < 60) return s < 10 ? s.toFixed(1) + " s" : s.toFixed(0) + " s";
    var t = Math.round(s), m = Math.floor(t / 60), r = t % 60;
    if (m < 60) return m + " min " + (r < 10 ? "0" : "") + r + " s";
    var h = Math.floor(m / 60); m = m % 60;
    return h + " h " + (m < 10 ? "0" : "") + m + " min";
  }
  function number(v, col) {
    if (typeof v === "string") return v;  // inf, nan
    if (col.kind === "result" && !Number.isInteger(v)) return String(Number(v.toPrecision(4)));
    if (col.int || !Number.isInteger(v) || Math.abs(v) >= 1e16) return String(v);
    return v + ".0";
  }

  // columns: a header, a sort key and a cell per row
  var columns = [{name: "status", kind: "", key: function (i) { return rank[D.status[i]]; }},
                 {name: "run", kind: "", key: function (i) { return D.run[i].toLowerCase(); }}];
  if (D.sweep.length) {
    columns.push({name: "sweep", kind: "", key: function (i) { return D.sweeps[D.sweep[i]]; }});
  }
  D.columns.forEach(function (col) {
    if (col.num) {
      col.text = function (i) { return col.num[i] === null ? "" : number(col.num[i], col); };
      col.key = function (i) { var v = col.num[i]; return typeof v === "number" ? v : null; };
      col.title = function (i) { var t = col.text(i); var v = col.num[i];
        return v !== null && t !== String(v) && col.kind === "result" ? String(v) : ""; };
    } else {
      col.text = function (i) { var v = col.values[col.codes[i]]; return v ? v[0] : ""; };
      col.key = function (i) { var t = col.text(i); return t === "" ? null : t.toLowerCase(); };
      col.title = function (i) { var v = col.values[col.codes[i]]; return v && v[1] || ""; };
    }
    columns.push(col);
  });
  columns.push({name: "time", kind: "", key: function (i) { return D.duration[i]; }});
  columns.push({name: "notebooks", kind: null}, {name: "config", kind: null});
  var hasErrors = D.errors.some(function (e) { return e; });
  if (hasErrors) {
    columns.push({name: "error", kind: "", key: function (i) {
      var e = D.errors[D.error[i]]; return e ? e.toLowerCase() : null; }});
  }

  var order = [];
  for (var i = 0; i < D.n; i++) order.push(i);  // failures first, as written
  var view = order, page = 0, sortCol = -1, sortDir = 1;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {  // empty attributes left out, but an empty option value kept
      var v = attrs[k];
      if (v !== null && v !== undefined && (v !== "" || k === "value")) e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function link(href, label, state, title) {
    var bad = !GOOD[state];
    if (!href) return el("span", {title: title}, label);
    return el("a", {href: href, title: title, "class": bad ? "bad" : ""}, (bad ? "\u26a0 " : "") + label);
  }

  var statusSelect = el("select", {id: "status-filter", "aria-label": "status"});
  statusSelect.appendChild(el("option", {value: ""}, "every status"));
  statusSelect.appendChild(el("option", {value: "!ok"}, "not ok"));
  D.order.forEach(function (s) { statusSelect.appendChild(el("option", {value: s}, s)); });
  var text = el("input", {id: "text-filter", type: "search", size: "36",
                          placeholder: "filter: text in the run or a parameter, or key=value"});
  var prev = el("button", {type: "button", id: "prev"}, "\u2039 previous");
  var next = el("button", {type: "button", id: "next"}, "next \u203a");
  var where = el("span", {id: "where", "class": "note"});
  var controls = el("div", {"class": "controls"});
  [statusSelect, text, prev, next, where].forEach(function (c) { controls.appendChild(c); });
  var table = el("table", {"class": "runs sortable"});
  var head = table.createTHead().insertRow();
  columns.forEach(function (col, c) {
    var th = el("th", col.kind === null ? {} : {"data-col": c});
    if (col.kind) th.appendChild(el("small", {}, col.kind));
    th.appendChild(document.createTextNode(col.name));
    if (col.kind !== null) th.addEventListener("click", function () { sortBy(c, th); });
    head.appendChild(th);
  });
  var body = table.appendChild(document.createElement("tbody"));
  var wrap = el("div", {"class": "table-wrap"});
  wrap.appendChild(table);
  box.appendChild(controls);
  box.appendChild(wrap);

  function filter() {
    var want = statusSelect.value, query = text.value.trim().toLowerCase();
    var key = null, value = null, eq = query.indexOf("=");
    if (eq > 0) {
      key = query.slice(0, eq).trim(); value = query.slice(eq + 1).trim();
      key = D.columns.filter(function (c) { return c.name.toLowerCase() === key; })[0] || null;
    }
    view = order.filter(function (i) {
      var s = status(i);
      if (want === "!ok" ? GOOD[s] && s !== "running" : want && s !== want) return false;
      if (!query) return true;
      if (key) return key.text(i).toLowerCase() === value;
      if (D.run[i].toLowerCase().indexOf(query) >= 0) return true;
      return D.columns.some(function (c) { return c.text(i).toLowerCase().indexOf(query) >= 0; });
    });
    page = 0;
    draw();
  }
  function sortBy(c, th) {
    sortDir = sortCol === c && sortDir > 0 ? -1 : 1;
    sortCol = c;
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    var key = columns[c].key, keys = new Array(D.n);
    order.forEach(function (i) { keys[i] = key(i); });
    order = order.slice().sort(function (a, b) {
      var x = keys[a], y = keys[b];
      if (x === null || y === null) return x === y ? a - b : x === null ? 1 : -1;
      if (typeof x !== typeof y) return (typeof x === "number" ? -1 : 1) * sortDir;
      return (x < y ? -1 : x > y ? 1 : a - b) * sortDir;
    });
    filter();
  }
  function draw() {
    var pages = Math.max(1, Math.ceil(view.length / D.page));
    page = Math.min(page, pages - 1);
    var rows = view.slice(page * D.page, (page + 1) * D.page);
    body.textContent = "";
    rows.forEach(function (i) {
      var s = status(i), d = dir(i), tr = body.insertRow();
      if (!GOOD[s]) tr.className = "bad";
      var td = tr.insertCell();
      td.appendChild(el("span", {"class": "badge", style: "--c:" + (D.colors[s] || "#4D4D4D")}, s));
      if (D.retried[i]) {
        td.appendChild(document.createTextNode(" "));
        td.appendChild(el("span", {"class": "attempts", title: D.retried[i] +
          " attempts: see attempt_log in status.json"}, "\u00d7" + D.retried[i]));
      }
      td = tr.insertCell(); td.className = "run";
      td.appendChild(el("a", {href: d + "/", title: "run directory"}, D.run[i]));
      if (D.best[i]) {
        td.appendChild(document.createTextNode(" "));
        td.appendChild(el("span", {"class": "best", title: "the best trial"}, "\u2605 best"));
      }
      if (D.sweep.length) tr.insertCell().textContent = D.sweeps[D.sweep[i]];
      D.columns.forEach(function (col) {
        td = tr.insertCell();
        td.textContent = col.text(i);
        var title = col.title(i);
        if (title) td.title = title;
        if (col.num && col.num[i] !== null) td.className = "num";
      });
      td = tr.insertCell(); td.className = "num"; td.textContent = D.duration[i] === null ? "" : seconds(D.duration[i]);
      var links = D.links[D.link[i]];
      td = tr.insertCell(); td.className = "links";
      links.nb.forEach(function (n) { td.appendChild(link(n[1] && d + "/" + n[1], n[0], n[2], n[3])); });
      td = tr.insertCell(); td.className = "links";
      td.appendChild(link(d + "/" + D.config, D.config, "ok", ""));
      if (hasErrors) {
        td = tr.insertCell(); td.className = "err";
        var error = D.errors[D.error[i]];
        if (error && links.err) td.appendChild(el("a", {href: d + "/" + links.err, title: "open at the error"}, error));
        else td.textContent = error;
        var tb = D.tracebacks[D.traceback[i]];
        if (tb) {
          var det = el("details");
          det.appendChild(el("summary", {}, "traceback"));
          det.appendChild(el("pre", {}, tb));
          td.appendChild(det);
        }
      }
    });
    var first = view.length ? page * D.page + 1 : 0;
    where.textContent = first + "\u2013" + (page * D.page + rows.length) + " of " +
      view.length.toLocaleString("en") + (view.length < D.n ? " (of " + D.n.toLocaleString("en") + " runs)" : " runs") +
      ", page " + (page + 1) + " of " + pages;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  }
  prev.addEventListener("click", function () { page -= 1; draw(); });
  next.addEventListener("click", function () { page += 1; draw(); });
  statusSelect.addEventListener("change", filter);
  text.addEventListener("input", filter);
  draw();
})();
