/* Channel health: the failing-channel banner on every page, and the live /settings/health page.
   Both listen to "inbox.health" events; the server joins each agent's socket to the health rooms of the inboxes
   they may see. An inbox that is failing but not yet past its threshold is flagged by a timer when it gets there. */
(function () {
  "use strict";
  var socket = window.helplineSocket;
  var banner = document.getElementById("health-banner");
  var inboxes = {};  // id -> last known health, with the time we learnt it

  function failingFor(h) {
    var s = Math.floor(h.failing_for + (Date.now() - h.seen) / 1000);
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function renderBanner() {
    if (!banner) { return; }
    var list = banner.querySelector(".health-list");
    var flagged = Object.keys(inboxes).map(function (k) { return inboxes[k]; })
      .filter(function (h) { return h.alert; })
      .sort(function (a, b) { return a.name.localeCompare(b.name); });
    list.textContent = "";
    flagged.forEach(function (h, i) {
      var item = document.createElement("span");
      item.dataset.inbox = h.id;
      var what = h.credential_state === "needs_reauth" ? " needs new credentials"
        : " has not synced for " + failingFor(h);
      item.textContent = h.name + " (" + h.channel + ")" + what + (h.last_error ? ": " + h.last_error : "");
      list.appendChild(item);
      if (i < flagged.length - 1) { list.appendChild(document.createTextNode("; ")); }
    });
    banner.hidden = flagged.length === 0;
  }

  function learn(h) {
    var old = inboxes[h.id];
    if (old && old.timer) { clearTimeout(old.timer); }
    if (!h.failing) { delete inboxes[h.id]; return; }
    h.seen = Date.now();
    inboxes[h.id] = h;
    if (!h.alert && h.alert_in !== null && h.alert_in !== undefined) {
      h.timer = setTimeout(function () { h.alert = true; h.timer = null; renderBanner(); },
                           Math.max(0, h.alert_in) * 1000 + 500);
    }
  }

  if (banner) {
    try { JSON.parse(banner.dataset.inboxes || "[]").forEach(learn); } catch (e) { /* keep the server's text */ }
  }
  if (socket) {
    socket.on("inbox.health", function (p) { learn(p); renderBanner(); });
  }

  /* The admin page: redraw the tables on every health event, and every few seconds for the queue counts. */
  var panelUrl = document.body.dataset.healthPanelUrl;
  var panel = document.getElementById("health-panel");
  if (panelUrl && panel) {
    var busy = false;
    var refresh = function () {
      var focused = document.activeElement;
      if (busy || (focused && panel.contains(focused) && focused.tagName === "INPUT")) { return; }
      busy = true;
      fetch(panelUrl, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { panel.innerHTML = html; } })
        .catch(function () { /* offline: the next tick tries again */ })
        .then(function () { busy = false; });
    };
    var timer = null;
    if (socket) { socket.on("inbox.health", function () { clearTimeout(timer); timer = setTimeout(refresh, 200); }); }
    setInterval(refresh, (parseInt(document.body.dataset.healthRefresh, 10) || 10) * 1000);
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
  });
})();
