// gridsync console: progressive enhancement only (every page works without it).
// Live updates: the server sends `event: commit` on /api/events whenever the store commits;
// the list re-fetches its rows and the big screen its figures.
(function () {
  "use strict";

  function onCommit(handler) {
    if (!window.EventSource) { return; }
    var source = new EventSource("/api/events");
    var busy = false, again = false;
    function run() {
      if (busy) { again = true; return; }
      busy = true;
      Promise.resolve(handler()).catch(function () {}).then(function () {
        busy = false;
        if (again) { again = false; run(); }
      });
    }
    source.addEventListener("commit", run);
    source.addEventListener("open", function () { document.body.classList.add("live"); });
    source.addEventListener("error", function () { document.body.classList.remove("live"); });
  }

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value == null ? "" : String(value); }
  }

  function liveList(tbody) {
    onCommit(function () {
      return fetch("/api/incident-rows" + window.location.search, { credentials: "same-origin" })
        .then(function (r) {
          if (!r.ok) { throw new Error(String(r.status)); }
          var count = r.headers.get("x-incident-count");
          return r.text().then(function (html) {
            tbody.innerHTML = html;
            if (count !== null) { text("incident-count", count); }
          });
        });
    });
  }

  function liveScreen() {
    function refresh() {
      return fetch("/api/screen", { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
        .then(function (s) {
          text("count-today", s.counters.today);
          text("count-open", s.counters.open);
          text("count-overdue", s.counters.overdue);
          var n = s.newest;
          if (n) {
            var img = document.getElementById("newest-photo");
            if (img && n.photo && img.getAttribute("src") !== n.photo) { img.src = n.photo; }
            img.setAttribute("data-incident", n.id);
            text("newest-category", n.category || "incident");
            text("newest-description", n.description);
            text("newest-grid", n.grid);
            text("newest-age", n.age + " ago");
          }
          var ticker = document.getElementById("ticker");
          if (ticker) {
            ticker.textContent = "";
            s.ticker.forEach(function (e) {
              var li = document.createElement("li");
              var k = document.createElement("span");
              k.className = "k";
              k.textContent = e.kind;
              li.appendChild(k);
              li.appendChild(document.createTextNode(" " + e.incident + " · " + e.author + " · " + e.age + " ago"));
              ticker.appendChild(li);
            });
          }
        });
    }
    refresh();
    onCommit(refresh);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var rows = document.querySelector("[data-live=list]");
    if (rows) { liveList(rows); }
    if (document.querySelector("[data-live=screen]")) { liveScreen(); }
  });
})();
