import * as fs from 'node:fs';
import { FseftError } from './errors';

/** Reads a whole file, turning system errors into one line that names the file. */
export function readFileOrThrow(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FseftError('file not found', file);
    if (code === 'EISDIR') throw new FseftError('is a directory, expected a file', file);
    throw new FseftError(`cannot read (${code ?? (error as Error).message})`, file);
  }
}
