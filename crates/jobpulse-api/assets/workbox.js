// The work box: one row per task (video or job) with its badge, bar, step, ETA, errors, result
// summary and actions. Rows are built with createElement/textContent/setAttribute only: no
// server string ever reaches an HTML parser.

import {
  attemptText, barPercent, entryText, etaWords, importSummary, livenessText, outcome,
  remainingSeconds, stepInfo,
} from './format.js';

/** createElement with attributes (`text` sets textContent) and children (strings become text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k === 'hidden') el.hidden = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const JOB_LABELS = { excel_parsing: 'Student import (Excel)', ppt_generation: 'Slides' };
const ACTIVE = new Set(['PROCESSING', 'RUNNING']);
const RUNNING_JOB = new Set(['PENDING', 'RUNNING', 'RETRYING']);
const CONFIRM_MS = 4000;
// A staff page watching a busy tenant must not grow without bound.
const MAX_ROWS = 300;

export class WorkBox {
  /**
   * @param {HTMLElement} list the `<ol>` rows go into
   * @param {HTMLElement} announcer an aria-live region for status changes
   * @param {object} actions retry(id), remove(kind, id), cancel(id), play(row),
   *   downloadCsv(jobId), needDetail(kind, id, why), needResult(jobId), evicted(kind, id)
   * @param {boolean} staff whether staff-only controls are shown
   */
  constructor(list, announcer, actions, staff) {
    this.list = list;
    this.announcer = announcer;
    this.actions = actions;
    this.staff = staff;
    this.rows = new Map();
    this.gone = new Set();
    // A stalled worker sends nothing, and a retry counts down: their words move on by the clock.
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  /** Refreshes the clock-bound words (liveness, retry countdown) of the rows that show them. */
  tick() {
    for (const row of this.rows.values()) {
      if (row.el.dataset.stalled === 'true' || row.el.dataset.outcome === 'retry') this.renderTimes(row);
    }
  }

  /** The liveness and attempt words of a row, as of now. */
  renderTimes(row) {
    const { parts: p } = row;
    const body = this.current(row);
    const status = String(body.status || 'UNKNOWN');
    const retrying = status === 'RETRY_WAIT' || status === 'RETRYING';
    p.attempt.textContent = attemptText(body, Date.now()) || (retrying ? 'waiting to retry' : '');
    const since = row.bodyAt ? Math.floor((Date.now() - row.bodyAt) / 1000) : 0;
    const ago = Number.isFinite(body.worker_seen_seconds_ago) ? body.worker_seen_seconds_ago + since : undefined;
    const alive = ACTIVE.has(status) ? livenessText(body, ago) : null;
    p.alive.textContent = alive || '';
    p.alive.hidden = !alive;
    if (alive) row.el.dataset.stalled = 'true';
    else delete row.el.dataset.stalled;
  }

  has(kind, id) {
    return this.rows.has(`${kind}:${id}`);
  }

  get(kind, id) {
    return this.rows.get(`${kind}:${id}`);
  }

  /** Adds or refreshes a row from list/detail/upload data (title, urls, created_at, status). */
  upsert(kind, id, meta = {}) {
    const k = `${kind}:${id}`;
    if (this.gone.has(k)) return null;
    let row = this.rows.get(k);
    if (!row) {
      row = this.build(kind, String(id));
      this.rows.set(k, row);
      this.place(row, meta.created_at);
      if (this.rows.size > MAX_ROWS) this.evictOldest();
    }
    Object.assign(row.meta, meta);
    this.render(row);
    this.updateEmpty();
    return row;
  }

  /**
   * A task's progress body arrived, with the percent to draw when the live client computed it
   * (it never goes back within an attempt).
   */
  apply(kind, id, body, percent) {
    const k = `${kind}:${id}`;
    if (this.gone.has(k) || !body) return;
    let row = this.rows.get(k);
    if (!row) {
      row = this.upsert(kind, id, {});
      if (!row) return;
      this.actions.needDetail(kind, String(id), 'label');
    }
    row.body = body;
    row.bodyAt = Date.now();
    row.percent = percent;
    this.render(row);
  }

  /** Drops the oldest finished row (never one still running). */
  evictOldest() {
    const finished = [...this.rows.values()]
      .filter((r) => r.el.dataset.outcome === 'ok' || r.el.dataset.outcome === 'failed')
      .sort((a, b) => a.created - b.created);
    const victim = finished[0];
    if (!victim) return;
    victim.el.remove();
    this.rows.delete(`${victim.kind}:${victim.id}`);
    this.actions.evicted(victim.kind, victim.id);
  }

  remove(kind, id) {
    const k = `${kind}:${id}`;
    const row = this.rows.get(k);
    this.gone.add(k);
    if (row) {
      row.el.remove();
      this.rows.delete(k);
      this.announce(`${row.parts.label.textContent} removed.`);
    }
    this.updateEmpty();
  }

  clear() {
    this.rows.clear();
    this.gone.clear();
    this.list.replaceChildren();
    this.updateEmpty();
  }

  announce(message) {
    // A fresh text node each time makes screen readers repeat identical messages too.
    this.announcer.replaceChildren(document.createTextNode(message));
  }

  /** Tells the page the set of rows (or a row's label) changed. */
  updateEmpty() {
    this.list.dispatchEvent(new CustomEvent('rowschange', { detail: this.rows.size }));
  }

  /** Newest first: a row goes above the first row that is not newer than it. */
  place(row, createdAt) {
    row.created = Number.isFinite(createdAt) ? createdAt : Date.now();
    row.el.dataset.created = String(row.created);
    const after = [...this.list.children].find((el) => el !== row.el && Number(el.dataset.created) <= row.created);
    this.list.insertBefore(row.el, after || null);
  }

  build(kind, id) {
    const testid = `task-${kind}-${id}`;
    const p = {};
    p.kind = h('span', { class: 'task-kind', text: kind === 'video' ? 'Video' : 'Job' });
    p.label = h('span', { class: 'task-label', 'data-testid': 'task-label' });
    p.sub = h('span', { class: 'task-sub', 'data-testid': 'task-sub' });
    p.badge = h('span', { class: 'badge', 'data-testid': 'status-badge' });
    p.bar = h('progress', { class: 'bar', max: '100', 'data-testid': 'progress-bar' });
    p.pct = h('span', { class: 'bar-pct', 'data-testid': 'progress-text' });
    p.step = h('span', { class: 'step', 'data-testid': 'step-text' });
    p.stepPct = h('span', { class: 'step-pct', 'data-testid': 'step-percent' });
    p.eta = h('span', { class: 'eta', 'data-testid': 'eta' });
    p.attempt = h('span', { class: 'attempt', 'data-testid': 'attempt' });
    p.alive = h('span', { class: 'liveness', 'data-testid': 'liveness', hidden: true });
    p.error = h('p', { class: 'task-error', 'data-testid': 'error', hidden: true });
    p.result = h('div', { class: 'result', 'data-testid': 'result-summary', hidden: true });
    p.actions = h('div', { class: 'task-actions' });
    p.player = h('div', { class: 'player', 'data-testid': 'player' });
    const labelId = `label-${kind}-${id}`;
    p.label.id = labelId;
    p.bar.setAttribute('aria-labelledby', labelId);
    const el = h('li', { class: 'task', 'data-testid': testid, 'data-kind': kind, 'data-id': id,
      'aria-labelledby': labelId },
    h('div', { class: 'task-head' }, p.kind, p.label, p.sub, p.badge),
    h('div', { class: 'task-progress' }, p.bar, p.pct),
    h('div', { class: 'task-meta' }, p.step, p.stepPct, p.eta, p.attempt, p.alive),
    p.error, p.result, p.actions, p.player);
    return { kind, id, el, parts: p, meta: {}, body: null, shown: null, status: null,
      actionsKey: '', resultKey: '' };
  }

  label(row) {
    const m = row.meta;
    if (row.kind === 'video') return m.title || `Video #${row.id}`;
    const type = (row.body && row.body.job_type) || m.job_type || '';
    return m.label || JOB_LABELS[type] || type || `Job ${row.id}`;
  }

  /** The state to draw: the progress body when known, else what the list said. */
  current(row) {
    if (row.body && row.body.status && row.body.status !== 'UNKNOWN') return row.body;
    const m = row.meta;
    if (m.status) {
      return row.kind === 'video'
        ? { id: row.id, status: m.status, progress: m.status === 'READY' ? 100 : 0,
          error_reason: m.error_reason || undefined }
        : { job_id: row.id, job_type: m.job_type, status: m.status, progress: null,
          error_message: m.error_message || undefined };
    }
    return row.body || { status: 'UNKNOWN' };
  }

  render(row) {
    const { kind, parts: p } = row;
    const body = this.current(row);
    const status = String(body.status || 'UNKNOWN');
    const out = outcome(kind, body);
    const label = this.label(row);

    p.label.textContent = label;
    const type = body.job_type || row.meta.job_type;
    p.sub.textContent = kind === 'video' ? (row.meta.title ? `#${row.id}` : '') : [type !== label && type, row.id].filter(Boolean).join(' · ');
    p.badge.textContent = out === 'failed' && status === 'DONE' ? 'DONE · error' : status.replace(/_/g, ' ');
    p.badge.dataset.status = status;
    row.el.dataset.status = status;
    row.el.dataset.outcome = out;

    const pct = body === row.body && row.percent !== undefined ? row.percent : barPercent(kind, body, row.shown);
    row.shown = pct;
    if (pct == null) {
      p.bar.removeAttribute('value');
      p.bar.removeAttribute('data-value');
      p.pct.textContent = '';
    } else {
      p.bar.value = pct;
      p.bar.dataset.value = String(pct);
      p.pct.textContent = `${pct} %`;
    }
    p.bar.setAttribute('aria-valuetext', pct == null ? `${status}` : `${pct} percent, ${status}`);

    const active = ACTIVE.has(status);
    const step = active ? stepInfo(kind, body) : null;
    p.step.textContent = step ? step.text : '';
    p.stepPct.textContent = step && step.percent != null ? `step ${step.percent} %` : '';
    const eta = active ? etaWords(remainingSeconds(kind, body)) : null;
    p.eta.textContent = eta || '';
    this.renderTimes(row);

    const err = kind === 'video' ? body.error_reason : body.error_message;
    const showErr = err && (out === 'failed' || out === 'retry' || out === 'attention');
    p.error.hidden = !showErr;
    p.error.textContent = showErr ? String(err) : '';

    this.renderResult(row, body, out);
    this.renderActions(row, status, out);

    if (row.status && row.status !== status) {
      this.announce(`${label}: ${p.badge.textContent}${showErr ? ` — ${err}` : ''}`);
    }
    row.status = status;
    if (kind === 'video' && status === 'READY' && !row.meta.hls_url) {
      this.actions.needDetail('video', row.id, 'ready');
    }
  }

  renderActions(row, status, out) {
    const { kind, id } = row;
    const ready = kind === 'video' && status === 'READY';
    const wantCsv = kind === 'job' && this.staff && out === 'ok' && this.jobType(row) === 'excel_parsing';
    const keyNow = [status, ready && row.meta.hls_url ? 'p' : '', wantCsv ? 'c' : ''].join('|');
    if (keyNow === row.actionsKey) return;
    row.actionsKey = keyNow;
    const buttons = [];
    if (ready && row.meta.hls_url) {
      buttons.push(this.button('Play', 'play-button', () => this.actions.play(row)));
    }
    if (kind === 'video' && status === 'FAILED') {
      buttons.push(this.button('Retry', 'retry-button', () => this.actions.retry(id)));
    }
    if (kind === 'job' && RUNNING_JOB.has(status)) {
      buttons.push(this.button('Cancel', 'cancel-button', () => this.actions.cancel(id)));
    }
    if (wantCsv) {
      buttons.push(this.button('Download credentials (CSV)', 'csv-button', () => this.actions.downloadCsv(id)));
    }
    if (kind === 'video') {
      buttons.push(this.confirmButton('Delete', 'Really delete?', 'delete-button', () => this.actions.remove('video', id)));
    }
    row.parts.actions.replaceChildren(...buttons);
    if (!ready) row.parts.player.replaceChildren();
  }

  jobType(row) {
    return (row.body && row.body.job_type) || row.meta.job_type || '';
  }

  button(text, testid, onClick) {
    const b = h('button', { type: 'button', class: 'btn', 'data-testid': testid, text });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await onClick();
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  /** A destructive action asks once more in place (no modal dialog) before it runs. */
  confirmButton(text, confirmText, testid, onConfirm) {
    const b = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': testid, text });
    let armed = null;
    b.addEventListener('click', async () => {
      if (!armed) {
        b.textContent = confirmText;
        b.classList.add('armed');
        armed = setTimeout(() => {
          armed = null;
          b.textContent = text;
          b.classList.remove('armed');
        }, CONFIRM_MS);
        return;
      }
      clearTimeout(armed);
      armed = null;
      b.disabled = true;
      try {
        await onConfirm();
      } finally {
        b.disabled = false;
        b.textContent = text;
        b.classList.remove('armed');
      }
    });
    return b;
  }

  renderResult(row, body, out) {
    const p = row.parts;
    if (row.kind !== 'job' || body.status !== 'DONE' || out !== 'ok') {
      p.result.hidden = true;
      p.result.replaceChildren();
      row.resultKey = '';
      return;
    }
    const type = this.jobType(row);
    const result = body.result || row.meta.fullResult;
    if (!result) {
      if (body.result_url && row.meta.fullResult === undefined) {
        row.meta.fullResult = null;
        this.actions.needResult(row.id);
      }
      p.result.hidden = !body.result_url;
      p.result.replaceChildren(h('p', { text: body.result_url ? 'Loading the result…' : '' }));
      return;
    }
    const key = JSON.stringify(result);
    if (key === row.resultKey) return;
    row.resultKey = key;
    p.result.hidden = false;
    if (type === 'excel_parsing') {
      p.result.replaceChildren(...importSummaryNodes(importSummary(result)));
    } else if (typeof result.download_url === 'string') {
      const a = h('a', { href: result.download_url, text: result.filename || 'Download', download: '' });
      p.result.replaceChildren(a);
    } else {
      p.result.replaceChildren(h('p', { text: 'Done.' }));
    }
  }
}

function importSummaryNodes(s) {
  const stats = h('ul', { class: 'stats' },
    h('li', { 'data-testid': 'result-created' }, h('strong', { text: s.created }), ' created'),
    h('li', { 'data-testid': 'result-duplicates' }, h('strong', { text: s.duplicates.length }), ' duplicates'),
    h('li', { 'data-testid': 'result-restored' }, h('strong', { text: s.restored.length }), ' restored'),
    h('li', { 'data-testid': 'result-failed' }, h('strong', { text: s.failed.length }), ' failed'));
  const nodes = [stats];
  for (const [title, list] of [['Duplicates', s.duplicates], ['Restored', s.restored]]) {
    if (!list.length) continue;
    nodes.push(h('details', {}, h('summary', { text: `${title} (${list.length})` }),
      h('ul', {}, ...list.map((e) => h('li', { text: entryText(e) })))));
  }
  if (s.failed.length) {
    const table = h('table', { class: 'failed-rows', 'data-testid': 'failed-rows' },
      h('caption', { text: 'Rows that were not imported' }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Row' }),
        h('th', { scope: 'col', text: 'Name' }), h('th', { scope: 'col', text: 'Error' }))),
      h('tbody', {}, ...s.failed.map((f) => h('tr', {},
        h('td', { text: f.row }), h('td', { text: f.name }), h('td', { text: f.error })))));
    nodes.push(table);
  }
  return nodes;
}
