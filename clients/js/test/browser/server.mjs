// A real `jobpulse up` for the browser tests: started on a free port with its own data dir,
// restartable on the same port (the restart scenario), with tokens minted by `jobpulse token`
// and fenced writes through the worker ingest API (what a worker in another language sends).

import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { jobpulseBin } from '../../scripts/gen-types.mjs';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export class Up {
  static async start() {
    const up = new Up();
    up.bin = jobpulseBin();
    up.dir = mkdtempSync(join(tmpdir(), 'jobpulse-client-'));
    up.port = await freePort();
    up.url = `http://127.0.0.1:${up.port}`;
    up.log = join(up.dir, 'up.log');
    up.logStream = createWriteStream(up.log);
    await up.launch();
    up.workerToken = up.mint(['--tenant-id', '1', '--worker']);
    up.otherTenantToken = up.mint(['--tenant-id', '2', '--role', 'teacher']);
    up.seq = 0;
    return up;
  }

  /** Starts the process (again, on the same port and data dir) and waits for its token. */
  async launch() {
    this.child = spawn(this.bin, ['up', '--port', String(this.port), '--data-dir', join(this.dir, 'data')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    this.child.stderr.pipe(this.logStream, { end: false });
    const lines = createInterface({ input: this.child.stdout });
    this.token = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`jobpulse up printed no token in 120 s; log:\n${this.logs()}`)), 120_000);
      lines.on('line', (l) => {
        const m = l.split('export JOBPULSE_TOKEN=')[1];
        if (m) {
          clearTimeout(t);
          resolve(m.trim());
        }
      });
      this.child.once('exit', (code) => reject(new Error(`jobpulse up exited (${code}); log:\n${this.logs()}`)));
    });
    for (let i = 0; i < 100; i += 1) {
      if (await fetch(`${this.url}/healthz`).then((r) => r.ok, () => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${this.url}/healthz never answered`);
  }

  mint(args) {
    return execFileSync(this.bin, ['token', '--data-dir', join(this.dir, 'data'), ...args], { encoding: 'utf8' }).trim();
  }

  logs() {
    try {
      return readFileSync(this.log, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  }

  /** Kills the process the hard way (a crash, not a shutdown) and waits for it to be gone. */
  async kill() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
  }

  async stop() {
    await this.kill();
    this.logStream.end();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * A fenced write to job `id` of tenant 1 through the ingest API: `status` with `percent`,
   * an excel-import step and an ETA, or a terminal state with its result.
   */
  async writeJob(id, status, { percent = 0, step = null, remaining = null, result = null, error = null, attempt = 1 } = {}) {
    this.seq += 1;
    const active = status === 'RUNNING';
    const body = {
      fence: { generation: 1, attempt, seq: this.seq },
      status,
      percent,
      job_type: 'excel_parsing',
      attempt,
    };
    if (step) body.step = { index: step[0], total: 4, name: step[1], display: step[2], percent: step[3] ?? 0 };
    if (remaining != null) body.remaining_seconds = remaining;
    if (result) body.result = result;
    if (error) body.error = error;
    const res = await fetch(`${this.url}/internal/v1/jobs/${id}/${active ? 'progress' : 'transition'}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.workerToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = await res.json().catch(() => null);
    if (!res.ok || !answer || answer.outcome !== 'applied') {
      throw new Error(`ingest ${id} ${status}: ${res.status} ${JSON.stringify(answer)}`);
    }
    return answer;
  }

  /** Uploads a video file through the API as the staff user; returns its id. */
  async upload(path) {
    const form = new FormData();
    form.set('file', new Blob([readFileSync(path)], { type: 'video/mp4' }), 'clip.mp4');
    form.set('title', 'client test clip');
    const res = await fetch(`${this.url}/api/v1/media/videos/`, {
      method: 'POST', headers: { Authorization: `Bearer ${this.token}` }, body: form,
    });
    const body = await res.json();
    if (res.status !== 201) throw new Error(`upload: ${res.status} ${JSON.stringify(body)}`);
    return String(body.id);
  }
}
