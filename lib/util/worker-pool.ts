import * as os from 'node:os';
import { Worker } from 'node:worker_threads';

export interface JobOutcome<R> {
  index: number;
  result?: R;
  error?: string;
}

/**
 * Runs `jobs` on up to `concurrency` worker threads, each running `script` (a module that answers
 * every message `{ index, job }` with `{ index, result }` or `{ index, error }`). Failures are
 * reported per job, never abort the others. `onSettled` is called as each job finishes.
 */
export async function runInWorkers<J, R>(
  script: string,
  jobs: J[],
  { concurrency = os.availableParallelism(), onSettled }: { concurrency?: number; onSettled?: (outcome: JobOutcome<R>) => void } = {},
): Promise<Array<JobOutcome<R>>> {
  const outcomes: Array<JobOutcome<R>> = new Array(jobs.length);
  let next = 0;
  const workerCount = Math.max(1, Math.min(concurrency, jobs.length));
  const runWorker = () =>
    new Promise<void>((resolve) => {
      const worker = new Worker(script);
      let current = -1;
      const dispatch = () => {
        if (next >= jobs.length) {
          void worker.terminate().then(() => resolve());
          return;
        }
        current = next++;
        worker.postMessage({ index: current, job: jobs[current] });
      };
      const settle = (outcome: JobOutcome<R>) => {
        outcomes[outcome.index] = outcome;
        onSettled?.(outcome);
      };
      worker.on('message', (message: JobOutcome<R>) => {
        settle(message);
        dispatch();
      });
      worker.on('error', (error) => {
        if (current >= 0 && !outcomes[current]) settle({ index: current, error: error.message });
        // A crashed worker takes no more jobs; the remaining workers continue.
        resolve();
      });
      dispatch();
    });
  await Promise.all(Array.from({ length: workerCount }, runWorker));
  // Jobs never dispatched because every worker crashed are reported as failed.
  for (let i = 0; i < jobs.length; i++) if (!outcomes[i]) outcomes[i] = { index: i, error: 'not run: worker crashed' };
  return outcomes;
}
