/* Helpline chat widget loader: <script src=".../widget.js" data-inbox="KEY" async></script>.
 * It only places an iframe on the page; the conversation lives inside it, on Helpline's origin, out of reach of
 * the host page's scripts and styles. The frame tells us "open"/"closed" and the visitor token, never chat content. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.getAttribute("data-inbox") || document.getElementById("helpline-chat-frame")) { return; }
  var inbox = script.getAttribute("data-inbox");
  var base = new URL(script.src, location.href).origin;
  // The visitor token is kept here, in the shop's first-party storage: browsers deny or wipe a third-party
  // frame's storage. It opens only this visitor's own conversation. The fragment never reaches a server.
  var key = "helpline:" + inbox + ":token";
  var saved = null;
  try { saved = window.localStorage.getItem(key); } catch (e) { saved = null; }
  var frame = document.createElement("iframe");
  frame.id = "helpline-chat-frame";
  frame.title = "Chat with us";
  // A signed-in customer, vouched for by the shop's server: data-user-id/-email/-name and data-user-signature.
  var user = null;
  if (script.getAttribute("data-user-signature")) {
    user = {};
    ["id", "email", "name", "signature"].forEach(function (k) { user[k] = script.getAttribute("data-user-" + k) || ""; });
  }
  var fragment = (saved ? "t=" + encodeURIComponent(saved) : "") +
    (user ? "&u=" + encodeURIComponent(JSON.stringify(user)) : "");
  frame.src = base + "/widget/frame?inbox=" + encodeURIComponent(inbox) + (fragment ? "#" + fragment : "");
  var phone = window.matchMedia("(max-width: 480px)");
  var isOpen = false, side = "right";

  function set(styles) {
    // !important: a host rule such as "iframe { display: none }" must not hide or reshape the chat.
    Object.keys(styles).forEach(function (k) { frame.style.setProperty(k, styles[k], "important"); });
  }
  function layout() {
    set({ position: "fixed", border: "0", margin: "0", padding: "0", "z-index": "2147483000", display: "block",
          background: "transparent", "color-scheme": "normal", "max-width": "100vw", "max-height": "100vh" });
    var other = side === "left" ? "right" : "left", edge = {};
    if (phone.matches && isOpen) {
      set({ width: "100vw", height: "100vh", right: "0", bottom: "0", top: "0", left: "0" });
      return;
    }
    edge[side] = "8px";
    edge[other] = "auto";
    set(edge);
    if (!isOpen) {
      set({ width: "84px", height: "84px", bottom: "8px", top: "auto" });
    } else {
      set({ width: "380px", height: "min(600px, calc(100vh - 16px))", bottom: "8px", top: "auto" });
    }
  }
  window.addEventListener("message", function (event) {
    if (event.origin !== base || event.source !== frame.contentWindow) { return; }
    var data = event.data;
    if (data && data.type === "helpline:state") {
      isOpen = !!data.open;
      side = data.position === "left" ? "left" : "right";
      layout();
    }
    if (data && data.type === "helpline:token" && /^v_[\w-]{22}\.[\w-]{43}$/.test(data.token)) {
      try { window.localStorage.setItem(key, data.token); } catch (e) { /* private mode: a new visitor next time */ }
    }
  });
  if (phone.addEventListener) { phone.addEventListener("change", layout); }
  layout();
  function mount() { document.body.appendChild(frame); }
  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})();
