/* "Copy reply" on Instagram tickets answered by hand: the drafted reply goes to the clipboard (and stays readable
   on the button's data-copied attribute, so the page and its tests can tell what was copied). */
(function () {
  "use strict";
  var button = document.getElementById("ig-copy");
  if (!button) { return; }
  var status = document.getElementById("ig-copy-status");
  function say(text) { if (status) { status.textContent = text; } }
  button.addEventListener("click", function () {
    var box = document.querySelector(button.dataset.copyFrom);
    var text = box ? box.value : "";
    if (!text.trim()) { say("Write the reply first."); if (box) { box.focus(); } return; }
    button.dataset.copied = text;
    function fallback() {
      box.focus(); box.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      say(ok ? "Copied." : "Select the text and copy it with Ctrl+C.");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied."); }, fallback);
    } else {
      fallback();
    }
  });
})();
