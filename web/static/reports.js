/* Reports pages: draw the charts from the same rows as the tables (Chart.js), refresh the live queue. */
(function () {
  "use strict";

  function el(id) { return document.getElementById(id); }

  function drawCharts() {
    var source = el("report-data");
    if (!source || !window.Chart) { return; }
    var data = JSON.parse(source.textContent);
    window.helplineCharts = [];
    function chart(id, type, labels, datasets, yTitle) {
      var canvas = el(id);
      if (!canvas) { return; }
      window.helplineCharts.push(new window.Chart(canvas, {
        type: type,
        data: { labels: labels, datasets: datasets },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          scales: { y: { beginAtZero: true, title: { display: true, text: yTitle } } }
        }
      }));
    }
    chart("chart-volume", "bar", data.volume.labels, [
      { label: "created", data: data.volume.created, backgroundColor: "#2f6fde" },
      { label: "solved", data: data.volume.solved, backgroundColor: "#12b76a" }
    ], "tickets");
    ["first_response", "next_response", "resolution"].forEach(function (name) {
      var d = data[name];
      chart("chart-" + name, "line", d.labels, [
        { label: "median", data: d.median, borderColor: "#2f6fde", backgroundColor: "#2f6fde", spanGaps: true },
        { label: "90th percentile", data: d.p90, borderColor: "#f79009", backgroundColor: "#f79009", spanGaps: true }
      ], "hours");
    });
    chart("chart-backlog", "bar", data.backlog.labels, [
      { label: "open tickets", data: data.backlog.tickets, backgroundColor: "#d62976" }
    ], "tickets");
  }

  function text(node, value) { if (node) { node.textContent = value; } }

  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) {
      var td = document.createElement("td");
      if (c && c.href !== undefined) {
        var a = document.createElement("a");
        a.href = c.href; a.textContent = c.text; td.appendChild(a);
      } else if (c && c.badge !== undefined) {
        var span = document.createElement("span");
        span.className = "badge " + c.badge; span.textContent = c.text; td.appendChild(span);
      } else {
        td.textContent = c;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function refreshQueue() {
    var box = el("queue");
    if (!box) { return; }
    fetch(box.dataset.source, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (snap) {
        if (!snap) { return; }
        text(el("q-now"), snap.now);
        text(el("q-waiting"), snap.waiting);
        text(el("q-oldest"), snap.oldest_waiting ? snap.oldest_waiting.label : "–");
        text(el("q-oldest-ticket"), snap.oldest_waiting ? "#" + snap.oldest_waiting.ticket_id + " " + snap.oldest_waiting.subject : "");
        text(el("q-risk-count"), snap.at_risk.length);
        text(el("q-online"), snap.online);
        var risk = el("q-risk"), agents = el("q-agents");
        risk.replaceChildren.apply(risk, snap.at_risk.map(function (r) {
          return row([{ href: r.url, text: "#" + r.ticket_id + " " + r.subject }, r.metric.replace("_", " "),
                      { badge: r.state === "overdue" ? "sla-breach" : "sla-warn", text: r.label }]);
        }));
        agents.replaceChildren.apply(agents, snap.agents.map(function (a) {
          return row([a.agent, a.online ? "online" : "offline", a.open]);
        }));
      })
      .catch(function () { /* the next tick tries again */ });
  }

  drawCharts();
  if (el("queue")) {
    window.setInterval(refreshQueue, 15000);
    // Live: any ticket event of the page's inboxes or any change of who is online refreshes at once (once per
    // burst), over the socket app.js opened.
    var pending = null;
    var soon = function () {
      if (pending) { return; }
      pending = window.setTimeout(function () { pending = null; refreshQueue(); }, 300);
    };
    document.addEventListener("DOMContentLoaded", function () {  // app.js, which opens the socket, runs later
      if (window.helplineSocket) {
        window.helplineSocket.onAny(function (name) {
          if (/^(ticket|message|presence)\./.test(name)) { soon(); }
        });
      }
    });
  }
})();
