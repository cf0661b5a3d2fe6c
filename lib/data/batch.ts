import * as os from 'node:os';
import * as path from 'node:path';
import { PreprocessOptions } from '../transforms/preprocess';
import { Compression } from '../io/gzip';
import { writeFileAtomic } from '../util/atomic-write';
import { FseftError } from '../util/errors';
import { ProgressBar } from '../util/progress';
import { JobOutcome, runInWorkers } from '../util/worker-pool';
import { Dataset } from './datasets';
import { Job, PreprocessRecord, runJob } from './jobs';
import { templateClassName } from './template';

export interface BatchOptions {
  /** Worker threads; default: all cores. 1 runs in this thread. */
  workers?: number;
  /** Show a progress bar on stderr; default true. */
  progress?: boolean;
  label?: string;
}

/**
 * Runs jobs in parallel with a progress bar; returns each job's result, or throws one error that
 * lists every failed job (the finished ones stay on disk and are skipped by a rerun).
 */
export async function runJobs<R>(jobs: Job[], describe: (job: Job) => string, options: BatchOptions = {}): Promise<R[]> {
  const bar = options.progress === false ? undefined : new ProgressBar(jobs.length, options.label ?? 'working');
  const workers = Math.max(1, Math.min(options.workers ?? os.availableParallelism(), jobs.length));
  let outcomes: Array<JobOutcome<R>>;
  if (workers === 1) {
    outcomes = [];
    for (let index = 0; index < jobs.length; index++) {
      try {
        outcomes.push({ index, result: (await runJob(jobs[index])) as R });
      } catch (error) {
        outcomes.push({ index, error: (error as Error).message });
      }
      bar?.tick(describe(jobs[index]));
    }
  } else {
    outcomes = await runInWorkers<Job, R>(path.join(__dirname, 'jobs-worker.js'), jobs, {
      concurrency: workers,
      onSettled: (outcome) => bar?.tick(describe(jobs[outcome.index])),
    });
  }
  const failed = outcomes.filter((o) => o.error !== undefined);
  if (failed.length > 0) {
    const lines = failed.map((o) => `  ${describe(jobs[o.index])}: ${o.error}`).join('\n');
    throw new FseftError(`${failed.length} of ${jobs.length} cases failed (finished cases are kept; rerun to resume):\n${lines}`);
  }
  return outcomes.map((o) => o.result as R);
}

/**
 * Preprocesses every case of the datasets into `<outDir>/<dataset>/<case>/`, in parallel, resuming
 * finished cases. Writes a pair list per dataset (`<dataset>/pairs.json`, labels in template
 * classes) and `<outDir>/collection.json` listing them, ready for pretraining.
 */
export async function preprocessDatasets(
  datasets: Dataset[],
  outDir: string,
  options: PreprocessOptions & { compression?: Compression } = {},
  batch: BatchOptions = {},
): Promise<PreprocessRecord[]> {
  const { compression, ...preprocessOptions } = options;
  const jobs: Job[] = datasets.flatMap((dataset) =>
    dataset.cases.map((entry) => ({
      kind: 'preprocess' as const,
      dataset,
      entry,
      outDir: path.join(outDir, safeName(dataset.name), safeName(entry.id)),
      options: preprocessOptions,
      compression,
    })),
  );
  const records = await runJobs<PreprocessRecord>(jobs, (job) => (job.kind === 'preprocess' ? `${job.dataset.name}/${job.entry.id}` : ''), { label: 'preprocess', ...batch });
  for (const dataset of datasets) {
    const dir = path.join(outDir, safeName(dataset.name));
    const mine = records.filter((r) => r.dataset === dataset.name);
    const pairList = {
      name: dataset.name,
      labels: Object.fromEntries(dataset.annotated.map((c) => [String(c), templateClassName(c)])),
      preprocessing: preprocessOptions,
      cases: mine.map((r) => ({ id: r.id, image: path.relative(dir, r.image), label: r.label ? path.relative(dir, r.label) : undefined })),
    };
    await writeFileAtomic(path.join(dir, 'pairs.json'), JSON.stringify(pairList, null, 2));
  }
  const collection = { datasets: datasets.map((d) => ({ path: `${safeName(d.name)}/pairs.json`, name: d.name })) };
  await writeFileAtomic(path.join(outDir, 'collection.json'), JSON.stringify(collection, null, 2));
  return records;
}

/** A file-system-safe version of a dataset or case name. */
export function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_');
}
