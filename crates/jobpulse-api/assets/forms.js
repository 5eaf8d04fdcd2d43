// The upload form (a video, with byte progress) and the Excel import form (a workbook for a
// lecture). Each reports the created task to the work box at once.

import { ApiError, upload } from './api.js';
import { h } from './workbox.js';

function setMessage(el, text, kind = 'error') {
  el.textContent = text || '';
  el.hidden = !text;
  el.dataset.kind = kind;
}

/** Fills the session and lecture selects from `/api/v1/lectures/` (null: not available). */
export function fillLectures(lectures, sessionSelect, lectureSelect) {
  const keepSession = sessionSelect.value;
  const keepLecture = lectureSelect.value;
  sessionSelect.replaceChildren(h('option', { value: '', text: '— no session —' }));
  lectureSelect.replaceChildren(h('option', { value: '', text: lectures ? '— choose a lecture —' : '— lectures unavailable —' }));
  for (const l of Array.isArray(lectures) ? lectures : []) {
    if (!l || l.id == null) continue;
    const title = l.title || `Lecture ${l.id}`;
    lectureSelect.append(h('option', { value: String(l.id), text: title }));
    const sessions = Array.isArray(l.sessions) ? l.sessions : [];
    if (!sessions.length) continue;
    const group = h('optgroup', { label: title });
    for (const s of sessions) {
      if (s && s.id != null) group.append(h('option', { value: String(s.id), text: s.title || `Session ${s.id}` }));
    }
    sessionSelect.append(group);
  }
  if ([...sessionSelect.options].some((o) => o.value === keepSession)) sessionSelect.value = keepSession;
  if ([...lectureSelect.options].some((o) => o.value === keepLecture)) lectureSelect.value = keepLecture;
  if (!keepLecture && lectureSelect.options.length === 2) lectureSelect.selectedIndex = 1;
}

/**
 * Wires the upload form. `onCreated(video)` gets the 201 body (status UPLOADED) plus the title.
 */
export function wireUpload(form, onCreated) {
  const file = form.querySelector('[name=file]');
  const title = form.querySelector('[name=title]');
  const session = form.querySelector('[name=session_id]');
  const button = form.querySelector('button[type=submit]');
  const bar = form.querySelector('progress');
  const barText = form.querySelector('.upload-pct');
  const message = form.querySelector('.form-message');

  file.addEventListener('change', () => {
    const f = file.files && file.files[0];
    if (f && !title.value) title.value = f.name.replace(/\.[^.]+$/, '');
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setMessage(message, '');
    const f = file.files && file.files[0];
    if (!f) {
      setMessage(message, 'Choose a video file first.');
      file.focus();
      return;
    }
    const data = new FormData();
    if (title.value.trim()) data.append('title', title.value.trim());
    if (session.value) data.append('session_id', session.value);
    data.append('file', f);
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    barText.textContent = '0 %';
    try {
      const created = await upload('/api/v1/media/videos/', data, (loaded, total) => {
        const pct = Math.floor((loaded / total) * 100);
        bar.value = pct;
        barText.textContent = `${pct} %`;
      });
      bar.value = 100;
      barText.textContent = '100 %';
      setMessage(message, `Uploaded “${created.title || title.value || f.name}”.`, 'ok');
      onCreated({ ...created, title: created.title || title.value.trim() || f.name });
      form.reset();
    } catch (err) {
      setMessage(message, err instanceof ApiError ? `Upload failed: ${err.message}` : `Upload failed: ${err}`);
    } finally {
      button.disabled = false;
      setTimeout(() => {
        bar.hidden = true;
        barText.textContent = '';
      }, 1500);
    }
  });
}

/** Wires the Excel import form. `onCreated(job, fileName)` gets the 201 body (PENDING). */
export function wireImport(form, onCreated) {
  const file = form.querySelector('[name=file]');
  const lecture = form.querySelector('[name=lecture_id]');
  const button = form.querySelector('button[type=submit]');
  const message = form.querySelector('.form-message');

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setMessage(message, '');
    const f = file.files && file.files[0];
    if (!f) {
      setMessage(message, 'Choose an .xlsx workbook first.');
      file.focus();
      return;
    }
    if (!/\.xlsx$/i.test(f.name)) {
      setMessage(message, 'Only .xlsx workbooks can be imported.');
      return;
    }
    if (!lecture.value) {
      setMessage(message, 'Choose the lecture to enroll the students in.');
      lecture.focus();
      return;
    }
    const data = new FormData();
    data.append('job_type', 'excel_parsing');
    data.append('lecture_id', lecture.value);
    data.append('file', f);
    button.disabled = true;
    try {
      const job = await upload('/api/v1/jobs/', data, () => {});
      if (job.status === 'REJECTED_BAD_INPUT') {
        setMessage(message, `The workbook was rejected: ${job.error_message || job.message || 'bad input'}`);
      } else {
        setMessage(message, `Import of “${f.name}” submitted.`, 'ok');
      }
      onCreated(job, f.name);
      form.reset();
    } catch (err) {
      const body = err instanceof ApiError ? err.body : null;
      if (body && body.job_id && body.status) {
        // A 422 that still names the job: show it in the work box as rejected.
        onCreated(body, f.name);
      }
      setMessage(message, `Import failed: ${err instanceof ApiError ? err.message : err}`);
    } finally {
      button.disabled = false;
    }
  });
}
