import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CLI, tempDir } from '../helpers';

/**
 * Runs the CLI on a hostile input in a child process and checks that it is refused the way a user
 * deserves: exit status 1, one line naming the file and the problem, no hang (a hard time limit),
 * bounded peak memory (the child's own maximum resident set, read at exit) and nothing written.
 */

/** Preloaded into the child: writes its peak resident memory (KiB) to FSEFT_TEST_RSS_FILE at exit. */
const RSS_PRELOAD = (() => {
  const file = path.join(tempDir('fseft-hostile-rss-'), 'rss.js');
  fs.writeFileSync(file, "process.on('exit', () => require('node:fs').writeFileSync(process.env.FSEFT_TEST_RSS_FILE, String(process.resourceUsage().maxRSS)));");
  return file;
})();

/** A child that runs longer than this is hung; well above any refusal's real duration (under a few seconds). */
export const HANG_LIMIT_MS = 60_000;
/** Peak resident memory allowed for a refusal: Node, tfjs and the wasm module start at about 200 MiB. */
export const MEMORY_LIMIT_MIB = 700;

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stderr without the backend's start-up line. */
  messages: string[];
  peakMiB: number;
  ms: number;
}

export function runCli(args: string[], { env = {}, cwd }: { env?: Record<string, string>; cwd?: string } = {}): CliRun {
  const rssFile = path.join(tempDir('fseft-hostile-run-'), 'rss');
  const started = Date.now();
  const result = spawnSync(process.execPath, ['-r', RSS_PRELOAD, CLI, ...args], {
    encoding: 'utf8',
    cwd,
    timeout: HANG_LIMIT_MS,
    env: { ...process.env, FSEFT_BACKEND: 'wasm', ...env, FSEFT_TEST_RSS_FILE: rssFile },
  });
  const ms = Date.now() - started;
  const peakKiB = fs.existsSync(rssFile) ? Number(fs.readFileSync(rssFile, 'utf8')) : NaN;
  const messages = result.stderr.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('fseft: backend '));
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, messages, peakMiB: peakKiB / 1024, ms };
}

/**
 * The refusal contract. `mentions` are strings the one line must contain (the file, the problem);
 * `absent` are paths that must not exist afterwards (no output left behind).
 */
export function assertRefused(run: CliRun, pattern: RegExp, { mentions = [], absent = [] }: { mentions?: string[]; absent?: string[] } = {}): void {
  assert.notEqual(run.status, null, `hung: killed after ${HANG_LIMIT_MS / 1000} s\n${run.stderr.slice(-2000)}`);
  assert.equal(run.status, 1, `exit status ${run.status}, expected 1\nstdout: ${run.stdout.slice(-1500)}\nstderr: ${run.stderr.slice(-1500)}`);
  assert.equal(run.messages.length, 1, `expected one line on stderr, got ${run.messages.length}:\n${run.messages.slice(0, 10).join('\n').slice(0, 2000)}`);
  const [line] = run.messages;
  assert.doesNotMatch(line, /unexpected error/, line);
  assert.match(line, pattern);
  for (const text of mentions) assert.ok(line.includes(text), `the line does not name ${text}: ${line}`);
  assert.ok(run.peakMiB < MEMORY_LIMIT_MIB, `peak memory ${run.peakMiB.toFixed(0)} MiB (limit ${MEMORY_LIMIT_MIB} MiB): ${line}`);
  for (const file of absent) assert.ok(!fs.existsSync(file), `${file} was left behind: ${line}`);
}
