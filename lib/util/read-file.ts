import * as fs from 'node:fs';
import { FseftError } from './errors';

/** One line naming the file for a system error met while reading it. */
export function readError(file: string, error: unknown): FseftError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new FseftError('file not found', file);
  if (code === 'EISDIR') return new FseftError('is a directory, expected a file', file);
  return new FseftError(`cannot read (${code ?? (error as Error).message})`, file);
}

/** Reads a whole file, turning system errors into one line that names the file. */
export function readFileOrThrow(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw readError(file, error);
  }
}

/** Reads and parses a JSON file; unreadable or invalid files are one-line errors naming the file. */
export function readJsonFile(file: string): unknown {
  const text = readFileOrThrow(file).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FseftError(`invalid JSON (${(error as Error).message})`, file);
  }
}
