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
    await fs.promises.writeFile(temporary, contents);
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

function randomSuffix(): string {
  return Math.floor(Math.random() * 0xffffffff).toString(16);
}
