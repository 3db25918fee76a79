// The Switchyard dashboard page: renders the snapshots the server pushes (server-sent events),
// and asks for a task or a dead set only when the user looks at one.
'use strict';

const token = new URLSearchParams(location.search).get('token');
const auth = token ? { Authorization: 'Bearer ' + token } : {};

/** Calls the API; resolves to {status, body} (body: parsed JSON, or a message). */
async function api(path, method) {
  try {
    const r = await fetch(path, { method: method || 'GET', headers: auth });
    const body = await r.json().catch(() => ({ ok: false, message: r.status + ' ' + r.statusText }));
    return { status: r.status, body };
  } catch (e) {
    return { status: 0, body: { ok: false, message: 'the dashboard did not answer: ' + e } };
  }
}

/** Makes an element: el('td', {class: 'x', 'data-field': 'ready'}, 'text', child, …). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'onclick') e.onclick = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

const int = n => Number(n).toLocaleString('en-US');
/** Bytes as B, kB, MB or GB (powers of 1,000); '-' when unknown. */
const bytes = n => {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = Number(n), u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u += 1; }
  return (u === 0 ? String(v) : v.toFixed(1)) + ' ' + units[u];
};
const rate = n => (n === null || n === undefined) ? '-' : Number(n).toFixed(1);
const time = ms => new Date(Number(ms)).toISOString().replace('T', ' ').replace('Z', ' UTC');
const seconds = ms => (Number(ms) / 1000).toFixed(1) + ' s';

function bar(fraction, kind) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  return el('span', { class: 'bar ' + (kind || '') }, el('i', { style: 'width:' + (f * 100).toFixed(1) + '%' }));
}

function say(message, ok) {
  const m = document.getElementById('message');
  m.hidden = false;
  m.className = ok ? 'ok' : 'refused';
  m.textContent = message;
}

// ----- the snapshot ---------------------------------------------------------------------------

let deadSeen = null; // the dead counts of the last dead-set read, as JSON
// Whether this dashboard acts (`--allow-actions`): a read-only one shows no action buttons.
let actionsOn = false;

function render(s) {
  document.getElementById('namespace').textContent = s.namespace;
  actionsOn = !!s.actions;
  document.getElementById('actions').textContent = s.actions ? 'actions on' : 'read-only';
  document.getElementById('updated').textContent = s.at ? 'read ' + time(s.at) : 'not read yet';
  const banner = document.getElementById('error');
  banner.hidden = !s.error;
  banner.textContent = s.error ? 'reading the namespace failed (figures are the last good ones): ' + s.error : '';
  const warnings = document.getElementById('warnings');
  warnings.hidden = !(s.warnings || []).length;
  warnings.replaceChildren(...(s.warnings || []).map(w => el('div', {}, w)));
  renderQueues(s.queues || []);
  renderCharts('charts', 'data-chart', s.queues || [], s.history || [], 'reads');
  renderCharts('hour', 'data-chart-hour', s.queues || [], s.minutes || [], 'minutes');
  renderWorkers(s.workers || []);
  renderSchedules(s.schedules || []);
  if (typeof browserSnapshot === "function") browserSnapshot(s); // tasks.js
  const dead = JSON.stringify((s.queues || []).map(q => [q.queue, q.dead]));
  if (dead !== deadSeen) {
    deadSeen = dead;
    loadDead(s.queues || []);
  }
}

/**
 * Puts `rows` into `body`, keeping each row already shown (matched by its queue, worker or
 * task key, wherever it stands) and replacing only the cells that changed: a button under the
 * pointer stays the same element from one snapshot to the next, even when rows before it come
 * or go, so a click on it is never lost.
 */
function patchRows(body, rows) {
  const key = tr => tr.getAttribute('data-queue') || tr.getAttribute('data-worker') || tr.getAttribute('data-task') || tr.getAttribute('data-schedule');
  const shown = new Map(Array.from(body.children).map(tr => [key(tr), tr]));
  const next = rows.map(row => {
    const was = shown.get(key(row));
    if (!was || was.children.length !== row.children.length) return row;
    Array.from(row.children).forEach((cell, j) => {
      const prev = was.children[j];
      if (prev.outerHTML !== cell.outerHTML) was.replaceChild(cell, prev);
    });
    return was;
  });
  // Moving a row keeps it the same element; rows no longer shown end up last and go.
  next.forEach((row, i) => {
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
  });
  while (body.children.length > next.length) body.lastElementChild.remove();
}

/** A bounded queue's waiting tasks over its bound ('full' at the bound); '-' if unbounded. */
function bound(q) {
  if (q.max_waiting === null || q.max_waiting === undefined) return el('td', { 'data-field': 'max_waiting' }, '-');
  const waiting = q.ready + q.scheduled + q.retrying;
  return el('td', { 'data-field': 'max_waiting', class: waiting >= q.max_waiting ? 'full' : '' },
    `${int(waiting)}/${int(q.max_waiting)}`);
}

/** A limited queue's active tasks over its concurrency limit; '-' without a limit. */
function limit(q) {
  if (q.concurrency === null || q.concurrency === undefined) return el('td', { 'data-field': 'concurrency' }, '-');
  const active = q.inbox + q.running;
  return el('td', { 'data-field': 'concurrency', class: active >= q.concurrency ? 'full' : '' },
    `${int(active)}/${int(q.concurrency)}`);
}

/** A rate-limited queue's tokens left over its limit ('full' while closed, with when it
 * opens); '-' without a limit (a handler's hold shows as 'held'). */
function tokens(q) {
  const opens = q.opens_in_ms === null || q.opens_in_ms === undefined ? ''
    : ` (opens in ${(q.opens_in_ms / 1000).toFixed(1)}s)`;
  if (q.rate === null || q.rate === undefined) {
    return el('td', { 'data-field': 'rate', class: opens ? 'full' : '' }, opens ? `held${opens}` : '-');
  }
  return el('td', { 'data-field': 'rate', class: opens ? 'full' : '', title: q.rate },
    `${int(q.rate_tokens)}/${q.rate.split(' ')[0]}${opens}`);
}

/** A queue shared between groups: its groups with ready tasks, and how many of those are at
 * their limit ('full' while any is); each group's backlog in the title. '-' if not shared. */
function groups(q) {
  if (!q.groups) return el('td', { 'data-field': 'groups' }, '-');
  const waiting = q.groups.groups.filter(g => g.ready > 0);
  const held = waiting.filter(g => !g.in_ring).length;
  const bound = q.groups.max_waiting ? ` of ${int(q.groups.max_waiting)}` : '';
  const title = q.groups.groups.map(g =>
    `${g.key || '(none)'}: ${int(g.ready)} ready, ${int(g.scheduled || 0)} scheduled${bound}, ` +
    `${int(g.active)} active, weight ${g.weight}`).join('\n');
  return el('td', { 'data-field': 'groups', class: held > 0 ? 'full' : '', title },
    held > 0 ? `${int(waiting.length)} (${int(held)} held)` : int(waiting.length));
}

function renderQueues(queues) {
  const body = document.querySelector('#queues tbody');
  patchRows(body, queues.map(q => el('tr', { 'data-queue': q.queue },
    el('td', { 'data-field': 'queue' }, q.queue,
      ...(q.paused ? [' ', el('span', { class: 'paused', 'data-field': 'paused' }, 'paused')] : [])),
    el('td', { class: 'text', 'data-field': 'policy' }, q.policy),
    el('td', { class: 'text', 'data-field': 'strategy' }, q.strategy),
    ...['scheduled', 'ready', 'inbox', 'running', 'retrying', 'succeeded', 'dead', 'cancelled', 'expired']
      .map(f => el('td', { 'data-field': f }, int(q[f]))),
    bound(q),
    limit(q),
    tokens(q),
    groups(q),
    el('td', { 'data-field': 'memory_bytes' }, bytes(q.memory_bytes)),
    el('td', { 'data-field': 'succeeded_per_s' }, rate(q.succeeded_per_s)),
    el('td', { 'data-field': 'failed_per_s' }, rate(q.failed_per_s)),
    el('td', { 'data-field': 'head_age' }, q.head_age_ms === null ? '-' : seconds(q.head_age_ms)),
    el('td', {}, !actionsOn ? '' : q.paused
      ? el('button', { class: 'resume', onclick: () => queueAct(q.queue, 'resume') }, 'Resume')
      : el('button', { class: 'pause', onclick: () => queueAct(q.queue, 'pause') }, 'Pause')))));
  document.getElementById('no-queues').hidden = queues.length > 0;
}

/** How long before `newest` the time `at` was, as the axis says it: "-4m 10s", "-55s". */
function ago(at, newest) {
  const s = Math.round((newest - at) / 1000);
  if (s <= 0) return 'now';
  return s >= 60 ? `-${Math.floor(s / 60)}m ${s % 60}s` : `-${s}s`;
}

/** One chart per queue in box `id`: succeeded/s (green) and failed/s (red) over `points`
 * (oldest first, each with its time `at`), with a time axis: how long before the last point
 * the first one was, and the last one's UTC time. */
function renderCharts(id, attr, queues, points, what) {
  const box = document.getElementById(id);
  box.replaceChildren(...queues.map((q, i) => {
    const w = 360, h = 102, plot = h - 14;
    const canvas = el('canvas', { width: w, height: h, [attr]: q.queue });
    const ok = points.map(p => (p.rates[i] && p.rates[i][0] === q.queue) ? p.rates[i][1] : 0);
    const bad = points.map(p => (p.rates[i] && p.rates[i][0] === q.queue) ? p.rates[i][2] : 0);
    const top = Math.max(1, ...ok, ...bad);
    const g = canvas.getContext('2d');
    g.strokeStyle = '#ddd';
    g.strokeRect(0.5, 0.5, w - 1, plot - 1);
    const line = (values, color) => {
      if (values.length < 2) return;
      g.strokeStyle = color;
      g.lineWidth = 1.5;
      g.beginPath();
      values.forEach((v, x) => {
        const px = (x / (values.length - 1)) * (w - 4) + 2;
        const py = plot - 2 - (v / top) * (plot - 14);
        if (x === 0) g.moveTo(px, py); else g.lineTo(px, py);
      });
      g.stroke();
    };
    line(ok, '#2e7d32');
    line(bad, '#c62828');
    // Per-minute points also carry the bytes the queue held: a grey line on its own scale.
    const mem = points.map(p => (p.memory && p.rates[i] && p.rates[i][0] === q.queue) ? p.memory[i] : null);
    const memTop = Math.max(0, ...mem.filter(v => v !== null));
    if (memTop > 0) {
      const scaled = mem.map(v => (v === null ? 0 : v) / memTop * top);
      line(scaled, '#9e9e9e');
    }
    g.fillStyle = '#777';
    g.font = '10px sans-serif';
    g.fillText('max ' + rate(top) + '/s' + (memTop > 0 ? ', memory max ' + bytes(memTop) : ''), 4, 11);
    let span = '';
    if (points.length > 0) {
      const first = points[0].at, last = points[points.length - 1].at;
      g.fillText(ago(first, last), 2, h - 2);
      g.textAlign = 'right';
      const clock = ms => time(ms).slice(11, 19);
      g.fillText(clock(last) + ' UTC', w - 2, h - 2);
      span = `, ${clock(first)}–${clock(last)} UTC`;
    }
    return el('figure', {}, canvas,
      el('figcaption', {}, q.queue + ': ', el('span', { class: 'ok' }, 'succeeded/s'), ' and ',
        el('span', { class: 'bad' }, 'failed/s'), memTop > 0 ? ' (grey: memory)' : '',
        ', last ' + points.length + ' ' + what + span));
  }));
}

function renderWorkers(workers) {
  const body = document.querySelector('#workers tbody');
  patchRows(body, workers.map(w => el('tr', { 'data-worker': w.worker },
    el('td', { 'data-field': 'worker' }, w.worker),
    el('td', { class: 'text', 'data-field': 'queues' }, w.queues.join(', ')),
    el('td', { 'data-field': 'load' }, bar(w.in_use / w.capacity), ' ',
      el('span', { 'data-field': 'in_use' }, w.in_use), ' / ', el('span', { 'data-field': 'capacity' }, w.capacity)),
    el('td', { 'data-field': 'weight' }, w.weight),
    el('td', { class: 'share', title: (w.weight_share * 100).toFixed(0) + '% of the weight, ' + (w.dispatch_share * 100).toFixed(0) + '% of the dispatches' },
      bar(w.weight_share, 'weight'), bar(w.dispatch_share)),
    el('td', { 'data-field': 'dispatched' }, int(w.dispatched)),
    el('td', { 'data-field': 'completed' }, int(w.completed)),
    el('td', { class: 'text', 'data-field': 'state' }, w.state),
    el('td', { 'data-field': 'expires_in' }, seconds(w.expires_in_ms)))));
  document.getElementById('no-workers').hidden = workers.length > 0;
}

function renderSchedules(schedules) {
  document.getElementById('schedules-section').hidden = schedules.length === 0;
  const body = document.querySelector('#schedules tbody');
  const next = s => s.next === null || s.next === undefined ? '-'
    : time(s.next) + (s.next_in_ms < 0 ? ' (overdue ' + seconds(-s.next_in_ms) + ')' : ' (in ' + seconds(s.next_in_ms) + ')');
  const state = s => s.paused ? 'paused' : (s.next === null || s.next === undefined ? 'ended' : 'active');
  patchRows(body, schedules.map(s => el('tr', { 'data-schedule': s.name },
    el('td', { 'data-field': 'name' }, s.name),
    el('td', { class: 'text', 'data-field': 'every' }, s.every),
    el('td', { class: 'text', 'data-field': 'creates' }, s.queue + ' / ' + s.kind),
    el('td', { class: 'text', 'data-field': 'next' }, next(s)),
    el('td', { 'data-field': 'runs' }, int(s.runs)),
    el('td', { 'data-field': 'skipped' }, int(s.skipped)),
    el('td', { class: 'text', 'data-field': 'state' }, state(s)))));
}

// ----- dead letters and actions ---------------------------------------------------------------

/**
 * Reads the dead set of each queue that has one and shows it. A section already on the page is
 * patched, not rebuilt: its rows stay the same elements (keyed by task id) and its heading, with
 * an armed purge button, stays while the count is unchanged.
 */
async function loadDead(queues) {
  const box = document.getElementById('dead');
  const parts = [];
  for (const q of queues.filter(q => q.dead > 0)) {
    const r = await api('api/queues/' + encodeURIComponent(q.queue) + '/dead?limit=50');
    if (r.status !== 200) {
      parts.push(el('p', { class: 'refused' }, q.queue + ': ' + r.body.message));
      continue;
    }
    parts.push(el('section', { 'data-dead': q.queue },
      el('h3', { 'data-count': q.dead }, q.queue + ' (' + int(q.dead) + ') ',
        ...(actionsOn ? [confirming(el('button', { class: 'purge', 'data-queue': q.queue }, 'Purge all'),
          'Click again to delete ' + int(q.dead) + ' dead tasks',
          () => queueAct(q.queue, 'purge/dead'))] : [])),
      el('table', {},
        el('thead', {}, el('tr', {}, ...['task', 'kind', 'attempts', 'submitted', 'error', ''].map(t => el('th', {}, t)))),
        el('tbody', {}, ...r.body.map(t => el('tr', { 'data-task': t.id },
          el('td', {}, el('a', { href: '#task=' + t.id }, t.id)),
          el('td', { class: 'text' }, t.kind),
          el('td', {}, t.attempts + ' of ' + t.max_attempts),
          el('td', {}, time(t.created_at)),
          el('td', { class: 'text' }, t.last_error || '-'),
          el('td', {}, ...(actionsOn ? [el('button', { class: 'redrive', 'data-task': t.id, onclick: () => act(t.id, 'redrive') }, 'Re-drive'),
            ' ', el('button', { class: 'delete', 'data-task': t.id, onclick: () => act(t.id, 'delete') }, 'Delete')] : []))))))));
  }
  const shown = new Map(Array.from(box.querySelectorAll('section[data-dead]')).map(s => [s.dataset.dead, s]));
  const next = parts.map(part => {
    const was = part.dataset && shown.get(part.dataset.dead);
    if (!was) return part;
    const [heading, table] = part.children;
    if (was.children[0].dataset.count !== heading.dataset.count) was.replaceChild(heading, was.children[0]);
    patchRows(was.querySelector('tbody'), Array.from(table.querySelector('tbody').children));
    return was;
  });
  box.replaceChildren(...(next.length ? next : [el('p', { class: 'muted' }, '(no dead tasks)')]));
}

async function act(id, action) {
  const r = await api('api/tasks/' + encodeURIComponent(id) + '/' + action, 'POST');
  say(r.body.message, r.body.ok === true);
  deadSeen = null; // read the dead sets again with the next snapshot
  if (document.getElementById('task').dataset.task === id) showTask(id);
}

/** A queue action: pause, resume, purge/dead. */
async function queueAct(queue, action) {
  const r = await api('api/queues/' + encodeURIComponent(queue) + '/' + action, 'POST');
  say(r.body.message, r.body.ok === true);
  deadSeen = null;
}

/** A button that acts only when clicked twice within 5 s (the first click says what it will do). */
function confirming(button, question, action) {
  const label = button.textContent;
  let armed = null;
  button.onclick = () => {
    if (armed) {
      clearTimeout(armed);
      armed = null;
      button.textContent = label;
      delete button.dataset.armed;
      action();
      return;
    }
    button.textContent = question;
    button.dataset.armed = 'yes';
    armed = setTimeout(() => { armed = null; button.textContent = label; delete button.dataset.armed; }, 5000);
  };
  return button;
}

// ----- one task -------------------------------------------------------------------------------

/** A progress report (ctx.progress): a bar, the percentage (truncated to a tenth, as the
 * CLI and the events show it), the message, and which report of which attempt it is. */
function progressShown(p) {
  const permille = Math.floor(p.ppm / 1000);
  return el('span', {}, bar(p.ppm / 1e6), ' ',
    `${Math.floor(permille / 10)}.${permille % 10}%` + (p.message ? ' ' + p.message : '') +
    ` (attempt ${p.attempt}, report ${p.reports}, ${time(p.at)})`);
}

async function showTask(id) {
  const box = document.getElementById('task');
  box.dataset.task = id;
  const r = await api('api/tasks/' + encodeURIComponent(id));
  if (r.status !== 200) {
    box.replaceChildren(el('p', { class: 'refused' }, r.body.message));
    return;
  }
  const t = r.body.info, o = r.body.outcome;
  const rows = [
    ['id', t.id], ['queue', t.queue], ['kind', t.kind], ['state', t.state],
    ['attempts', t.attempts + ' of ' + t.max_attempts], ['priority', t.priority],
    ['cost', t.cost_ms + ' ms'], ['timeout', t.timeout_ms + ' ms'], ['created', time(t.created_at)],
  ];
  if (t.run_at) rows.push(['runs at', time(t.run_at)]);
  if (t.deadline) rows.push(['lease ends', time(t.deadline)]);
  if (t.finished_at) rows.push(['finished', time(t.finished_at)]);
  if (t.worker) rows.push(['worker', t.worker]);
  if (t.token) rows.push(['lease token', t.token]);
  if (t.progress) rows.push(['progress', progressShown(t.progress)]);
  if (t.last_error) rows.push(['last error', t.last_error]);
  if (t.cancel_requested) rows.push(['cancel', 'requested']);
  if (t.affinity_key) rows.push(['affinity', t.affinity_key]);
  if (t.dedup_key) rows.push(['dedup', t.dedup_key]);
  rows.push(['payload', r.body.payload_bytes + ' bytes: ' + r.body.payload_preview]);
  if (o && o.result_bytes !== null) rows.push(['result', o.result_bytes + ' bytes: ' + o.result_preview]);
  if (t.trace_parent) rows.push(['trace', t.trace_parent]);
  if (t.trace_state) rows.push(['tracestate', t.trace_state]);
  // A read-only dashboard offers no action.
  const buttons = [];
  if (actionsOn && !['succeeded', 'dead', 'cancelled', 'expired'].includes(t.state)) {
    buttons.push(el('button', { class: 'cancel', onclick: () => act(t.id, 'cancel') }, 'Cancel'));
  }
  if (actionsOn && t.state === 'dead') {
    buttons.push(el('button', { class: 'redrive', onclick: () => act(t.id, 'redrive') }, 'Re-drive'));
  }
  if (actionsOn && ['succeeded', 'dead', 'cancelled', 'expired'].includes(t.state)) {
    buttons.push(' ', el('button', { class: 'delete', onclick: () => act(t.id, 'delete') }, 'Delete'));
  }
  const events = r.body.events.map(e => el('tr', {},
    el('td', {}, time(e.at)), el('td', { class: 'text' }, e.kind),
    el('td', { class: 'text' }, e.worker || '-'), el('td', { class: 'text' }, e.detail || '')));
  // A running task's view follows it (its progress, its end) once a second while shown.
  if (t.state === 'running') {
    setTimeout(() => { if (box.dataset.task === id && location.hash === '#task=' + id) showTask(id); }, 1000);
  }
  // A flow task's children: what it still waits on, each a link to its own page.
  const kids = r.body.children || [];
  const waits = kids.filter(c => !c.ended).length;
  const tree = kids.length ? [
    el('h3', {}, 'Children: waits on ' + waits + ' of ' + kids.length),
    el('table', { class: 'children' }, el('tbody', {}, ...kids.map(c => el('tr', { 'data-child': c.id },
      el('td', {}, el('a', { href: '#task=' + c.id }, c.id)), el('td', { class: 'text' }, c.state || '(purged)'),
      el('td', { class: 'text' }, c.ended ? 'ended ' + c.ended : 'waited on'),
      el('td', { class: 'text' }, 'on failure: ' + c.on_failure))))),
  ] : [];
  box.replaceChildren(
    el('dl', { 'data-task': t.id }, ...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-field': k }, v)])),
    el('p', {}, ...buttons),
    ...tree,
    el('h3', {}, 'Events' + (r.body.events_complete ? '' : ' (the newest could not be searched)')),
    events.length ? el('table', {}, el('tbody', {}, ...events))
      : el('p', { class: 'muted' }, '(none in the log: the queue records failures only, unless declared with --events all)'));
}

function route() {
  const m = location.hash.match(/^#task=([0-9A-Za-z]+)$/);
  if (m) {
    document.getElementById('task-id').value = m[1];
    showTask(m[1]);
  }
}

document.getElementById('lookup').onsubmit = e => {
  e.preventDefault();
  const id = document.getElementById('task-id').value.trim();
  if (id) location.hash = 'task=' + id;
};
window.onhashchange = route;

// ----- the stream -----------------------------------------------------------------------------

function connect() {
  const conn = document.getElementById('conn');
  const source = new EventSource('api/stream' + (token ? '?token=' + encodeURIComponent(token) : ''));
  source.onopen = () => { conn.textContent = 'live'; conn.className = 'conn live'; };
  source.onerror = async () => {
    conn.textContent = 'reconnecting…';
    conn.className = 'conn down';
    const r = await api('api/snapshot');
    if (r.status === 401) say(r.body.message, false);
  };
  source.onmessage = e => {
    const s = JSON.parse(e.data);
    if (s.queues) render(s);
  };
}

connect();
route();
