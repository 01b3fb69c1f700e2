/*! pbx-tracker: dynamic number insertion.
 * <script async src="https://track.example.ru/tracker.js" data-pool="site"
 *         data-number="+7 495 111-00-00" data-selector=".phone"></script>
 * Asks the pool for this visitor's number, swaps the site's number in text,
 * tel: links and data-selector elements (also in parts added later), keeps the
 * visit alive while the tab is visible. Any failure leaves the page as it is.
 */
(function () {
  "use strict";
  var said = false;
  function fail(e) { // one line at most: the page's console is not ours
    if (!said && window.console && console.debug) {
      console.debug("pbx-tracker:", e && e.message ? e.message : e);
    }
    said = true;
  }
  function safe(fn) { // nothing we do may throw into the page
    return function (x) { try { fn(x); } catch (e) { fail(e); } };
  }
  try { // everything: whatever happens, the page goes on
    if (window.pbxTracker) return; // the tag is on the page twice
    var LABELS = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
      "gclid", "yclid", "fbclid"];
    var TAG = /^[^\x00-\x1f\x7f]{1,256}$/, CLICK = /^[A-Za-z0-9._~-]{1,256}$/;
    var SKIP = { SCRIPT: 1, STYLE: 1, NOSCRIPT: 1, TEXTAREA: 1, TEMPLATE: 1 };

    function ownTag() {
      var s = document.currentScript, all = document.querySelectorAll("script[src]");
      for (var i = 0; !(s && s.src) && i < all.length; i++) {
        if (/\/tracker\.js$/.test(all[i].src.split(/[?#]/)[0])) s = all[i];
      }
      return s && s.src ? s : null;
    }
    function cookie(name) {
      var m = document.cookie.match(new RegExp("(?:^|;\\s*)" + name + "=([^;]*)"));
      return m ? decodeURIComponent(m[1]) : null;
    }
    function visitorId() { // first-party; private mode may refuse either store
      var id = null;
      try { id = localStorage.getItem("pbx_vid") || cookie("pbx_vid"); } catch (e) { /* none */ }
      if (id && /^[A-Za-z0-9_-]{16,64}$/.test(id)) return id;
      var abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      var bytes = crypto.getRandomValues(new Uint8Array(22));
      id = Array.prototype.map.call(bytes, function (b) { return abc[b & 63]; }).join("");
      try { localStorage.setItem("pbx_vid", id); } catch (e) {
        try { document.cookie = "pbx_vid=" + id + ";path=/;max-age=31536000;samesite=lax"; }
        catch (e2) { /* nowhere to keep it: a new visitor on each page */ }
      }
      return id;
    }
    function url(value) { // what the server takes: http(s), at most 2048 characters
      return /^https?:\/\//.test(value) && value.length <= 2048 ? value : null;
    }
    function fits(k, v) {
      return typeof v === "string" && (k.charAt(0) === "u" ? TAG : CLICK).test(v);
    }
    function landingTags() { // the first touch of the session wins over later pages
      var tags = null, query = new URLSearchParams(location.search);
      try { tags = JSON.parse(sessionStorage.getItem("pbx_tags")); } catch (e) { /* none */ }
      if (tags && typeof tags === "object") return tags;
      tags = {};
      LABELS.forEach(function (k) { if (fits(k, query.get(k))) tags[k] = query.get(k); });
      try {
        if (Object.keys(tags).length) sessionStorage.setItem("pbx_tags", JSON.stringify(tags));
      } catch (e) { /* storage blocked: this page's tags only */ }
      return tags;
    }
    function visitStart(pool, page) { // only fields the server's patterns accept
      var body = { page: page }, tags = landingTags(), referrer = url(document.referrer);
      if (pool) body.pool = pool;
      try { body.visitor_id = visitorId(); } catch (e) { /* no crypto: anonymous */ }
      if (referrer) body.referrer = referrer;
      LABELS.forEach(function (k) { if (fits(k, tags[k])) body[k] = tags[k]; });
      var ga = (cookie("_ga") || "").split(".").slice(2).join("."); // GA1.2.XXXX.YYYY
      if (/^[A-Za-z0-9.]{1,64}$/.test(ga)) body.ga_client_id = ga;
      var ym = cookie("_ym_uid");
      if (/^\d{1,32}$/.test(ym || "")) body.ym_client_id = ym;
      if (navigator.webdriver === true) body.webdriver = true; // automation: the site's number
      return body;
    }
    function digits(text) { // national digits: "+7 495..." and "8 (495)..." are one number
      var d = String(text).replace(/\D/g, "");
      return d.length === 11 && /^[78]/.test(d) ? d.slice(1) : d;
    }
    function pattern(national) { // those digits with any separators and +7/8 prefix
      var sep = "[\\s\\u00a0().-]*";
      var prefix = national.length === 10 ? "(?:(?:\\+?\\s?7|8)" + sep + ")?" : "\\+?";
      return new RegExp("(^|[^\\d+])" + prefix + national.split("").join(sep) + "(?!\\d)", "g");
    }

    var script = ownTag();
    if (!script) return;
    var original = script.getAttribute("data-number") || "";
    var pool = script.getAttribute("data-pool");
    var selector = script.getAttribute("data-selector");
    var page = url(location.href.split("#")[0]) || url(location.origin + location.pathname);
    try { if (selector) document.querySelector(selector); } catch (e) { selector = null; }
    if (digits(original).length < 5 || (pool && !/^[A-Za-z0-9_.-]{1,64}$/.test(pool)) || !page) {
      return fail("check data-number and data-pool");
    }
    var base = script.src;
    var originalTel = "tel:+" + (digits(original).length === 10 ? "7" : "") + digits(original);
    var shown = { display: original, tel: originalTel };
    var known = [digits(original)], patterns = [pattern(known[0])]; // every number shown
    var state = { visitId: null, number: null };
    window.pbxTracker = state;

    function swapText(node) {
      var parent = node.parentNode, text = node.nodeValue, next = text;
      if (!parent || SKIP[parent.nodeName] || parent.isContentEditable) return;
      patterns.forEach(function (re) {
        next = next.replace(re, function (m, lead) { return lead + shown.display; });
      });
      if (next !== text) node.nodeValue = next; // unchanged: no mutation, no loop
    }
    function swapElement(el) {
      var href = el.nodeName === "A" && el.getAttribute("href");
      if (href && /^tel:/i.test(href) && known.indexOf(digits(href)) >= 0 && href !== shown.tel) {
        el.setAttribute("href", shown.tel);
      }
      if (selector && el.matches(selector) && el.textContent !== shown.display) {
        el.textContent = shown.display;
      }
    }
    function swapIn(root) {
      if (root.nodeType === 3) return swapText(root);
      if (root.nodeType === 1) swapElement(root);
      if (!root.querySelectorAll) return;
      var found = root.querySelectorAll("a[href]" + (selector ? ", " + selector : ""));
      for (var i = 0; i < found.length; i++) swapElement(found[i]);
      var walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (var n = walk.nextNode(); n; n = walk.nextNode()) swapText(n);
    }
    function show(number, display) { // number null: back to the site's own number
      if (number === state.number) return;
      if (state.number) {
        known.push(digits(state.number));
        patterns.push(pattern(digits(state.number)));
      }
      shown = number ? { display: display, tel: "tel:" + number }
        : { display: original, tel: originalTel };
      state.number = number;
      swapIn(document);
    }
    new MutationObserver(safe(function (records) {
      if (!state.number) return;
      records.forEach(function (r) {
        if (r.type === "childList") r.addedNodes.forEach(swapIn); else swapIn(r.target);
      });
    })).observe(document.documentElement, { childList: true, subtree: true,
      characterData: true, attributes: true, attributeFilter: ["href"] });

    function post(path, body) { // resolves to {status, json} of a 200, {status} otherwise
      var abort = window.AbortController ? new AbortController() : null;
      var timer = setTimeout(function () { if (abort) abort.abort(); }, 5000);
      var init = { method: "POST", mode: "cors", credentials: "omit", keepalive: true };
      if (abort) init.signal = abort.signal;
      if (body) { // keep-alive has no body: a simple request, no preflight
        init.headers = { "Content-Type": "application/json" };
        init.body = JSON.stringify(body);
      }
      return fetch(new URL(path, base).href, init).then(function (r) {
        if (r.status !== 200) return { status: r.status };
        return r.json().then(function (json) { return { status: 200, json: json }; });
      }).then(function (answer) { clearTimeout(timer); return answer; },
        function (e) { clearTimeout(timer); throw e; });
    }
    function valid(a) {
      return a && typeof a.visit_id === "string" && typeof a.display === "string" &&
        (a.number === null || /^\+\d{5,15}$/.test(a.number));
    }
    var every = 0, timer = 0, busy = false;
    function schedule() {
      clearTimeout(timer);
      if (every && state.visitId && document.visibilityState !== "hidden") {
        timer = setTimeout(safe(keepAlive), every * 1000);
      }
    }
    function start() {
      busy = true;
      return post("api/v1/visits", visitStart(pool, page)).then(function (r) {
        if (!r.json || !valid(r.json)) throw new Error("visit: HTTP " + r.status);
        state.visitId = r.json.visit_id;
        every = Math.max(5, Math.min(3600, Number(r.json.keep_alive_seconds) || 60));
        show(r.json.fallback ? null : r.json.number, r.json.display);
      }).catch(fail).then(function () { busy = false; schedule(); });
    }
    function keepAlive() {
      if (busy || !state.visitId) return;
      busy = true;
      post("api/v1/visits/" + state.visitId + "/keep-alive").then(function (r) {
        busy = false;
        if (r.status === 404) return start(); // the visit expired: the number may change
        if (r.json && valid(r.json)) show(r.json.number, r.json.display);
        schedule();
      }).catch(function (e) { busy = false; fail(e); schedule(); });
    }
    document.addEventListener("visibilitychange", safe(function () {
      if (document.visibilityState === "hidden") clearTimeout(timer); else keepAlive();
    }));
    safe(start)();
  } catch (e) { fail(e); }
})();
