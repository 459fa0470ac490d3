/* probe report: sortable, filterable, paged tables and attribution overlay toggles.
   Builds DOM with textContent only: the data holds untrusted class names. */
(function () {
  "use strict";

  function cmpValues(a, b) {
    var an = a === null || a === undefined || a === "", bn = b === null || b === undefined || b === "";
    if (an || bn) return an && bn ? 0 : (an ? 1 : -1);  // empty values always last
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function initTable(root) {
    var src = document.getElementById(root.getAttribute("data-source"));
    if (!src) return;
    var rows = JSON.parse(src.textContent);
    var heads = Array.prototype.slice.call(root.querySelectorAll("thead th"));
    var classes = heads.map(function (th) { return th.className; });
    var tbody = root.querySelector("tbody");
    var pager = root.querySelector(".dt-pager");
    var count = root.querySelector(".dt-count");
    var filter = root.querySelector(".dt-filter");
    // <select class="dt-facet" data-col="k">: keep rows whose column k has that filter key
    // (the cell's 5th element when present, else its text)
    var facets = Array.prototype.slice.call(root.querySelectorAll("select.dt-facet"));
    var size = parseInt(root.getAttribute("data-page-size"), 10) || 50;
    var hay = rows.map(function (r) { return r.map(function (c) { return String(c[0]); }).join(" \u0001 ").toLowerCase(); });
    var order = rows.map(function (_, i) { return i; });
    var view = order.slice();
    var state = { key: -1, dir: 1, page: 0 };

    function facetKey(cell) {
      if (!cell) return "";
      var k = cell.length > 4 && cell[4] !== null && cell[4] !== undefined ? cell[4] : cell[0];
      return String(k);
    }

    function apply() {
      var q = filter ? filter.value.trim().toLowerCase() : "";
      var active = facets.filter(function (s) { return s.value !== ""; }).map(function (s) {
        return { col: parseInt(s.getAttribute("data-col"), 10), value: s.value };
      });
      view = order.filter(function (i) {
        if (q && hay[i].indexOf(q) === -1) return false;
        for (var a = 0; a < active.length; a++) {
          if (facetKey(rows[i][active[a].col]) !== active[a].value) return false;
        }
        return true;
      });
      if (state.key >= 0) {
        var k = state.key, d = state.dir;
        view.sort(function (i, j) {
          var a = rows[i][k][1], b = rows[j][k][1];
          var an = a === null || a === undefined || a === "", bn = b === null || b === undefined || b === "";
          if (an || bn) return an && bn ? i - j : (an ? 1 : -1);
          return d * cmpValues(a, b) || i - j;
        });
      }
      var pages = Math.max(1, Math.ceil(view.length / size));
      if (state.page >= pages) state.page = pages - 1;
      draw(pages);
    }

    function draw(pages) {
      var frag = document.createDocumentFragment();
      view.slice(state.page * size, (state.page + 1) * size).forEach(function (i) {
        var tr = document.createElement("tr");
        rows[i].forEach(function (cell, c) {
          var td = document.createElement("td");
          td.className = (classes[c] || "") + (cell[3] ? " " + cell[3] : "");
          if (cell[2]) {
            var a = document.createElement("a");
            a.setAttribute("href", cell[2]);
            a.textContent = cell[0];
            td.appendChild(a);
          } else {
            td.textContent = cell[0];
          }
          tr.appendChild(td);
        });
        frag.appendChild(tr);
      });
      tbody.textContent = "";
      tbody.appendChild(frag);
      if (count) count.textContent = view.length === rows.length ? rows.length + " rows" : view.length + " of " + rows.length + " rows";
      pager.textContent = "";
      if (pages > 1) {
        var mk = function (label, page, disabled) {
          var b = document.createElement("button");
          b.type = "button"; b.textContent = label; b.disabled = disabled;
          b.addEventListener("click", function () { state.page = page; apply(); });
          pager.appendChild(b);
        };
        mk("« first", 0, state.page === 0);
        mk("‹ prev", state.page - 1, state.page === 0);
        var info = document.createElement("span");
        info.className = "dt-page";
        info.textContent = "page " + (state.page + 1) + " of " + pages;
        pager.appendChild(info);
        mk("next ›", state.page + 1, state.page >= pages - 1);
        mk("last »", pages - 1, state.page >= pages - 1);
      }
    }

    heads.forEach(function (th, k) {
      var btn = th.querySelector("button.sort") || th;
      btn.addEventListener("click", function () {
        var first = th.getAttribute("data-first");  // "asc" for p- and q-values: smallest first
        state.dir = state.key === k ? -state.dir : (first === "asc" ? 1 : (th.classList.contains("num") ? -1 : 1));
        if (k === 0 && state.key !== 0) state.dir = 1;
        state.key = k; state.page = 0;
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
        apply();
      });
    });
    if (filter) filter.addEventListener("input", function () { state.page = 0; apply(); });
    facets.forEach(function (s) { s.addEventListener("change", function () { state.page = 0; apply(); }); });
    apply();
  }

  function initOverlays(tools) {
    var scope = tools.closest(".galleries") || document;
    var buttons = Array.prototype.slice.call(tools.querySelectorAll("button[data-m]"));
    var slider = tools.querySelector("input[type=range]");
    var current = "";
    function opacity() { return slider ? String(slider.value / 100) : "0.7"; }
    function select(m) {
      current = m;
      buttons.forEach(function (b) { b.setAttribute("aria-pressed", String(b.getAttribute("data-m") === m)); });
      scope.querySelectorAll("img.ov").forEach(function (img) {
        var on = m !== "" && img.getAttribute("data-m") === m;
        img.hidden = !on;
        if (on) { img.loading = "eager"; img.style.opacity = opacity(); }
      });
    }
    buttons.forEach(function (b) { b.addEventListener("click", function () { select(b.getAttribute("data-m")); }); });
    if (slider) slider.addEventListener("input", function () { select(current); });
  }

  document.querySelectorAll(".dtable").forEach(initTable);
  document.querySelectorAll(".overlay-tools").forEach(initOverlays);
})();
