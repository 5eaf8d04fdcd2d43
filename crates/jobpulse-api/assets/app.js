// The dashboard's entry point: sign-in (pasted token or a `#token=` link), hydrating the work
// box from the list endpoints, live updates, and the actions on tasks.
//
// Live progress is @jobpulse/client (`jobpulse-client.js`, the package in clients/js bundled
// and committed): one Server-Sent Events stream for the page — staff watch the whole tenant
// (`all`), others the ids on screen — with polling of the batch route as the fallback. The
// dashboard only draws what it delivers.

import {
  ApiError, getOptional, getToken, request, setToken, setUnauthorizedHandler,
} from './api.js';
import {
  credentialsCsv, decodeToken, isStaff, isTerminal, tokenFromHash,
} from './format.js';
import { fillLectures, wireImport, wireUpload } from './forms.js';
import { watch } from './jobpulse-client.js';
import { play } from './player.js';
import { WorkBox } from './workbox.js';

const $ = (sel) => document.querySelector(sel);
const LABELS_KEY = 'jobpulse.labels';
const TASKS_KEY = 'jobpulse.tasks';
const REMEMBERED_TASKS = 100;
const LIST_LIMIT = 50;
const BATCH_LIMIT = 200;

const ui = {
  signin: $('#signin'),
  signinForm: $('#signin-form'),
  tokenInput: $('#token-input'),
  signinMessage: $('#signin-message'),
  app: $('#app'),
  identity: $('#identity'),
  identityText: $('#identity-text'),
  signout: $('#signout'),
  connection: $('#connection'),
  list: $('#tasks'),
  empty: $('#tasks-empty'),
  notice: $('#workbox-notice'),
  announcer: $('#announcer'),
  uploadForm: $('#upload-form'),
  importSection: $('#import'),
  importForm: $('#import-form'),
  sessionSelect: $('#upload-session'),
  lectureSelect: $('#import-lecture'),
  refresh: $('#refresh'),
};

let session = null;

// ---- small state helpers ----

function jobLabels() {
  try {
    return JSON.parse(sessionStorage.getItem(LABELS_KEY) || '{}') || {};
  } catch {
    return {};
  }
}

function rememberJobLabel(jobId, label) {
  const labels = jobLabels();
  labels[jobId] = label;
  try {
    sessionStorage.setItem(LABELS_KEY, JSON.stringify(labels));
  } catch {
    // Without storage the label lasts as long as the page.
  }
}

/**
 * The tasks on screen, remembered for this tab and this user: after a reload the work box shows
 * them again even on a server without list endpoints (a read-only `serve`).
 */
function rememberedTasks(claims) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(TASKS_KEY) || 'null');
    if (!saved || saved.owner !== owner(claims) || !Array.isArray(saved.tasks)) return [];
    return saved.tasks.filter((t) => t && (t.kind === 'video' || t.kind === 'job') && t.id);
  } catch {
    return [];
  }
}

function rememberTasks(claims, box) {
  const tasks = [...box.rows.values()]
    .sort((a, b) => b.created - a.created)
    .slice(0, REMEMBERED_TASKS)
    .map((r) => ({ kind: r.kind, id: r.id, created: r.created, title: r.meta.title, label: r.meta.label }));
  try {
    sessionStorage.setItem(TASKS_KEY, JSON.stringify({ owner: owner(claims), tasks }));
  } catch {
    // Without storage the work box starts empty after a reload.
  }
}

function owner(claims) {
  return `${claims.tenant_id}/${claims.user_id ?? ''}`;
}

function notice(text) {
  ui.notice.textContent = text || '';
  ui.notice.hidden = !text;
}

const MODE_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  polling: 'Polling (live updates unavailable)',
  paused: 'Paused while the tab is hidden',
  idle: 'Up to date',
};

// ---- sign-in / sign-out ----

function showSignin(message) {
  ui.app.hidden = true;
  ui.identity.hidden = true;
  ui.signin.hidden = false;
  ui.signinMessage.textContent = message || '';
  ui.signinMessage.hidden = !message;
  ui.tokenInput.value = '';
  ui.tokenInput.focus();
}

function signOut(message) {
  if (session) {
    session.live.stop();
    session = null;
  }
  ui.list.replaceChildren();
  ui.connection.textContent = '';
  notice('');
  setToken(null);
  try {
    sessionStorage.removeItem(TASKS_KEY);
    sessionStorage.removeItem(LABELS_KEY);
  } catch {
    // Nothing stored.
  }
  showSignin(message);
}

function describe(claims) {
  const parts = [];
  parts.push(claims.tenant_code ? `tenant ${claims.tenant_code} (#${claims.tenant_id})` : `tenant #${claims.tenant_id}`);
  parts.push(claims.role ? `role ${claims.role}` : 'no role');
  if (claims.user_id != null) parts.push(`user ${claims.user_id}`);
  return parts.join(' · ');
}

function signIn(token) {
  let claims;
  try {
    claims = decodeToken(token);
  } catch (e) {
    showSignin(e.message);
    return;
  }
  if (typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()) {
    showSignin('This token has expired. Ask for a new one and sign in again.');
    return;
  }
  if (claims.tenant_id == null) {
    showSignin('This token names no tenant (tenant_id claim missing).');
    return;
  }
  setToken(token.trim());
  start(claims);
}

// ---- the signed-in page ----

function start(claims) {
  const staff = isStaff(claims);
  ui.signin.hidden = true;
  ui.app.hidden = false;
  ui.identity.hidden = false;
  ui.identityText.textContent = describe(claims);
  ui.importSection.hidden = !staff;
  document.body.dataset.role = claims.role || '';

  const box = new WorkBox(ui.list, ui.announcer, {
    retry: (id) => act('Retry', () => request(`/api/v1/media/videos/${encodeURIComponent(id)}/retry/`, { method: 'POST' }), 'Retry requested.', () => {
      // The video starts over as UPLOADED; watch it again.
      const row = box.get('video', id);
      if (row) {
        row.body = { id: Number(id), status: 'UPLOADED', progress: 0, encoding_progress: 0 };
        box.render(row);
      }
      track('video', id, { status: 'UPLOADED' });
    }),
    remove: (kind, id) => act('Delete', () => request(`/api/v1/media/videos/${encodeURIComponent(id)}/`, { method: 'DELETE' }), null, () => {
      live.remove(kind, id);
      box.remove(kind, id);
    }),
    cancel: (id) => act('Cancel', () => request(`/api/v1/jobs/${encodeURIComponent(id)}/cancel/`, { method: 'POST' }), 'Cancel requested.'),
    play: (row) => play(row.parts.player, row.meta.hls_url, row.meta.thumbnail_url, box.label(row)),
    downloadCsv: (id) => act('Downloading the credentials', async () => downloadCredentials(id)),
    needDetail: (kind, id, why) => loadDetail(kind, id, why),
    needResult: (id) => loadResult(id),
    evicted: (kind, id) => live.remove(kind, id),
  }, staff);

  const live = watch({}, (task) => box.apply(task.kind, task.id, task.body, task.percent), {
    all: staff,
    token: () => getToken(),
    autoStart: false,
    onResync: () => hydrate(),
    onMode: (mode) => {
      ui.connection.textContent = MODE_TEXT[mode] || mode;
      ui.connection.dataset.state = mode;
    },
    onError: (e) => {
      if (e.status === 401) signOut(`Signed out: the server refused the token (${e.message}). Sign in again.`);
      else notice(`Live updates stopped: ${e.message}`);
    },
  });
  session = { claims, staff, box, live };

  /** Watches a task; ids that are not valid (a tampered session store) are skipped. */
  function track(kind, id, hint) {
    try {
      live.add(kind, id, hint);
    } catch {
      // Not an id this server could know: nothing to watch.
    }
  }

  async function act(what, fn, okText, after) {
    try {
      await fn();
      if (okText) box.announce(okText);
      if (after) after();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      notice(`${what} failed: ${e instanceof ApiError ? e.message : String(e)}`);
    }
  }

  // One detail read per video and reason: its title (a row first seen on the stream), and its
  // playable URL once READY (list rows fetched earlier have none).
  const detailsAsked = new Set();
  async function loadDetail(kind, id, why) {
    const k = `${id}:${why}`;
    if (kind !== 'video' || detailsAsked.has(k)) return;
    detailsAsked.add(k);
    try {
      const v = await getOptional(`/api/v1/media/videos/${encodeURIComponent(id)}/`);
      if (v) box.upsert('video', id, videoMeta(v));
    } catch {
      detailsAsked.delete(k);
    }
  }

  async function loadResult(id) {
    try {
      const { body } = await request(`/api/v1/jobs/${encodeURIComponent(id)}/result/`);
      box.upsert('job', id, { fullResult: body && typeof body === 'object' ? body : {} });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) box.upsert('job', id, { fullResult: {} });
    }
  }

  async function downloadCredentials(id) {
    const { body } = await request(`/api/v1/jobs/${encodeURIComponent(id)}/result/`);
    const creds = body && Array.isArray(body.credentials) ? body.credentials : [];
    if (!creds.length) {
      notice(body && body.credentials_purged
        ? 'The initial passwords of this import were removed after the retention period.'
        : 'This import has no credentials to download.');
      return;
    }
    const blob = new Blob([credentialsCsv(creds)], { type: 'text/csv;charset=utf-8' });
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = `credentials-${id}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  function videoMeta(v) {
    return {
      title: v.title, status: v.status, error_reason: v.error_reason,
      hls_url: v.hls_url ?? null, thumbnail_url: v.thumbnail_url ?? null,
      created_at: v.created_at, session_id: v.session_id,
    };
  }

  async function hydrate() {
    notice('');
    const missing = [];
    const labels = jobLabels();
    const problems = [];
    // Each list on its own: one failing (or a filter this server does not know) must not
    // hide the others.
    const load = (path) => getOptional(path).catch((e) => {
      if (!(e instanceof ApiError && e.status === 401)) problems.push(e.message);
      return null;
    });
    const [recent, processing, jobs, lectures] = await Promise.all([
      load(`/api/v1/media/videos/?limit=${LIST_LIMIT}`),
      load(`/api/v1/media/videos/?status=PROCESSING&limit=${LIST_LIMIT}`),
      load(`/api/v1/jobs/?limit=${LIST_LIMIT}`),
      load('/api/v1/lectures/'),
    ]);
    if (!session || session.box !== box) return;
    if (!recent && !processing) missing.push('videos');
    if (!jobs) missing.push('jobs');
    const videos = [...(recent?.results || []), ...(processing?.results || [])];
    // Oldest first, so each insert lands above the previous one.
    videos.sort((a, b) => (a.created_at ?? 0) - (b.created_at ?? 0));
    for (const v of videos) {
      if (v && v.id != null) {
        box.upsert('video', String(v.id), videoMeta(v));
        detailsAsked.add(`${v.id}:label`);
      }
    }
    for (const j of jobs?.results || []) {
      if (!j || !j.job_id) continue;
      box.upsert('job', j.job_id, {
        job_type: j.job_type, status: j.status, error_message: j.error_message,
        created_at: j.created_at, label: labels[j.job_id],
      });
    }
    if (lectures) fillLectures(lectures.results, ui.sessionSelect, ui.lectureSelect);
    else fillLectures(null, ui.sessionSelect, ui.lectureSelect);
    if (problems.length) {
      notice(`Could not load every list: ${[...new Set(problems)].join('; ')}`);
    } else if (missing.length) {
      notice(`This server has no ${missing.join(' or ')} list yet: tasks appear here as they change.`);
    }
    for (const row of box.rows.values()) {
      const status = row.body?.status || row.meta.status;
      track(row.kind, row.id, status ? { status } : null);
    }
    await refreshAll();
  }

  /** One batch read of every row (terminal rows too: their result and error live there). */
  async function refreshAll() {
    const rows = [...box.rows.values()];
    if (!rows.length) {
      // Nothing to read, but this checks the token (a 401 signs out).
      await request('/api/v1/progress/').catch(() => {});
      return;
    }
    for (let i = 0; i < rows.length; i += BATCH_LIMIT) {
      const chunk = rows.slice(i, i + BATCH_LIMIT);
      const q = new URLSearchParams();
      const videos = chunk.filter((r) => r.kind === 'video').map((r) => r.id);
      const jobs = chunk.filter((r) => r.kind === 'job').map((r) => r.id);
      if (videos.length) q.set('videos', videos.join(','));
      if (jobs.length) q.set('jobs', jobs.join(','));
      try {
        const { body } = await request(`/api/v1/progress/?${q.toString().replace(/%2C/gi, ',')}`);
        live.deliver(body);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 401)) notice(`Could not read progress: ${e.message}`);
      }
    }
  }

  ui.empty.hidden = box.rows.size > 0;

  session.videoCreated = (video) => {
    if (video.id == null) return;
    const id = String(video.id);
    box.upsert('video', id, { ...videoMeta(video), created_at: Date.now() });
    box.apply('video', id, { id: video.id, status: video.status || 'UPLOADED', progress: 0, encoding_progress: 0 });
    track('video', id, { status: video.status || 'UPLOADED' });
  };
  session.jobCreated = (job, fileName) => {
    if (!job.job_id) return;
    rememberJobLabel(job.job_id, fileName);
    box.upsert('job', job.job_id, {
      job_type: job.job_type || 'excel_parsing', status: job.status, label: fileName,
      created_at: Date.now(), error_message: job.error_message,
    });
    track('job', job.job_id, { status: job.status });
    if (isTerminal('job', job.status)) box.apply('job', job.job_id, job);
  };
  session.hydrate = hydrate;

  for (const t of rememberedTasks(claims).reverse()) {
    box.upsert(t.kind, String(t.id), {
      created_at: t.created, title: t.title || undefined, label: t.label || undefined,
    });
  }
  hydrate().finally(() => {
    if (session && session.live === live) live.start();
  });
}

// ---- boot ----

setUnauthorizedHandler((message) => {
  signOut(`Signed out: the server refused the token (${message}). Sign in again.`);
});

ui.signinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const t = ui.tokenInput.value.trim();
  if (!t) {
    showSignin('Paste a token first.');
    return;
  }
  signIn(t);
});

ui.signout.addEventListener('click', () => signOut('Signed out.'));
ui.refresh.addEventListener('click', () => session && session.hydrate());
ui.list.addEventListener('rowschange', (e) => {
  ui.empty.hidden = e.detail > 0;
  if (session) rememberTasks(session.claims, session.box);
});
wireUpload(ui.uploadForm, (video) => session && session.videoCreated(video));
wireImport(ui.importForm, (job, fileName) => session && session.jobCreated(job, fileName));

const fromHash = tokenFromHash(location.hash);
if (fromHash) {
  // Keep the token out of the address bar, history and bookmarks.
  history.replaceState(null, '', location.pathname + location.search);
  signIn(fromHash);
} else if (getToken()) {
  signIn(getToken());
} else {
  showSignin('');
}
