/* Helpline agent pages: live updates over Socket.IO, keyboard shortcuts, composer tabs. No inline script:
   the page's CSP allows only files from our origin, so everything reads its data from data-* attributes. */
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page;
  window.helplineEvents = [];  // every live event received, newest last (tests and debugging read it)

  function $(sel, root) { return (root || document).querySelector(sel); }
  function debounce(fn, ms) {
    var t = null;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }
  function fetchHtml(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    });
  }

  /* ---- help overlay and composer tabs ---- */
  var help = $("#help");
  function toggleHelp(show) { if (help) { help.hidden = !show; } }
  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-action], [data-tab]");
    if (!t) { return; }
    if (t.dataset.action === "help") { toggleHelp(true); }
    if (t.dataset.action === "help-close") { toggleHelp(false); }
    if (t.dataset.tab) { showTab(t.dataset.tab); }
  });
  function showTab(name) {
    document.querySelectorAll("[data-pane]").forEach(function (f) { f.hidden = f.dataset.pane !== name; });
    document.querySelectorAll("[data-tab]").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.dataset.tab === name));
    });
    var box = $("#" + name + "-text");
    if (box) { box.focus(); }
  }

  /* ---- canned responses: the server filled the placeholders; insert as plain text ---- */
  var cannedSelect = $("#canned");
  if (cannedSelect) {
    cannedSelect.addEventListener("change", function () {
      var option = cannedSelect.selectedOptions[0];
      var box = $("#reply-text");
      if (option && option.dataset.text !== undefined && box) {
        box.value = box.value ? box.value + "\n\n" + option.dataset.text : option.dataset.text;
        box.focus();
      }
      cannedSelect.value = "";
    });
  }

  /* ---- unread badge for mentions and assignments ---- */
  var unread = 0;
  var baseTitle = document.title;
  function notify(text) {
    unread += 1;
    document.title = "(" + unread + ") " + baseTitle;
    if (window.Notification && Notification.permission === "granted" && document.hidden) {
      new Notification("Helpline", { body: text });
    }
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { unread = 0; document.title = baseTitle; }
  });
  document.addEventListener("click", function askOnce() {
    if (window.Notification && Notification.permission === "default") { Notification.requestPermission(); }
    document.removeEventListener("click", askOnce);
  });

  /* ---- live updates ---- */
  var userId = body.dataset.userId;
  var socket = null;
  if (userId && window.io) {
    socket = window.io({ transports: ["websocket", "polling"] });
    window.helplineSocket = socket;  // for page scripts: the live queue, health.js (the failing-channel banner)
    var status = $("#live-status");
    var rooms = (body.dataset.rooms || "").split(/\s+/).filter(Boolean);
    socket.on("connect", function () {
      if (status) { status.textContent = "live"; status.className = "live on"; }
      rooms.forEach(function (room) {
        socket.emit("join", { room: room }, function (ack) { window.helplineEvents.push(["join", ack]); });
      });
    });
    socket.on("disconnect", function () {
      if (status) { status.textContent = "offline"; status.className = "live off"; }
    });
    socket.onAny(function (name, payload) {
      window.helplineEvents.push([name, payload]);
      // Which notifications the user wants is set on their profile page (Settings → My profile).
      var wants = (body.dataset.notify || "").split(/\s+/);
      if (name === "mention.created" && wants.indexOf("mentions") >= 0) {
        notify("You were mentioned on ticket #" + payload.ticket_id);
      }
      if (name === "ticket.assigned" && wants.indexOf("assignments") >= 0 &&
          String(payload.assignee_id) === userId && String(payload.actor_id) !== userId) {
        notify("Ticket #" + payload.id + " was assigned to you");
      }
      if (name === "ticket.created" && wants.indexOf("new_tickets") >= 0) {
        notify("New ticket #" + payload.id + ": " + (payload.subject || payload.preview || ""));
      }
    });
  }

  if (page === "inbox" && socket) {
    var teams = {};
    socket.on("presence.online", function (p) {
      teams[p.team_id] = p.users;
      var names = {};
      Object.keys(teams).forEach(function (t) {
        teams[t].forEach(function (u) { if (String(u.id) !== userId) { names[u.id] = u.name; } });
      });
      var list = Object.keys(names).map(function (k) { return names[k]; }).sort();
      $("#online").textContent = list.length ? "Online: " + list.join(", ") : "No teammates online";
    });
    var refreshList = debounce(function () {
      if (new URLSearchParams(location.search).get("cursor")) { return; }  // older pages stay put
      fetchHtml(body.dataset.rowsUrl).then(function (html) { $("#ticket-list").innerHTML = html; markSelected(); });
      fetch(body.dataset.countsUrl, { credentials: "same-origin" }).then(function (r) { return r.json(); })
        .then(function (counts) {
          Object.keys(counts).forEach(function (key) {
            var el = document.querySelector('[data-count="' + CSS.escape(key) + '"]');
            if (el) { el.textContent = counts[key] < 1000 ? counts[key] : "1000+"; }
          });
        });
    }, 250);
    ["message.created", "ticket.created", "ticket.updated", "ticket.assigned", "ticket.status_changed",
     "ticket.merged", "message.moved"].forEach(function (name) { socket.on(name, refreshList); });
  }

  if (page === "ticket" && socket) {
    var ticketId = body.dataset.ticketId;
    var refreshThread = debounce(function () {
      fetchHtml(body.dataset.threadUrl).then(function (html) { $("#thread").innerHTML = html; });
    }, 150);
    var refreshMeta = debounce(function () {
      var meta = $("#meta");
      if (meta.contains(document.activeElement) && document.activeElement.tagName !== "BUTTON") {
        refreshMeta(); return;  // don't yank a select or input the agent is using; try again shortly
      }
      fetchHtml(body.dataset.metaUrl).then(function (html) { meta.innerHTML = html; });
    }, 150);
    // The header's SLA badge, as the list computes it (tickets.sla): a reply stops a clock, a customer message
    // starts one, a priority or tag change re-targets it, the sweep's warning/breach and a solve are ticket events.
    var refreshSla = debounce(function () {
      fetchHtml(body.dataset.slaUrl).then(function (html) { $("#ticket-sla").innerHTML = html; });
    }, 150);
    socket.on("message.created", function (p) {
      if (String(p.ticket_id) === ticketId) { refreshThread(); refreshSla(); }
    });
    socket.on("message.updated", function (p) { if (String(p.ticket_id) === ticketId) { refreshThread(); } });
    socket.on("message.moved", function (p) {  // split off or moved: it left this ticket, or joined it
      if (String(p.ticket_id) === ticketId || String(p.from_ticket_id) === ticketId) { refreshThread(); refreshSla(); }
    });
    ["ticket.updated", "ticket.assigned", "ticket.status_changed", "ticket.merged"].forEach(function (name) {
      socket.on(name, function (p) { if (String(p.id) === ticketId) { refreshMeta(); refreshSla(); } });
    });
    socket.on("ticket.merged", function (p) {
      // This ticket was merged into another: its messages live there now.
      if (String(p.id) === ticketId && p.data && p.data.into) { location.href = "/tickets/" + p.data.into; }
    });
    var presence = $("#presence");
    var viewers = [];
    var typingTimer = null;
    function showPresence(extra) {
      var others = viewers.filter(function (v) { return String(v.id) !== userId; }).map(function (v) { return v.name; });
      var text = others.length ? others.join(", ") + (others.length > 1 ? " are" : " is") + " also viewing" : "";
      presence.textContent = [text, extra].filter(Boolean).join(" · ");
      presence.className = "presence" + (extra ? " warn" : "");
    }
    socket.on("ticket.viewers", function (p) { viewers = p.viewers || []; showPresence(""); });
    socket.on("ticket.typing", function (p) {
      showPresence(p.user.name + " is writing " + (p.kind === "note" ? "a note" : "a reply") + "…");
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () { showPresence(""); }, 4000);
    });
    var lastTyping = 0;
    ["reply", "note"].forEach(function (kind) {
      var box = $("#" + kind + "-text");
      if (box) {
        box.addEventListener("input", function () {
          if (Date.now() - lastTyping > 2000) {
            lastTyping = Date.now();
            socket.emit("typing", { ticket_id: Number(ticketId), kind: kind });
          }
        });
      }
    });
  }

  /* ---- keyboard shortcuts ---- */
  var selected = -1;
  function rows() { return Array.prototype.slice.call(document.querySelectorAll(".ticket-row")); }
  function markSelected() {
    rows().forEach(function (r, i) { r.classList.toggle("selected", i === selected); });
    var r = rows()[selected];
    if (r) { r.scrollIntoView({ block: "nearest" }); }
  }
  if (page === "inbox") {
    sessionStorage.setItem("helpline.list", JSON.stringify(rows().map(function (r) { return r.dataset.ticketId; })));
  }
  function neighbour(step) {
    var list = JSON.parse(sessionStorage.getItem("helpline.list") || "[]");
    var i = list.indexOf(body.dataset.ticketId);
    var next = list[i + step];
    if (i >= 0 && next) { location.href = "/tickets/" + next; }
  }
  function submit(id) { var f = $(id); if (f) { f.requestSubmit(); } }
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (e.key === "Escape") { toggleHelp(false); if (tag === "textarea" || tag === "input") { e.target.blur(); } return; }
    if (tag === "textarea" || tag === "input" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var k = e.key;
    if (k === "?") { toggleHelp(help.hidden); return; }
    if (k === "/") { var box = $("#top-search"); if (box) { e.preventDefault(); box.focus(); } return; }
    if (page === "inbox") {
      var n = rows().length;
      if (k === "j" && n) { selected = Math.min(n - 1, selected + 1); markSelected(); }
      else if (k === "k" && n) { selected = Math.max(0, selected - 1); markSelected(); }
      else if ((k === "Enter" || k === "o") && rows()[selected]) { rows()[selected].querySelector("a").click(); }
      else { return; }
    } else if (page === "ticket") {
      if (k === "r") { showTab("reply"); } else if (k === "n") { showTab("note"); }
      else if (k === "a") { submit("#assign-me-form"); } else if (k === "s") { submit("#solve-form"); }
      else if (k === "j") { neighbour(1); } else if (k === "k") { neighbour(-1); }
      else if (k === "u") { location.href = "/"; }
      else { return; }
    } else { return; }
    e.preventDefault();
  });
})();
