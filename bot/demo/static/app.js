'use strict';
// The demo page: draws /state (HTML rendered and escaped by the server),
// redraws on each Server-Sent Event, and posts commands and clicks as the
// person chosen at the top. A modal the bot opened for that person (a
// reason form) is drawn over the channel until it is submitted or closed.
const page = { closed: new Set(), as: null, channel: null, data: null, drawn: new Map(), busy: false, again: false };

async function refresh() {
  if (page.busy) { page.again = true; return; }
  page.busy = true;
  try {
    do {
      page.again = false;
      const r = await fetch('/state?as=' + encodeURIComponent(page.as || ''), { cache: 'no-store' });
      if (!r.ok) throw new Error(await r.text());
      page.data = await r.json();
      if (!page.as) { page.as = page.data.people[0].id; page.again = true; }
      if (!page.channel) page.channel = page.data.channels[0].id;
      draw();
    } while (page.again);
  } catch (e) {
    showError('Lost the demo: ' + e.message);
  } finally {
    page.busy = false;
  }
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function draw() {
  const d = page.data;
  const who = document.getElementById('who');
  if (!who.childElementCount) {
    for (const p of d.people) {
      const b = el('button', 'person');
      b.type = 'button';
      b.dataset.as = p.id;
      b.append(el('span', 'name', p.name), el('span', 'role', p.role));
      who.append(b);
    }
  }
  for (const b of who.children) b.setAttribute('aria-pressed', String(b.dataset.as === page.as));

  const nav = document.getElementById('channels');
  nav.replaceChildren();
  for (const c of d.channels) {
    const b = el('button', 'channel', '# ' + c.name);
    b.type = 'button';
    b.dataset.channel = c.id;
    const n = d.messages.filter(m => m.channel === c.id && !(m.thread_ts && m.thread_ts !== m.ts)).length;
    if (n) b.append(el('span', 'count', String(n)));
    b.setAttribute('aria-current', String(c.id === page.channel));
    nav.append(b);
  }
  const ch = d.channels.find(c => c.id === page.channel);
  document.getElementById('channel-name').textContent = '# ' + ch.name;
  starting(d.starting_ms, ch);

  const list = document.getElementById('messages');
  const mine = d.messages.filter(m => m.channel === page.channel);
  let hint = list.querySelector(':scope > .hint');
  if (!mine.length && !hint) {
    hint = el('p', 'hint', ch.hint);
    list.append(hint);
  } else if (mine.length && hint) {
    hint.remove();
  }
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  let added = false;
  for (const m of mine) {
    const reply = m.thread_ts && m.thread_ts !== m.ts;
    let node = page.drawn.get(m.ts);
    if (!node) {
      node = message(m, reply);
      page.drawn.set(m.ts, node);
      const parent = reply && page.drawn.get(m.thread_ts);
      if (parent) {
        const thread = parent.querySelector(':scope > .thread');
        thread.hidden = false;
        thread.append(node);
        parent.querySelector(':scope > .replies').textContent = thread.childElementCount + (thread.childElementCount === 1 ? ' reply' : ' replies');
      } else {
        list.append(node);
      }
      added = true;
    }
    if (node.dataset.html !== m.html) {
      node.dataset.html = m.html;
      node.querySelector(':scope > .body').innerHTML = m.html; // escaped by the server's renderer
      node.querySelector(':scope > .meta .edited').hidden = !m.edited;
      localTimes(node);
    }
  }
  if (added && atBottom) list.scrollTop = list.scrollHeight;
  drawView(d.modal);
}

// starting keeps the command box waiting while the incident's queries are
// younger than what /pgkill lists, so that the first listing is not empty,
// and says so; it looks again each second until they are old enough.
function starting(ms, ch) {
  const input = document.getElementById('command');
  const send = document.querySelector('#composer button');
  const note = document.getElementById('starting');
  const wait = ms > 0;
  input.disabled = send.disabled = wait;
  note.hidden = !wait;
  input.placeholder = 'Message #' + ch.name;
  if (!wait) return;
  note.textContent = 'The incident is starting: in ' + Math.ceil(ms / 1000) + ' s its queries will have run long enough for ' +
    page.data.command + ' to list them.';
  clearTimeout(page.startTimer);
  page.startTimer = setTimeout(refresh, Math.min(ms, 1000));
}

// drawView shows the person's open modal. The same modal is not redrawn,
// so what is typed into it stays; only the errors under its inputs change.
function drawView(m) {
  const view = document.getElementById('view');
  if (!m || page.closed.has(m.id)) { // a late /state must not bring back a form just closed
    if (!view.hidden) { view.hidden = true; view.replaceChildren(); delete view.dataset.id; }
    return;
  }
  if (view.dataset.id !== m.id) {
    view.dataset.id = m.id;
    view.innerHTML = m.html; // escaped by the server's renderer
    view.hidden = false;
    const first = view.querySelector('.bk-text-input');
    if (first) first.focus();
  }
  viewErrors(m.errors || {});
}

// viewErrors puts each error under its input, as Slack does with an ack's
// response_action: errors.
function viewErrors(errors) {
  for (const input of document.querySelectorAll('#view .bk-input')) {
    const e = input.querySelector('.bk-input-error');
    const text = errors[input.dataset.blockId] || '';
    e.textContent = text;
    e.hidden = !text;
  }
}

async function submitView() {
  const view = document.getElementById('view');
  const values = {};
  const missing = {};
  for (const f of view.querySelectorAll('.bk-text-input')) {
    (values[f.dataset.blockId] ||= {})[f.dataset.actionId] = f.value;
    if (f.required && !f.value.trim()) missing[f.dataset.blockId] = 'Please complete this required field.';
  }
  if (Object.keys(missing).length) { viewErrors(missing); return; } // Slack's own check, before sending
  const btn = view.querySelector('.bk-view-submit');
  btn.disabled = true;
  try {
    hideError();
    const r = await fetch('/submit', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ as: page.as, modal: view.dataset.id, values }) });
    if (!r.ok) { showError((await r.text()).trim()); return; }
    const a = await r.json();
    if (a.open) viewErrors(a.errors || {});
    else { page.closed.add(view.dataset.id); drawView(null); }
  } finally {
    btn.disabled = false;
  }
  refresh();
}

async function closeView() {
  const view = document.getElementById('view');
  const id = view.dataset.id;
  if (id) page.closed.add(id);
  drawView(null);
  if (id) await post('/close', { as: page.as, modal: id });
  refresh();
}

function message(m, reply) {
  const node = el('div', 'msg' + (reply ? ' reply' : '') + (m.ephemeral ? ' ephemeral' : ''));
  node.dataset.ts = m.ts;
  node.dataset.channel = m.channel;
  const meta = el('div', 'meta');
  meta.append(el('span', 'author', 'pgkill'), el('span', 'app', 'APP'), sent(m.ts));
  const edited = el('span', 'edited', '(edited)');
  edited.hidden = true;
  meta.append(edited);
  if (m.ephemeral) meta.append(el('span', 'only-you', 'Only visible to you'));
  node.append(meta, el('div', 'body'));
  if (!reply) {
    const thread = el('div', 'thread');
    thread.hidden = true;
    node.append(el('div', 'replies'), thread);
  }
  return node;
}

// sent is a message's time, from its ts (Unix seconds, as at Slack): the
// hour and minute, the full date on hover.
function sent(ts) {
  const d = new Date(Number(ts.split('.')[0]) * 1000);
  const t = el('time', 'sent', d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' }));
  t.dateTime = d.toISOString();
  t.title = d.toLocaleString();
  return t;
}

// localTimes shows <!date^…> in the reader's time zone, as Slack does.
function localTimes(node) {
  for (const t of node.querySelectorAll('time[data-ts]')) {
    const d = new Date(Number(t.dataset.ts) * 1000);
    if (!isNaN(d)) { t.title = t.textContent; t.textContent = d.toLocaleString(); }
  }
}

async function post(path, body) {
  hideError();
  const r = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!r.ok) { showError((await r.text()).trim()); return false; }
  return true;
}

function press(btn) {
  const msg = btn.closest('.msg');
  return post('/click', { as: page.as, channel: msg.dataset.channel, ts: msg.dataset.ts,
    actionID: btn.dataset.actionId, blockID: btn.dataset.blockId, value: btn.dataset.value });
}

function openConfirm(btn, dialog) {
  const modal = document.getElementById('modal');
  modal.replaceChildren(dialog.firstElementChild.cloneNode(true));
  modal.hidden = false;
  modal.querySelector('.bk-ok').addEventListener('click', () => { closeModal(); press(btn); });
  modal.querySelector('.bk-deny').addEventListener('click', closeModal);
  modal.querySelector('.bk-ok').focus();
}

function closeModal() {
  const modal = document.getElementById('modal');
  modal.hidden = true;
  modal.replaceChildren();
}

function showError(text) {
  const e = document.getElementById('error');
  e.textContent = text;
  e.hidden = false;
}
function hideError() { document.getElementById('error').hidden = true; }

function switchView() {
  page.drawn.clear();
  document.getElementById('messages').replaceChildren();
  refresh();
}

document.addEventListener('click', e => {
  const person = e.target.closest('[data-as]');
  if (person) { page.as = person.dataset.as; switchView(); return; }
  const ch = e.target.closest('[data-channel]:not(.msg)');
  if (ch) { page.channel = ch.dataset.channel; switchView(); return; }
  if (e.target.closest('#view .bk-view-submit')) { submitView(); return; }
  if (e.target.closest('#view .bk-view-close')) { closeView(); return; }
  const btn = e.target.closest('#messages button[data-action-id]');
  if (!btn) return;
  const dialog = btn.nextElementSibling;
  if (dialog && dialog.classList.contains('bk-confirm')) openConfirm(btn, dialog);
  else press(btn);
});

document.addEventListener('keydown', e => {
  if (e.key !== 'Escape') return;
  if (!document.getElementById('modal').hidden) closeModal();
  else if (!document.getElementById('view').hidden) closeView();
});

document.getElementById('composer').addEventListener('submit', async e => {
  e.preventDefault();
  const input = document.getElementById('command');
  const text = input.value;
  input.value = page.data.command + ' '; // at once: what is typed next is the next command
  if (!await post('/command', { as: page.as, channel: page.channel, text }) && input.value === page.data.command + ' ') {
    input.value = text; // not sent: keep it to correct
  }
});

new EventSource('/events').onmessage = refresh;
refresh();
