/* The chat inside the widget iframe (Helpline's origin). All text is set with textContent, never as HTML.
 * Messages carry a client id and stay in a local "pending" list until the server acknowledges them; after a
 * reconnect they are sent again and the server stores each id once. */
(function () {
"use strict";
var inbox = document.body.getAttribute("data-inbox");
var $ = function (id) { return document.getElementById(id); };
var launcher = $("launcher"), panel = $("panel"), log = $("log"), text = $("text"), errorBox = $("error");
var typingBox = $("typing"), unreadBox = $("unread");
var tokenKey = "helpline:" + inbox + ":token", pendingKey = "helpline:" + inbox + ":pending";
var memory = {};
var store = {
  get: function (k) { try { return window.localStorage.getItem(k); } catch (e) { return memory[k] || null; } },
  set: function (k, v) { try { window.localStorage.setItem(k, v); } catch (e) { memory[k] = v; } },
  del: function (k) { try { window.localStorage.removeItem(k); } catch (e) { delete memory[k]; } }
};
var token = null, socket = null, open = false, unread = 0, lastAgentId = 0, profile = null, user = null;
var body = document.body, profileKey = "helpline:" + inbox + ":profile";
// The admin's settings: position, the pre-chat fields to give, and whether answers go by email (nobody there).
var position = body.getAttribute("data-position"), away = body.getAttribute("data-away") === "yes";
var need = body.getAttribute("data-need").split(" ").filter(Boolean), historyCount = 0;
try { profile = JSON.parse(store.get(profileKey) || "null"); } catch (e) { profile = null; }
var shown = {};  // message id or "c:" + client id -> <li>
var events = [];
window.helplineWidget = { events: events };  // for tests and debugging: what the server said, in order

document.documentElement.style.setProperty("--accent", body.getAttribute("data-color"));

function pending() { try { return JSON.parse(store.get(pendingKey) || "[]"); } catch (e) { return []; } }
function savePending(list) { store.set(pendingKey, JSON.stringify(list)); }
function newId() {
  var bytes = new Uint8Array(12);
  window.crypto.getRandomValues(bytes);
  return "c" + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
}
function showError(message) {
  errorBox.textContent = message || "";
  errorBox.hidden = !message;
}
// The page that frames us: frame-ancestors already limited it to the inbox's allowed origins.
var parentOrigin = (location.ancestorOrigins && location.ancestorOrigins[0]) ||
  (document.referrer ? new URL(document.referrer).origin : null);
function tellParent() {  // state and side only, no chat content
  window.parent.postMessage({ type: "helpline:state", open: open, position: position }, "*");
}
// The fields to give before chatting (the page lists them: required ones, and an email when nobody is there
// and answers go by email); a returning visitor keeps chatting.
function applyGate() {
  var p = profile || {}, left = historyCount ? [] : need.filter(function (f) { return !p[f]; });
  var gated = left.length > 0;
  $("profile-name").required = left.indexOf("name") >= 0;
  $("profile-email").required = left.indexOf("email") >= 0;
  $("compose").hidden = gated;
  $("profile-intro").hidden = !gated;
  $("profile-submit").textContent = gated ? "Start chat" : "Save";
  if (gated) { $("about-you").open = true; }
  return gated;
}
function keepToken(value) {
  token = value;
  store.set(tokenKey, value);
  if (parentOrigin && window.parent !== window) {
    window.parent.postMessage({ type: "helpline:token", token: value }, parentOrigin);
  }
}
function setOpen(value) {
  open = value;
  panel.hidden = !open;
  launcher.hidden = open;
  launcher.setAttribute("aria-expanded", String(open));
  tellParent();
  if (open) {
    unread = 0;
    unreadBox.hidden = true;
    text.focus();
    markRead();
    log.scrollTop = log.scrollHeight;
  } else {
    launcher.focus();
  }
}
function markRead() {
  if (open && socket && socket.connected && lastAgentId) { socket.emit("visitor:read", { id: lastAgentId }); }
}

function render(m) {
  var li = (m.client_id && shown["c:" + m.client_id]) || (m.id && shown[m.id]);
  if (!li) {
    historyCount++;  // a conversation now: going away later asks nothing before the next message
    li = document.createElement("li");
    li.className = m.from === "agent" ? "agent" : "visitor";
    if (m.from === "agent" && m.author) {
      var who = document.createElement("span");
      who.className = "author";
      who.textContent = m.author;
      // The agent's initials; the name beside it is what is read out.
      var avatar = document.createElement("i");
      avatar.className = "avatar";
      avatar.setAttribute("aria-hidden", "true");
      avatar.textContent = m.author.split(/\s+/).map(function (w) { return w.charAt(0); }).join("").slice(0, 2);
      who.prepend(avatar);
      li.appendChild(who);
    }
    var p = document.createElement("p");
    p.textContent = m.text || "";
    li.appendChild(p);
    (m.attachments || []).forEach(function (a) {
      var f = document.createElement("span");
      f.className = "file";
      f.textContent = "\u{1F4CE} " + a.name;
      li.appendChild(f);
      if (a.id) { showFile(f, a); }
    });
    log.appendChild(li);
    log.scrollTop = log.scrollHeight;
  }
  if (m.client_id) { shown["c:" + m.client_id] = li; }
  if (m.id) { shown[m.id] = li; li.setAttribute("data-id", String(m.id)); }
  li.classList.toggle("pending", !!m.pending);
  li.classList.toggle("failed", !!m.failed);
  if (m.from === "agent" && m.id > lastAgentId) { lastAgentId = m.id; }
}

// A file of the conversation: fetched with the token in a header (never in a URL), shown as an image or offered as
// a download from a blob (the server sends only images and PDFs it checked, inline nowhere else).
function showFile(f, a) {
  fetch("/widget/api/attachments/" + a.id + "?inbox=" + encodeURIComponent(inbox), { headers: { "X-Visitor-Token": token } })
    .then(function (r) { return r.ok ? r.blob() : null; })
    .then(function (b) {
      if (!b) { return; }
      var url = URL.createObjectURL(b), image = /^image\//.test(b.type);
      var el = document.createElement(image ? "img" : "a");
      if (image) { el.src = url; el.alt = a.name; } else { el.href = url; el.download = a.name; el.textContent = f.textContent; }
      f.textContent = "";
      f.appendChild(el);
    });
}

function send(item) {
  socket.timeout(10000).emit("visitor:message", { id: item.id, text: item.text }, function (err, ack) {
    if (err) { return; }  // no answer: it stays pending and goes again on reconnect
    if (ack && ack.ok) {
      savePending(pending().filter(function (p) { return p.id !== item.id; }));
      render({ id: ack.id, client_id: item.id, from: "visitor", text: item.text });
      if (away && profile && profile.email) {
        $("offline-note").textContent = "Thanks! We'll answer by email at " + profile.email + ".";
        $("offline-note").hidden = false;
      }
    } else if (ack && ack.retry) {
      showError(ack.error);
      setTimeout(function () { if (socket.connected) { send(item); } }, 5000);
    } else {
      savePending(pending().filter(function (p) { return p.id !== item.id; }));
      render({ client_id: item.id, from: "visitor", text: item.text, failed: true });
      showError(ack ? ack.error : "not sent");
    }
  });
}

// Open/away as it changes (web.widget_live): the texts and fields by element id, then ask again when told to.
function avail(a) {
  away = a.away; need = a.need; applyGate();
  for (var k in a.el) { Object.assign($(k), a.el[k]); }
  clearTimeout(avail.t);
  avail.t = setTimeout(function () { socket.emit("availability"); }, a.ask_in);
}

function connect() {
  socket = window.helplineWidget.socket = window.io("/widget", {
    transports: ["websocket", "polling"],
    auth: function (cb) { cb({ inbox: inbox, token: token, profile: profile, user: user }); }
  });
  socket.on("history", function (data) {
    events.push(["history", data.messages.length]);
    historyCount = data.messages.length;
    applyGate();
    data.messages.forEach(render);
    pending().forEach(function (item) {
      render({ client_id: item.id, from: "visitor", text: item.text, pending: true });
      send(item);  // unacknowledged before the disconnect: the server stores each client id once
    });
    markRead();
  });
  socket.on("connect", function () { showError(""); });
  socket.on("agent:message", function (m) {
    events.push(["agent:message", m.id]);
    typingBox.hidden = true;
    render(m);
    if (open) { markRead(); } else { unread += 1; unreadBox.textContent = String(unread); unreadBox.hidden = false; }
  });
  socket.on("visitor:message", render);  // sent from another tab of this visitor
  socket.on("availability", avail);
  socket.on("csat:ask", askRating);  // an agent solved the chat: "How did we do?"
  socket.on("read", function (r) {  // the agents have read up to this message of ours
    var upTo = shown["c:" + r.client_id];
    if (!upTo) { return; }
    Array.prototype.forEach.call(log.querySelectorAll("li.visitor"), function (li) {
      if (li === upTo || li.compareDocumentPosition(upTo) & Node.DOCUMENT_POSITION_FOLLOWING) {
        li.classList.add("read");
      }
    });
  });
  var typingTimer = null;
  socket.on("agent:typing", function () {
    typingBox.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { typingBox.hidden = true; }, 4000);
  });
  socket.on("connect_error", function (err) {
    events.push(["connect_error", err.message]);
    if (err.message === "invalid visitor token") {
      socket.disconnect();
      store.del(tokenKey);
      token = null;
      start();
      return;
    }
    showError("Chat unavailable: " + err.message);
  });
}

function start() {
  fetch("/widget/api/session", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: JSON.stringify({ inbox: inbox, token: token })
  }).then(function (r) { return r.json().then(function (body) { return [r.status, body]; }); })
    .then(function (res) {
      if (res[0] === 403 && token) {  // a token that is not ours: start over as a new visitor, with nothing
        events.push(["session_refused", res[1].error]);
        store.del(tokenKey);
        savePending([]);
        token = null;
        return start();
      }
      if (!res[1].ok) { showError(res[1].error); return; }
      keepToken(res[1].token);
      connect();
    })
    .catch(function () { showError("Chat unavailable; retrying\u2026"); setTimeout(start, 5000); });
}

$("profile").addEventListener("submit", function (e) {
  e.preventDefault();
  var name = $("profile-name"), email = $("profile-email");
  var bad = [name, email].filter(function (input) { return !input.checkValidity(); });
  [name, email].forEach(function (input) { input.setAttribute("aria-invalid", String(bad.indexOf(input) >= 0)); });
  if (bad.length) {
    $("profile-saved").textContent = bad[0] === email ? "Please enter a valid email address." : "Please enter your name.";
    bad[0].focus();
    return;
  }
  var wasGated = $("compose").hidden;
  profile = { name: name.value.trim(), email: email.value.trim() };
  store.set(profileKey, JSON.stringify(profile));
  var done = function (ok) {
    $("profile-saved").textContent = ok ? "Saved. Thank you!" : "Not saved, try again.";
    if (!applyGate() && wasGated) { $("about-you").open = false; text.focus(); }
  };
  if (!socket || !socket.connected) { done(true); return; }  // sent with the next connection's auth
  socket.timeout(10000).emit("visitor:profile", profile, function (err, ack) { done(!err && ack && ack.ok); });
});
launcher.addEventListener("click", function () { setOpen(true); });
$("close").addEventListener("click", function () { setOpen(false); });
document.addEventListener("keydown", function (e) { if (e.key === "Escape" && open) { setOpen(false); } });
$("compose").addEventListener("submit", function (e) {
  e.preventDefault();
  var value = text.value.trim();
  if (!value || !socket) { return; }
  var item = { id: newId(), text: value };
  savePending(pending().concat([item]));
  render({ client_id: item.id, from: "visitor", text: value, pending: true });
  text.value = "";
  if (socket.connected) { send(item); }
  socket.emit("visitor:typing", { text: "" });
});
text.addEventListener("keydown", function (e) {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("compose").requestSubmit(); }
});
var lastTyping = 0, typingLater = null;
function sendTyping() {
  typingLater = null;
  lastTyping = Date.now();
  if (socket && socket.connected) { socket.emit("visitor:typing", { text: text.value }); }
}
text.addEventListener("input", function () {
  // At most one preview per 400 ms, and always the latest draft last (a trailing send).
  if (typingLater) { return; }
  typingLater = setTimeout(sendTyping, Math.max(0, 400 - (Date.now() - lastTyping)));
});
$("file").addEventListener("change", function () {
  var file = this.files[0];
  if (!file || !token) { return; }
  var form = new FormData();
  var id = newId();
  form.append("inbox", inbox);
  form.append("token", token);
  form.append("id", id);
  form.append("file", file);
  this.value = "";
  fetch("/widget/api/attachments", { method: "POST", body: form, headers: { "Accept": "application/json" } })
    .then(function (r) { return r.json(); })
    .then(function (body) {
      if (!body.ok) { showError(body.error); return; }
      render({ id: body.id, client_id: id, from: "visitor", text: "", attachments: [body.attachment] });
    })
    .catch(function () { showError("The file could not be sent."); });
});
// The satisfaction survey after an agent solved the chat: csat:ask (live, or when the widget connects while the
// solve is unrated) shows "How did we do?"; a click on a score rates at once, through the code path of the email
// link (web/widget_csat.py); a comment may follow, and a new answer replaces the last (one rating per solve).
var survey = null, rated = 0, csat = $("csat");
function csatSay(note) { $("csat-status").textContent = note; }
function askRating(s) {
  survey = s.survey;
  $("csat-more").hidden = true;
  csat.hidden = false;
  showRating(0, "");
}
function showRating(score, note) {  // the pressed score and the line under the buttons; the log keeps its end in view
  rated = score;
  csat.querySelectorAll("[data-score]").forEach(function (b) { b.setAttribute("aria-pressed", b.dataset.score == score); });
  csatSay(note);
  log.scrollTop = log.scrollHeight;
}
function sendRating(score) {
  var comment = $("csat-comment").value.trim();
  fetch("/widget/api/rating", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ inbox: inbox, token: token, survey: survey, score: score, comment: comment })
  }).then(function (r) { return r.json(); })
    .then(function (b) {
      if (!b.ok) { return csatSay(b.error); }
      $("csat-more").hidden = !!comment;
      showRating(score, comment ? "Thank you for your feedback!" : "Thanks! You rated us " + score + " of 5.");
    })
    .catch(function () { csatSay("Not sent, try again."); });
}
csat.onclick = function (e) { var score = +e.target.dataset.score; if (score) { sendRating(score); } };
$("csat-more").onsubmit = function (e) { e.preventDefault(); sendRating(rated); };
$("compose").addEventListener("submit", function () { csat.hidden = true; });  // writing again reopens the chat

var fragment = /[#&]t=([^&]+)/.exec(location.hash), signed = /[#&]u=([^&]+)/.exec(location.hash);
token = fragment ? decodeURIComponent(fragment[1]) : store.get(tokenKey);
try { user = signed ? JSON.parse(decodeURIComponent(signed[1])) : null; } catch (e) { user = null; }
if (location.hash) { history.replaceState(null, "", location.pathname + location.search); }
applyGate();
start();
tellParent();
})();
