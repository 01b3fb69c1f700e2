/* pbx-tracker live board: the document from /board/events (Server-Sent Events) drawn
   without reloading; the seconds count on in the browser.  Every value is set as text,
   never as HTML.  When the stream breaks the browser retries (retry: 3000); should it
   give up, this script opens a new stream with a growing pause, and goes to the login
   page when the session is gone. */
(function () {
  "use strict";
  var root = document.getElementById("board");
  if (!root) { return; }
  var tv = root.getAttribute("data-tv") === "1";
  if (tv) { document.body.classList.add("tv"); }
  var linkEl = document.getElementById("board-link");
  var managersEl = document.getElementById("board-managers");
  var waitingEl = document.getElementById("board-waiting");
  var waitingCount = document.getElementById("board-waiting-count");
  var todayEl = document.getElementById("board-today");
  var skew = 0; // server clock minus ours, seconds
  var last = null;
  var source = null;
  var pause = 1000;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function now() { return Date.now() / 1000 + skew; }
  function duration(since) {
    if (since === null || since === undefined) { return ""; }
    var s = Math.max(0, Math.floor(now() - since));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var mm = (h && m < 10 ? "0" : "") + m, rr = (r < 10 ? "0" : "") + r;
    return h ? h + ":" + mm + ":" + rr : mm + ":" + rr;
  }
  function ticker(since, cls) {
    var node = el("span", cls || "ticker", duration(since));
    node.setAttribute("data-since", String(since));
    return node;
  }
  function plural(n, one) { return n + " " + (n === 1 ? one : one + "s"); }
  function percent(x) { return x === null || x === undefined ? "–" : Math.round(x * 100) + "%"; }
  function seconds(x) { return x === null || x === undefined ? "–" : Math.round(x) + " s"; }
  function who(party) {
    var text = party.caller || "hidden number";
    if (party.caller_name && party.caller_name !== party.caller) { text = party.caller_name + " · " + text; }
    return text;
  }

  function managerItem(m) {
    var li = el("li", "manager status-" + m.status);
    li.setAttribute("data-extension", m.extension);
    var head = el("div", "manager-head");
    head.appendChild(el("span", "manager-name", m.name));
    head.appendChild(el("span", "manager-ext", m.extension));
    li.appendChild(head);
    var state = el("div", "manager-state");
    state.appendChild(el("span", "state-text", m.status_text));
    if (m.since !== null && m.status !== "free") { state.appendChild(ticker(m.since)); }
    li.appendChild(state);
    var party = m.call || m.ringing_for;
    if (party) {
      var line = el("div", "manager-call");
      line.appendChild(el("span", "call-who", (m.call ? "with " : "for ") + who(party)));
      if (party.source) { line.appendChild(el("span", "call-source", party.source)); }
      if (m.call && party.since) { line.appendChild(ticker(party.since, "ticker talk")); }
      li.appendChild(line);
    }
    var t = m.today || { answered: 0, missed_while_free: 0, callbacks_done: 0 };
    var figures = el("div", "manager-today");
    figures.appendChild(el("span", "fig-answered", t.answered + " answered"));
    figures.appendChild(el("span", "fig-missed", t.missed_while_free + " missed while free"));
    figures.appendChild(el("span", "fig-callbacks", plural(t.callbacks_done, "callback") + " done"));
    li.appendChild(figures);
    return li;
  }

  function waitingItem(w) {
    var li = el("li", "waiting-caller");
    li.setAttribute("data-call", w.id);
    li.appendChild(ticker(w.since, "ticker wait"));
    var main = el("div", "caller-main");
    main.appendChild(el("span", "caller-who", who(w)));
    var where = [];
    if (w.number) { where.push("dialled " + w.number); }
    if (w.source) { where.push(w.source); }
    if (w.queue) { where.push("queue " + w.queue); }
    main.appendChild(el("span", "caller-where", where.join(" · ")));
    if (w.ringing && w.ringing.length) { main.appendChild(el("span", "caller-ringing", "ringing " + w.ringing.join(", "))); }
    li.appendChild(main);
    return li;
  }

  function kpi(label, value, cls) {
    var box = el("div", "kpi" + (cls ? " " + cls : ""));
    box.appendChild(el("dt", null, label));
    var dd = el("dd");
    if (value instanceof Node) { dd.appendChild(value); } else { dd.textContent = value; }
    box.appendChild(dd);
    return box;
  }

  function drawToday(t, stale) {
    todayEl.replaceChildren();
    if (!t) { todayEl.appendChild(el("p", "muted", "The day's figures are being read…")); return; }
    todayEl.appendChild(kpi("Calls", String(t.calls)));
    todayEl.appendChild(kpi("Answered", String(t.answered)));
    todayEl.appendChild(kpi("Missed", String(t.missed), t.missed ? "bad" : ""));
    todayEl.appendChild(kpi("Answer rate", percent(t.answer_rate)));
    todayEl.appendChild(kpi("Avg ring", seconds(t.wait_seconds)));
    var open = el("span", null, String(t.open_callbacks));
    if (t.open_callbacks && t.oldest_callback_since) {
      var oldest = t.oldest_callback_call ? el("a", "oldest") : el("span", "oldest");
      if (t.oldest_callback_call) { oldest.href = "/calls/" + encodeURIComponent(t.oldest_callback_call); }
      oldest.appendChild(document.createTextNode(" oldest "));
      oldest.appendChild(ticker(t.oldest_callback_since, "ticker oldest"));
      open.appendChild(oldest);
    }
    todayEl.appendChild(kpi("Not called back", open, t.open_callbacks ? "bad" : ""));
    if (stale) { todayEl.appendChild(el("p", "muted stale", "The database did not answer: these figures may be old.")); }
  }

  function draw(doc) {
    last = doc;
    skew = doc.now - Date.now() / 1000;
    managersEl.replaceChildren.apply(managersEl, doc.managers.map(managerItem));
    waitingEl.replaceChildren.apply(waitingEl, doc.waiting.map(waitingItem));
    waitingCount.textContent = doc.waiting.length ? String(doc.waiting.length) : "";
    if (!doc.waiting.length) { waitingEl.appendChild(el("li", "none", "Nobody is waiting.")); }
    drawToday(doc.today, doc.today_stale);
    var link = doc.asterisk || {};
    if (link.connected === false) { status("Asterisk: " + (link.text || "not connected"), "down"); }
    else { status("Live", "live"); }
    root.setAttribute("data-version", String((Number(root.getAttribute("data-version")) || 0) + 1));
  }

  function status(text, cls) {
    linkEl.textContent = text;
    linkEl.className = "board-link " + cls;
  }

  function tick() {
    var nodes = root.querySelectorAll("[data-since]");
    for (var i = 0; i < nodes.length; i++) {
      var since = Number(nodes[i].getAttribute("data-since"));
      nodes[i].textContent = duration(since);
    }
  }

  function connect() {
    source = new EventSource("/board/events");
    source.onopen = function () { pause = 1000; };
    source.onmessage = function (event) {
      try { draw(JSON.parse(event.data)); } catch (e) { status("A bad update was skipped", "down"); }
    };
    source.onerror = function () {
      status("Reconnecting…", "down");
      if (source.readyState === EventSource.CLOSED) { source.close(); recover(); }
    };
  }

  function recover() {
    fetch("/board.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search)); return; }
        if (response.status === 403) { status("This board is no longer yours to see", "down"); return; }
        setTimeout(connect, pause);
        pause = Math.min(pause * 2, 30000);
      })
      .catch(function () { setTimeout(recover, pause); pause = Math.min(pause * 2, 30000); });
  }

  var full = document.getElementById("board-fullscreen");
  if (full) {
    full.addEventListener("click", function () {
      if (document.fullscreenElement) { document.exitFullscreen(); }
      else if (document.documentElement.requestFullscreen) { document.documentElement.requestFullscreen(); }
    });
  }
  setInterval(tick, 1000);
  connect();
})();
