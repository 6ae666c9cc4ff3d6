(function () {
  "use strict";
  // Sorting, filtering and paging for the report's tables. The page is complete without
  // this script; it only hides, reorders and reveals what the server rendered. Nothing
  // here parses HTML: text goes in with textContent.
  var PAGE = 100;
  var tables = [];
  var filter = { q: "", port: "", change: "" };

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }

  function num(s) {
    var v = parseFloat(s);
    return isNaN(v) ? -Infinity : v;
  }

  function fmt(n) { return n.toLocaleString("en-US"); }

  // --- one table: its items (a row, or a group's tbody), order, filter and page ---------
  function Table(table) {
    this.table = table;
    this.groups = table.classList.contains("groups");
    this.filterable = table.classList.contains("filterable");
    this.items = this.groups ? Array.prototype.slice.call(table.tBodies)
                             : Array.prototype.slice.call(table.tBodies[0].rows);
    this.matched = this.items.slice();
    if (this.groups) {
      // what the text filter searches: the group's row and its connections' endpoints
      this.items.forEach(function (it) {
        var conn = it.querySelector("table.conn tbody");
        it.searchText = (it.rows[0].textContent + " " + (conn ? conn.textContent : "")).toLowerCase();
      });
    }
    this.page = 0;
    this.buildPager();
    this.bindSort();
  }

  Table.prototype.buildPager = function () {
    var self = this;
    var bar = el("div", null, "pager");
    this.first = el("button", "\u00ab First");
    this.prev = el("button", "\u2039 Prev");
    this.info = el("span");
    this.next = el("button", "Next \u203a");
    this.last = el("button", "Last \u00bb");
    [this.first, this.prev, this.info, this.next, this.last].forEach(function (b) {
      if (b.tagName === "BUTTON") { b.type = "button"; }
      bar.appendChild(b);
    });
    this.first.addEventListener("click", function () { self.go(0); });
    this.prev.addEventListener("click", function () { self.go(self.page - 1); });
    this.next.addEventListener("click", function () { self.go(self.page + 1); });
    this.last.addEventListener("click", function () { self.go(self.pages() - 1); });
    this.pager = bar;
    this.table.parentNode.insertBefore(bar, this.table.nextSibling);
  };

  Table.prototype.pages = function () {
    return Math.max(1, Math.ceil(this.matched.length / PAGE));
  };

  Table.prototype.go = function (page) {
    this.page = Math.min(Math.max(0, page), this.pages() - 1);
    this.render();
  };

  Table.prototype.render = function () {
    var lo = this.page * PAGE, hi = lo + PAGE;
    var shown = new Set(this.matched.slice(lo, hi));
    this.items.forEach(function (it) { it.hidden = !shown.has(it); });
    var n = this.matched.length, total = this.items.length;
    var text;
    if (n === 0) {
      text = "Nothing matches the filter (" + fmt(total) + " in all).";
    } else {
      text = "Rows " + fmt(lo + 1) + "\u2013" + fmt(Math.min(hi, n)) + " of " + fmt(n);
      if (n !== total) { text += " (filtered from " + fmt(total) + ")"; }
      if (this.pages() > 1) { text += " \u00b7 page " + (this.page + 1) + " of " + this.pages(); }
    }
    this.info.textContent = text;
    var paged = this.pages() > 1;
    [this.first, this.prev, this.next, this.last].forEach(function (b) { b.hidden = !paged; });
    this.first.disabled = this.prev.disabled = this.page === 0;
    this.next.disabled = this.last.disabled = this.page >= this.pages() - 1;
    this.pager.hidden = total <= PAGE && n === total;
  };

  Table.prototype.value = function (item, th) {
    if (this.groups && th.dataset.sort) { return item.dataset[th.dataset.sort] || ""; }
    var cell = (this.groups ? item.rows[0] : item).cells[th.cellIndex];
    if (!cell) { return ""; }
    return cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
  };

  Table.prototype.sortBy = function (th, dir) {
    var self = this;
    var isNum = th.dataset.type === "num";
    var keyed = this.items.map(function (it, i) {
      var v = self.value(it, th);
      return { it: it, i: i, v: isNum ? num(v) : v.toLowerCase() };
    });
    keyed.sort(function (a, b) {
      var c = a.v < b.v ? -1 : a.v > b.v ? 1 : 0;
      return c * dir || a.i - b.i;
    });
    this.items = keyed.map(function (k) { return k.it; });
    var parent = this.groups ? this.table : this.table.tBodies[0];
    var frag = document.createDocumentFragment();
    this.items.forEach(function (it) { frag.appendChild(it); });
    parent.appendChild(frag);
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (h) {
      if (h !== th) { h.removeAttribute("aria-sort"); }
    });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    this.applyFilter();
  };

  Table.prototype.bindSort = function () {
    var self = this;
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (th) {
      if (!th.classList.contains("sort")) { return; }
      th.tabIndex = 0;
      th.title = "Sort by this column";
      var act = function () {
        var cur = th.getAttribute("aria-sort");
        var dir = cur === "descending" ? 1 : cur === "ascending" ? -1
                : (th.dataset.type === "num" ? -1 : 1);
        self.sortBy(th, dir);
      };
      th.addEventListener("click", act);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); act(); }
      });
    });
  };

  // --- the filter bar: text tokens (src:ns dst:ns ns:ns or any substring), port, change ---
  function parseTokens(q) {
    return q.toLowerCase().split(/\s+/).filter(function (t) { return t.length > 0; });
  }

  function groupMatches(item, tokens, ports, change) {
    var d = item.dataset;
    if (change && d.change !== change) { return false; }
    if (ports.length) {
      var p = (d.port || "").toLowerCase(), pp = (d.proto || "").toLowerCase() + "/" + p;
      if (!ports.some(function (x) { return x === p || x === pp || x === (d.proto || "").toLowerCase(); })) {
        return false;
      }
    }
    var src = (d.src || "").toLowerCase(), dst = (d.dst || "").toLowerCase();
    return tokens.every(function (t) {
      if (t.indexOf("src:") === 0) { return src === t.slice(4); }
      if (t.indexOf("dst:") === 0) { return dst === t.slice(4); }
      if (t.indexOf("ns:") === 0) { return src === t.slice(3) || dst === t.slice(3); }
      return item.searchText.indexOf(t) >= 0;
    });
  }

  Table.prototype.applyFilter = function () {
    if (!this.filterable) {
      this.matched = this.items.slice();
    } else {
      var tokens = parseTokens(filter.q);
      var ports = filter.port.toLowerCase().split(/[\s,]+/).filter(function (t) { return t; });
      this.matched = this.items.filter(function (it) {
        return groupMatches(it, tokens, ports, filter.change);
      });
    }
    this.render();
  };

  var inputs = {};

  function applyAll(resetPage) {
    var matched = 0, total = 0;
    tables.forEach(function (t) {
      if (resetPage) { t.page = 0; }
      t.applyFilter();
      if (t.filterable) { matched += t.matched.length; total += t.items.length; }
    });
    var active = filter.q || filter.port || filter.change;
    inputs.status.textContent = active ? fmt(matched) + " of " + fmt(total) + " groups match" : "";
  }

  function writeHash() {
    var parts = [];
    if (filter.q) { parts.push("q=" + encodeURIComponent(filter.q)); }
    if (filter.port) { parts.push("port=" + encodeURIComponent(filter.port)); }
    if (filter.change) { parts.push("change=" + encodeURIComponent(filter.change)); }
    try {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search);
    } catch (e) { /* some viewers forbid it; the filter still applies */ }
  }

  function setFilter(f, scroll) {
    filter.q = f.q || "";
    filter.port = f.port || "";
    filter.change = f.change || "";
    inputs.q.value = filter.q;
    inputs.port.value = filter.port;
    inputs.change.value = filter.change;
    applyAll(true);
    if (scroll) {
      var target = document.getElementById(filter.change === "newly_allowed" ? "newly-allowed" : "breaks");
      if (target) { target.scrollIntoView(); }
    }
  }

  function parseHash(hash) {
    var h = hash.replace(/^#/, "");
    if (h.indexOf("=") < 0) { return null; }
    var f = {};
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i < 0) { return; }
      var k = kv.slice(0, i), v = "";
      try { v = decodeURIComponent(kv.slice(i + 1)); } catch (e) { v = ""; }
      if (k === "q" || k === "port" || k === "change") { f[k] = v; }
    });
    return f;
  }

  // Show a group even when the filter or the page hides it.
  function reveal(id) {
    var target = document.getElementById(id);
    if (!target) { return false; }
    var item = target;
    while (item && !(item.tagName === "TBODY" || item.tagName === "TR")) { item = item.parentNode; }
    tables.forEach(function (t) {
      var idx = t.items.indexOf(item);
      if (idx < 0) { return; }
      if (t.matched.indexOf(item) < 0) { setFilter({}, false); }
      t.go(Math.floor(t.matched.indexOf(item) / PAGE));
    });
    target.scrollIntoView();
    var cls = target.classList;
    cls.remove("flash");
    void target.offsetWidth;
    cls.add("flash");
    return true;
  }

  function onHash() {
    var f = parseHash(location.hash);
    if (f) { setFilter(f, true); return; }
    var id = location.hash.replace(/^#/, "");
    if (id.indexOf("g-") === 0) { reveal(id); }
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("table.paged"), function (t) {
      tables.push(new Table(t));
    });
    var bar = document.getElementById("filters");
    inputs = {
      q: document.getElementById("f-q"),
      port: document.getElementById("f-port"),
      change: document.getElementById("f-change"),
      status: document.getElementById("f-status")
    };
    bar.hidden = false;
    var timer = null;
    var changed = function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        filter.q = inputs.q.value.trim();
        filter.port = inputs.port.value.trim();
        filter.change = inputs.change.value;
        applyAll(true);
        writeHash();
      }, 120);
    };
    inputs.q.addEventListener("input", changed);
    inputs.port.addEventListener("input", changed);
    inputs.change.addEventListener("change", changed);
    document.getElementById("f-clear").addEventListener("click", function () {
      setFilter({}, false);
      writeHash();
    });

    // matrix cells: filter the groups to that namespace pair
    Array.prototype.forEach.call(document.querySelectorAll("#t-matrix a[data-q]"), function (a) {
      a.addEventListener("click", function (e) {
        e.preventDefault();
        setFilter({ q: a.dataset.q, change: a.dataset.change }, true);
        writeHash();
      });
    });

    // links to groups: reveal the group wherever the pager or the filter put it
    document.addEventListener("click", function (e) {
      var a = e.target.closest ? e.target.closest("a[href^='#g-']") : null;
      if (!a || a.dataset.q) { return; }   // matrix cells filter instead (above)
      e.preventDefault();
      var id = a.getAttribute("href").slice(1);
      try { history.replaceState(null, "", "#" + id); } catch (err) { /* ignore */ }
      reveal(id);
    });

    // copy buttons for the fixes' YAML
    Array.prototype.forEach.call(document.querySelectorAll("button.copy"), function (b) {
      var pre = b.parentNode.querySelector("pre");
      b.hidden = false;
      b.addEventListener("click", function () {
        var done = function () { b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy YAML"; }, 1500); };
        var fallback = function () {
          var range = document.createRange();
          range.selectNodeContents(pre);
          var sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
          b.textContent = "Selected: press Ctrl+C";
        };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(pre.textContent).then(done, fallback);
        } else {
          fallback();
        }
      });
    });

    // download buttons: the fix as the file --fixes-dir writes (made here, in memory)
    Array.prototype.forEach.call(document.querySelectorAll("button.download"), function (b) {
      var pre = b.parentNode.querySelector("pre");
      b.hidden = false;
      b.addEventListener("click", function () {
        // a policy other fixes edit too: the file holds it with all their edits
        var text = pre.textContent;
        if (b.dataset.refs) {
          var want = b.dataset.refs.split(" ");
          var found = Array.prototype.filter.call(
            document.querySelectorAll("#combined-yaml pre"),
            function (p) { return want.indexOf(p.dataset.ref) >= 0; });
          if (found.length) {
            text = found.map(function (p) { return p.textContent; }).join("---\n");
          }
        }
        var url = URL.createObjectURL(new Blob([text], {type: "application/yaml"}));
        var a = document.createElement("a");
        a.href = url;
        a.download = b.dataset.file;
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      });
    });

    window.addEventListener("hashchange", onHash);
    applyAll(true);
    if (location.hash) { onHash(); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
