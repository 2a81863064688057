// marketbot web: copy buttons and the live feed. No token here: /live is authenticated by
// the HTTP-only session cookie; nothing is kept in browser storage.
(function () {
  "use strict";
  function announce(text) {
    var region = document.getElementById("announce");
    if (region) { region.textContent = ""; setTimeout(function () { region.textContent = text; }, 50); }
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) { return navigator.clipboard.writeText(text); }
    var area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.style.position = "absolute"; area.style.left = "-9999px";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) { return; }
    copyText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("data-copied", "true");
      announce("Copied to the clipboard");
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  });

  var DESCRIBE = {
    OrderPlaced: function (d) { return "Order placed: " + d.side + " " + d.quantity + " " + d.symbol + " on " + d.exchange; },
    OrderFilled: function (d) { return "Filled: " + d.filled_quantity + " " + d.symbol + " @ " + d.average_price; },
    OrderRejected: function (d) { return "Rejected (" + d.reason + "): " + d.message; },
    OrderOutcomeUnknown: function (d) { return "Outcome not known yet for " + d.symbol + "; being checked"; },
    PositionClosed: function (d) { return "Closed " + d.symbol + " (" + d.close_reason + ") @ " + d.exit_price + ", PnL " + d.realized_pnl + " USDT"; },
    OperationStatusChanged: function (d) { return d.symbol + " is now " + String(d.status).toLowerCase() + (d.realized_pnl ? ", PnL " + d.realized_pnl + " USDT" : ""); },
    CommissionAccrued: function (d) { return "Commission " + d.amount + " " + d.currency; }
  };

  function startLive() {
    if (!document.body.getAttribute("data-live")) { return; }
    var state = document.getElementById("live-state");
    var feed = document.getElementById("live-feed");
    var lastId = null;
    var delay = 1000;
    var refreshTimer = null;
    function setState(text) { if (state) { state.textContent = text; state.setAttribute("data-state", text); } }
    function refresh() {
      if (refreshTimer) { return; }
      refreshTimer = setTimeout(function () {
        refreshTimer = null;
        var target = document.getElementById("positions");
        if (target && window.htmx) { window.htmx.trigger(target, "refresh"); }
      }, 150);
    }
    function money(text) {
      var span = document.createElement("span");
      if (text === null || text === undefined) { span.textContent = "\u2013"; return span; }
      var value = String(text).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
      span.textContent = value;
      span.className = value.charAt(0) === "-" ? "loss" : "gain";
      return span;
    }
    function applyMarks(frame) {
      var table = document.getElementById("positions-table");
      var rows = table ? table.querySelectorAll("tbody tr[data-operation]") : [];
      if (rows.length !== frame.positions.length) { refresh(); return; }
      frame.positions.forEach(function (p) {
        var row = table.querySelector('tr[data-operation="' + p.operation_id + '"]');
        if (!row) { refresh(); return; }
        var mark = row.querySelector(".mark");
        var upnl = row.querySelector(".upnl");
        if (mark) { mark.textContent = p.mark_price === null ? "\u2013" : money(p.mark_price).textContent; }
        if (upnl) { upnl.replaceChildren(money(p.unrealized_pnl)); }
      });
      var total = document.getElementById("unrealized-pnl");
      if (total) { total.replaceChildren(money(frame.unrealized_total)); }
      setState("live");
      if (state) { state.setAttribute("data-marks", String(Date.now())); }
    }
    function connect() {
      var scheme = location.protocol === "https:" ? "wss:" : "ws:";
      var url = scheme + "//" + location.host + "/live" + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : "");
      var socket = new WebSocket(url);
      socket.onopen = function () { delay = 1000; };
      socket.onmessage = function (message) {
        var frame;
        try { frame = JSON.parse(message.data); } catch (e) { return; }
        if (frame.id) { lastId = frame.id; }
        if (frame.type === "hello") { setState("live"); return; }
        if (frame.type === "reset" || frame.type === "overflow") { refresh(); return; }
        if (frame.type === "marks") { applyMarks(frame); return; }
        var describe = DESCRIBE[frame.type];
        if (!describe || !frame.data) { return; }
        var text = describe(frame.data);
        if (feed) {
          var item = document.createElement("li");
          item.textContent = new Date().toLocaleTimeString() + " — " + text;
          item.setAttribute("data-type", frame.type);
          feed.insertBefore(item, feed.firstChild);
        }
        refresh();
      };
      socket.onclose = function () {
        setState("reconnecting…");
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30000);
      };
    }
    connect();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", startLive); } else { startLive(); }
})();
