// The task browser: a queue's tasks in one state, a page at a time (the server reads one
// bounded page per call), with actions on a selection or on every task of the state, done in
// bounded steps with their progress shown. Uses app.js's helpers (api, el, say, time, int,
// confirming) and is told of each snapshot by `browserSnapshot`.
'use strict';

/** The states a page lists: [value for the API, label]; the values are the snapshot's fields. */
const STATES = [['scheduled', 'scheduled'], ['ready', 'ready'], ['inbox', 'inbox (dispatched)'],
  ['running', 'running'], ['retrying', 'retrying'], ['succeeded', 'succeeded'], ['dead', 'dead'],
  ['cancelled', 'cancelled'], ['expired', 'expired']];
const FINISHED = ['succeeded', 'dead', 'cancelled', 'expired'];

/** The time shown for a state: its heading and the task field. */
function shownTime(state) {
  if (state === 'scheduled' || state === 'retrying') return ['runs at', 'run_at'];
  if (state === 'ready' || state === 'inbox') return ['ready since', 'ready_since'];
  if (state === 'running') return ['lease ends', 'deadline'];
  return ['finished', 'finished_at'];
}

/** What may be done to tasks in a state: [action, button label, past tense]. */
function actionsFor(state) {
  if (state === 'dead') return [['redrive', 'Re-drive', 're-drove'], ['delete', 'Delete', 'deleted']];
  if (FINISHED.includes(state)) return [['delete', 'Delete', 'deleted']];
  return [['cancel', 'Cancel', 'cancelled']];
}

const browser = {
  asked: 0,         // the number of the latest page asked for (older answers are dropped)
  busy: false,      // an action on many tasks is running
  queues: [],       // the snapshot's queue rows
  shown: null,      // the query of the page shown: {queue, state, order, kind, id}
  cursors: [],      // the cursor of each page shown so far (null: the first)
  next: null,       // the cursor of the next page
};

const $ = id => document.getElementById(id);

/** The form's query. */
function formQuery() {
  return { queue: $('b-queue').value, state: $('b-state').value, order: $('b-order').value,
    kind: $('b-kind').value.trim(), id: $('b-id').value.trim() };
}

function params(query, cursor, limit) {
  const p = new URLSearchParams({ state: query.state, order: query.order });
  if (query.kind) p.set('kind', query.kind);
  if (query.id) p.set('id', query.id);
  if (cursor) p.set('cursor', cursor);
  if (limit) p.set('limit', limit);
  return p;
}

/** Shows the page starting at `cursor` of the query shown. */
async function loadPage(cursor) {
  const query = browser.shown;
  if (!query || !query.queue) return;
  const asked = ++browser.asked;
  $('b-next').disabled = true;
  const r = await api('api/queues/' + encodeURIComponent(query.queue) + '/tasks?' + params(query, cursor, 50));
  if (asked !== browser.asked) return; // a later page was asked for meanwhile
  const body = document.querySelector('#b-tasks tbody');
  if (r.status !== 200) {
    body.replaceChildren();
    $('b-info').textContent = '';
    say(r.body.message, false);
    return;
  }
  const [heading, field] = shownTime(query.state);
  $('b-time').textContent = heading;
  $('b-select-all').hidden = !actionsOn;
  $('b-select-all').checked = false;
  body.replaceChildren(...r.body.tasks.map(t => el('tr', { 'data-task': t.id },
    el('td', {}, actionsOn ? el('input', { type: 'checkbox', class: 'pick', 'data-task': t.id }) : ''),
    el('td', { class: 'text', 'data-field': 'id' }, el('a', { href: '#task=' + t.id }, t.id)),
    el('td', { class: 'text', 'data-field': 'kind' }, t.kind),
    el('td', { 'data-field': 'attempts' }, t.attempts + ' of ' + t.max_attempts),
    el('td', { 'data-field': 'time' }, t[field] ? time(t[field]) : '-'),
    el('td', { class: 'text', 'data-field': 'detail' },
      t.worker ? 'worker ' + t.worker : (t.last_error || 'priority ' + t.priority)))));
  browser.next = r.body.next;
  const page = browser.cursors.length;
  $('b-info').textContent = `page ${page}: ${r.body.tasks.length} tasks` +
    (r.body.next ? '' : ' (the last page)') + `, ${int(r.body.examined)} examined`;
  $('b-empty').hidden = r.body.tasks.length > 0;
  $('b-next').disabled = !r.body.next;
  $('b-prev').disabled = page <= 1;
  renderBulk();
}

/** The action buttons: on the selection, and on every task of the state (confirmed by a
 * second click). A read-only dashboard shows none. The buttons of a query stay the same
 * elements from one snapshot to the next (only an unarmed button's count is updated), so that
 * the confirming click lands on the button the first one armed. */
function renderBulk() {
  const box = $('b-bulk');
  const query = browser.shown;
  if (!actionsOn || !query) { box.replaceChildren(); delete box.dataset.key; return; }
  const row = browser.queues.find(q => q.queue === query.queue);
  const count = row ? row[query.state] : 0;
  const filtered = query.kind || query.id;
  const allLabel = label => label + ' all ' + (filtered ? 'matching ' : int(count) + ' ') + query.state;
  const key = JSON.stringify(query);
  if (box.dataset.key === key) {
    box.querySelectorAll('button.b-all').forEach(b => {
      if (!b.dataset.armed) b.textContent = allLabel(b.dataset.label);
    });
    return;
  }
  box.dataset.key = key;
  box.replaceChildren(...actionsFor(query.state).flatMap(([action, label, past]) => [
    el('button', { class: 'b-selected', 'data-action': action, onclick: () => actSelected(action, past) },
      label + ' selected'), ' ',
    confirming(el('button', { class: 'b-all', 'data-action': action, 'data-label': label }, allLabel(label)),
      'Click again to ' + label.toLowerCase() + ' ' + (filtered ? 'every matching' : int(count)) + ' ' + query.state + ' tasks',
      () => actAll(query, action, past)), ' ']));
}

async function actSelected(action, past) {
  const ids = Array.from(document.querySelectorAll('#b-tasks input.pick:checked')).map(c => c.dataset.task);
  if (!ids.length) { say('select tasks first (the boxes on the left)', false); return; }
  let done = 0;
  const refused = [];
  for (const id of ids) {
    const r = await api('api/tasks/' + encodeURIComponent(id) + '/' + action, 'POST');
    if (r.body.ok === true) done += 1; else refused.push(r.body.message);
    say(`${past} ${done} of ${ids.length} selected tasks…`, true);
  }
  say(`${past} ${done} of ${ids.length} selected tasks` + (refused.length ? '; refused: ' + refused.join('; ') : ''), !refused.length);
  deadSeen = null;
  loadPage(browser.cursors[browser.cursors.length - 1]);
}

/** Every task of the state that `query` (the one its button was made for) selects, a bounded
 * step at a time; one such action at a time. */
async function actAll(query, action, past) {
  if (browser.busy) { say('an action on many tasks is still running', false); return; }
  browser.busy = true;
  const row = browser.queues.find(q => q.queue === query.queue);
  const total = query.kind || query.id || !row ? null : row[query.state];
  let cursor = null, done = 0, refused = 0;
  try {
    do {
      const r = await api('api/queues/' + encodeURIComponent(query.queue) + '/bulk/' + action + '?' + params(query, cursor), 'POST');
      if (r.body.ok !== true) { say(r.body.message, false); return; }
      done += r.body.done;
      refused += r.body.refused;
      cursor = r.body.next;
      say(`${past} ${int(done)}${total === null ? '' : ' of ' + int(total)} ${query.state} tasks…`, true);
    } while (cursor);
  } finally {
    browser.busy = false;
  }
  say(`${past} ${int(done)} ${query.state} tasks of ${query.queue}` + (refused ? ` (${refused} had moved on)` : ''), true);
  deadSeen = null;
  browser.cursors = [null];
  loadPage(null);
}

/** Keeps the queue list and the action counts in step with the snapshots. */
function browserSnapshot(s) {
  browser.queues = s.queues || [];
  const select = $('b-queue');
  const names = browser.queues.map(q => q.queue);
  if (JSON.stringify(Array.from(select.options).map(o => o.value)) !== JSON.stringify(names)) {
    const was = select.value;
    select.replaceChildren(...names.map(n => el('option', { value: n }, n)));
    if (names.includes(was)) select.value = was;
  }
  const row = browser.queues.find(q => q.queue === select.value);
  Array.from($('b-state').options).forEach(o => {
    const label = STATES.find(([v]) => v === o.value)[1];
    o.textContent = row ? `${label} (${int(row[o.value])})` : label;
  });
  if (browser.shown) renderBulk();
}

$('b-state').replaceChildren(...STATES.map(([v, label]) => el('option', { value: v }, label)));
$('browse').onsubmit = e => {
  e.preventDefault();
  browser.shown = formQuery();
  browser.cursors = [null];
  loadPage(null);
};
$('b-next').onclick = () => {
  if (!browser.next) return;
  browser.cursors.push(browser.next);
  loadPage(browser.next);
};
$('b-prev').onclick = () => {
  if (browser.cursors.length <= 1) return;
  browser.cursors.pop();
  loadPage(browser.cursors[browser.cursors.length - 1]);
};
$('b-select-all').onchange = e => {
  document.querySelectorAll('#b-tasks input.pick').forEach(c => { c.checked = e.target.checked; });
};
