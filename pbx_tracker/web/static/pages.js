// pbx-tracker pages: keep the callbacks list current without a reload, and send its
// buttons without leaving the page.  Without this script the page still works
// (plain forms, a reload to see new callbacks).
(function () {
  'use strict';
  var list = document.getElementById('tasks');
  if (!list) { return; }
  var csrf = list.getAttribute('data-csrf') || '';
  var pollMs = Math.max(1, Number(list.getAttribute('data-poll')) || 5) * 1000;
  var shown = null;
  var timer = null;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.textContent = text; }
    return node;
  }

  function link(href, text) {
    var node = el('a', 'meta-item task-link', text);
    node.href = href;
    return node;
  }

  function action(id, name, label, style) {
    var form = el('form');
    form.method = 'post';
    form.action = '/callbacks/' + id + '/' + name;
    form.setAttribute('data-ajax', '');
    var token = el('input');
    token.type = 'hidden';
    token.name = 'csrf';
    token.value = csrf;
    var button = el('button', 'btn ' + style, label);
    button.type = 'submit';
    form.append(token, button);
    return form;
  }

  // One open callback; mirrors task_item() in pbx_tracker/web/pages/callbacks.py.
  function row(task) {
    var item = el('li', 'task');
    item.id = 'task-' + task.id;
    item.setAttribute('data-id', String(task.id));
    var main = el('div', 'task-main');
    main.append(el('div', 'customer', task.customer));
    if (task.caller_name) { main.append(el('div', 'caller-name', task.caller_name)); }
    var meta = el('div', 'meta');
    [task.source, task.tries, task.did, task.assignee].forEach(function (text) {
      if (text) { meta.append(el('span', 'meta-item', text)); }
    });
    if (task.call) { meta.append(link('/calls/' + task.call, 'Call #' + task.call)); }
    if (task.call && task.recording) { meta.append(link('/recordings/' + task.call, 'Recording')); }
    main.append(meta);
    var age = el('div', 'age age-' + task.urgency, task.age);
    age.title = task.since;
    var actions = el('div', 'actions');
    if (task.can_call) { actions.append(action(task.id, 'call', 'Call now', 'btn-primary')); }
    actions.append(action(task.id, 'done', 'Done', 'btn-done'));
    item.append(main, age, actions);
    return item;
  }

  function render(tasks, highlight) {
    var known = {};
    Array.prototype.forEach.call(list.children, function (item) {
      known[item.getAttribute('data-id')] = true;
    });
    var items = tasks.map(function (task) {
      var item = row(task);
      if (highlight && !known[String(task.id)]) { item.classList.add('is-new'); }
      return item;
    });
    list.replaceChildren.apply(list, items);
    var count = document.getElementById('task-count');
    count.textContent = String(tasks.length);
    count.classList.toggle('is-zero', tasks.length === 0);
    document.getElementById('empty').hidden = tasks.length > 0;
    document.title = document.title.replace(/\(\d+\)/, '(' + tasks.length + ')');
  }

  function toLogin() {
    window.location.assign('/login?next=/callbacks&expired=1');
  }

  function refresh() {
    return fetch('/callbacks/tasks.json', {
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store'
    }).then(function (answer) {
      if (answer.status === 401) { toLogin(); return null; }
      if (!answer.ok) { return null; }
      return answer.json();
    }).then(function (body) {
      if (!body || !Array.isArray(body.tasks)) { return; }
      var text = JSON.stringify(body.tasks);
      if (text !== shown) {
        render(body.tasks, shown !== null);
        shown = text;
      }
      list.setAttribute('data-ready', '1');
    }).catch(function () { /* the daemon is restarting: try again at the next tick */ });
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () { refresh().then(schedule); }, pollMs);
  }

  function say(message, ok) {
    var box = document.getElementById('toast');
    var note = el('p', 'alert ' + (ok ? 'alert-info' : 'alert-error'), message);
    note.setAttribute('role', ok ? 'status' : 'alert');
    box.replaceChildren(note);
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-ajax')) { return; }
    event.preventDefault();
    var button = form.querySelector('button');
    if (button) { button.disabled = true; }
    fetch(form.action, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: 'application/json' },
      credentials: 'same-origin'
    }).then(function (answer) {
      if (answer.status === 401) { toLogin(); return null; }
      return answer.json();
    }).then(function (body) {
      if (body) { say(body.message || body.error || 'Done.', Boolean(body.ok)); }
    }).catch(function () {
      say('The server did not answer. Try again in a moment.', false);
    }).then(function () {
      if (button) { button.disabled = false; }
      return refresh();
    });
  });

  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible') { refresh().then(schedule); }
  });
  refresh().then(schedule);
}());

// The calls list: "Play" puts an <audio> player in a row of its own under the call, as
// wide as the table, so the columns keep their widths (elsewhere: in place of the link).
// Without this script the link opens the recording in the browser's own player.
(function () {
  'use strict';
  document.addEventListener('click', function (event) {
    var link = event.target instanceof Element ? event.target.closest('a[data-play]') : null;
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    event.preventDefault();
    var audio = document.createElement('audio');
    audio.controls = true;
    audio.preload = 'metadata';
    audio.className = 'player';
    audio.src = link.getAttribute('href');
    audio.setAttribute('aria-label', link.getAttribute('aria-label') || 'Recording');
    var row = link.closest('tr');
    if (row && row.id) {
      var under = document.createElement('tr');
      under.className = 'player-row';
      under.id = row.id + '-player';
      var cell = document.createElement('td');
      cell.colSpan = row.cells.length;
      cell.append(audio);
      under.append(cell);
      row.after(under);
      row.classList.add('is-playing');
      link.remove();
    } else {
      link.replaceWith(audio);
    }
    var playing = audio.play();
    if (playing && playing.catch) { playing.catch(function () { /* the user presses play */ }); }
  });
}());
