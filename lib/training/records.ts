import * as fs from 'node:fs';
import * as path from 'node:path';
import { FseftError } from '../util/errors';

/**
 * Experiment records: one JSON object per line, appended one whole line at a time and flushed, by
 * one writer at a time (a lock file beside the records). A last line cut short by a crash or a
 * full disk is ignored when read and cut off before the next append; any other bad line is an
 * error naming it.
 */

export interface RecordsRead<T> {
  records: T[];
  /** Bytes of a torn last line (no newline, not JSON) that were ignored; 0 when none. */
  tornBytes: number;
  /** The last record is whole but has no newline (the next append must start a line). */
  unterminated: boolean;
}

export function readRecordLines<T>(file: string): RecordsRead<T> {
  if (!fs.existsSync(file)) return { records: [], tornBytes: 0, unterminated: false };
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const last = lines.pop() ?? '';
  const records: T[] = [];
  lines.forEach((line, index) => {
    if (!line.trim()) return;
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      throw new FseftError(`line ${index + 1} is not JSON (${JSON.stringify(line.slice(0, 60))}${line.length > 60 ? '...' : ''})`, file);
    }
  });
  if (!last.trim()) return { records, tornBytes: 0, unterminated: last !== '' };
  // Text after the last newline: a complete record written without its newline, or a torn one.
  try {
    records.push(JSON.parse(last) as T);
    return { records, tornBytes: 0, unterminated: true };
  } catch {
    return { records, tornBytes: Buffer.byteLength(last), unterminated: false };
  }
}

/** A records file held for appending by this process. */
export interface RecordsWriter {
  append(record: object): void;
  close(): void;
}

/**
 * Takes the records file for appending: refuses while another live process holds it, takes over a
 * lock left by a process that has ended, and cuts off a torn last line (reported through `log`).
 */
export function openRecordsForAppend(file: string, log: (line: string) => void = () => {}): RecordsWriter {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const lockFile = `${file}.lock`;
  takeLock(lockFile, file);
  const release = () => fs.rmSync(lockFile, { force: true });
  process.once('exit', release);
  try {
    const { tornBytes, unterminated } = readRecordLines(file);
    if (tornBytes > 0) {
      fs.truncateSync(file, fs.statSync(file).size - tornBytes);
      log(`  ${file}: removed a torn last line of ${tornBytes} bytes (an interrupted write); its cell will run again`);
    } else if (unterminated) {
      fs.appendFileSync(file, '\n');
    }
  } catch (error) {
    release();
    throw error;
  }
  const fd = fs.openSync(file, 'a');
  return {
    append(record: object) {
      const line = Buffer.from(JSON.stringify(record) + '\n');
      const before = fs.fstatSync(fd).size;
      try {
        let written = 0;
        while (written < line.length) written += fs.writeSync(fd, line, written, line.length - written);
        fs.fsyncSync(fd);
      } catch (error) {
        // Leave no partial line: cut the file back to where it was.
        try {
          fs.ftruncateSync(fd, before);
        } catch {
          // the next open cuts the torn line off
        }
        throw new FseftError(`could not append a record (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); the records so far are intact`, file);
      }
    },
    close() {
      fs.closeSync(fd);
      release();
      process.removeListener('exit', release);
    },
  };
}

function takeLock(lockFile: string, file: string): void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw new FseftError(`cannot lock the records file (${(error as NodeJS.ErrnoException).code})`, file);
    }
    const holder = Number(fs.readFileSync(lockFile, 'utf8').trim());
    // This process's own lock is left by an earlier call that never closed (an interrupted notebook cell).
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      throw new FseftError(`another experiment (process ${holder}) is writing these records; wait for it, or remove ${lockFile} if that process is gone`, file);
    }
    fs.rmSync(lockFile, { force: true });
  }
  throw new FseftError(`cannot lock the records file (${lockFile} keeps reappearing)`, file);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
