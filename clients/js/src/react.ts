// `useTaskProgress`: the watch as a React hook (`@jobpulse/client/react`; React is a peer
// dependency). The watch opens when the component mounts, follows the ids given, and closes
// on unmount.

import { useEffect, useRef, useState } from 'react';

import type { ApiError } from './http.js';
import type { TaskProgress } from './progress.js';
import type { Kind, WatchIds } from './types.js';
import {
  key, watch, type Mode, type Watch, type WatchOptions,
} from './watch.js';

export interface TaskProgressState {
  /** Every watched task with a known state, by `video:<id>` / `job:<id>`. */
  tasks: ReadonlyMap<string, TaskProgress>;
  /** One task's state (undefined until its first answer). */
  get(kind: Kind, id: string | number): TaskProgress | undefined;
  mode: Mode;
  /** Set when the watch stopped for good (401/403/400). */
  error: ApiError | null;
}

function idList(ids: WatchIds): { videos: string[]; jobs: string[] } {
  return {
    videos: [...(ids.videos || [])].map(String),
    jobs: [...(ids.jobs || [])].map(String),
  };
}

/**
 * Live progress of `ids`. `options` are read when the watch opens (a new `baseUrl` or `all`
 * reopens it; pass `token` as a function to hand over refreshed tokens).
 */
export function useTaskProgress(ids: WatchIds, options: WatchOptions = {}): TaskProgressState {
  const [tasks, setTasks] = useState<ReadonlyMap<string, TaskProgress>>(() => new Map());
  const [mode, setMode] = useState<Mode>('idle');
  const [error, setError] = useState<ApiError | null>(null);
  const opts = useRef(options);
  opts.current = options;
  const handle = useRef<Watch | null>(null);
  const added = useRef(new Set<string>());
  const list = idList(ids);
  const wanted = `${list.videos.join(',')}|${list.jobs.join(',')}`;

  // One watch per connection settings.
  useEffect(() => {
    setError(null);
    const w = watch({}, (_task, current) => setTasks(current.tasks()), {
      ...opts.current,
      onMode: (m) => {
        setMode(m);
        opts.current.onMode?.(m);
      },
      onError: (e) => {
        setError(e);
        opts.current.onError?.(e);
      },
      autoStart: false,
    });
    handle.current = w;
    added.current = new Set();
    return () => {
      handle.current = null;
      w.stop();
    };
  }, [options.baseUrl, options.all, options.transport]);

  // The watched ids follow the arguments.
  useEffect(() => {
    const w = handle.current;
    if (!w) return;
    const want = new Map<string, [Kind, string]>([
      ...list.videos.map((v): [string, [Kind, string]] => [key('video', v), ['video', v]]),
      ...list.jobs.map((j): [string, [Kind, string]] => [key('job', j), ['job', j]]),
    ]);
    for (const k of added.current) {
      if (!want.has(k)) {
        const [kind, id] = k.split(/:(.*)/s) as [Kind, string];
        w.remove(kind, id);
        added.current.delete(k);
      }
    }
    for (const [k, [kind, id]] of want) {
      if (!added.current.has(k)) {
        w.add(kind, id);
        added.current.add(k);
      }
    }
    w.start();
    setTasks(w.tasks());
  }, [wanted, options.baseUrl, options.all, options.transport]);

  return {
    tasks,
    get: (kind, id) => tasks.get(key(kind, String(id))),
    mode,
    error,
  };
}
