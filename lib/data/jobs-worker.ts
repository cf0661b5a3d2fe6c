import { parentPort } from 'node:worker_threads';
import { Job, runJob } from './jobs';

// Worker-thread entry: answers each { index, job } with { index, result } or { index, error }.
parentPort?.on('message', async ({ index, job }: { index: number; job: Job }) => {
  try {
    parentPort!.postMessage({ index, result: await runJob(job) });
  } catch (error) {
    parentPort!.postMessage({ index, error: (error as Error).message });
  }
});
