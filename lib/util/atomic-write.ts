import * as fs from 'node:fs';
import * as path from 'node:path';
import { FseftError } from './errors';

/**
 * Writes `contents` to `target` through a temporary file in the same directory and a rename,
 * so a crash or an error never leaves a half-written file under the final name.
 */
export async function writeFileAtomic(target: string, contents: Uint8Array | string): Promise<void> {
  const dir = path.dirname(path.resolve(target));
  await ensureWritableDirectory(dir);
  const temporary = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomSuffix()}.tmp`);
  try {
    // Flushed before the rename: after a crash or power loss the target holds the old or the new contents.
    const handle = await fs.promises.open(temporary, 'w');
    try {
      await handle.writeFile(contents);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temporary, target);
  } catch (error) {
    await fs.promises.rm(temporary, { force: true });
    throw new FseftError(`could not write the file (${(error as Error).message})`, target);
  }
}

/** Creates `dir` (and parents) and checks that files can be created in it. */
export async function ensureWritableDirectory(dir: string): Promise<void> {
  try {
    await fs.promises.mkdir(dir, { recursive: true });
    await fs.promises.access(dir, fs.constants.W_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new FseftError(`output directory is not writable (${code})`, dir);
  }
}

/**
 * Runs `work` with `dir` as its output directory. When `work` fails, a directory that this call
 * created is removed again with whatever was written into it, so that a failed command leaves no
 * empty or partial output folder behind; a directory that existed before is left as it was.
 */
export async function withOutputDirectory<T>(dir: string, work: () => Promise<T>): Promise<T> {
  let created: string | undefined;
  try {
    created = await fs.promises.mkdir(dir, { recursive: true });
  } catch {
    // ensureWritableDirectory below names the problem.
  }
  try {
    await ensureWritableDirectory(dir);
    return await work();
  } catch (error) {
    if (created !== undefined) await fs.promises.rm(created, { recursive: true, force: true });
    throw error;
  }
}

function randomSuffix(): string {
  return Math.floor(Math.random() * 0xffffffff).toString(16);
}
