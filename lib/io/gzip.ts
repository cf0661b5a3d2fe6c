import * as os from 'node:os';
import * as zlib from 'node:zlib';
import { crc32 as crc32Js } from '../util/crc32';

/** How `.nii.gz` outputs are compressed: stored (no compression), zlib level 1, or level 9; or a level 0-9. */
export type Compression = 'none' | 'fast' | 'best' | number;
export const COMPRESSION_NAMES = ['none', 'fast', 'best'] as const;

/** The kit's default: level 1, about twice as fast to write as zlib's default 6 for 10-20 % more bytes. */
export const DEFAULT_COMPRESSION: Compression = 'fast';

export function compressionLevel(compression: Compression): number {
  if (compression === 'none') return 0;
  if (compression === 'fast') return 1;
  if (compression === 'best') return 9;
  if (!(Number.isInteger(compression) && compression >= 0 && compression <= 9)) throw new Error(`compression must be none, fast, best or a level 0-9, got ${compression}`);
  return compression;
}

/** The file ending for outputs named by the kit: no compression writes plain `.nii`. */
export function niftiExtension(compression: Compression = DEFAULT_COMPRESSION): '.nii' | '.nii.gz' {
  return compression === 'none' || compression === 0 ? '.nii' : '.nii.gz';
}

/** Parses `--compression none|fast|best|0-9`. */
export function parseCompression(value: string): Compression {
  if ((COMPRESSION_NAMES as readonly string[]).includes(value)) return value as Compression;
  if (/^[0-9]$/.test(value)) return Number(value);
  throw new Error(`--compression must be none, fast, best or a level 0-9, got '${value}'`);
}

const CHUNK_BYTES = 4 << 20;

function deflateRawAsync(chunk: Buffer, level: number, last: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    zlib.deflateRaw(chunk, { level, finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH }, (error, out) => (error ? reject(error) : resolve(out))),
  );
}

const nativeCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/**
 * gzip on all cores, as one gzip member: the data is cut into 4 MiB chunks, each deflated on its
 * own in zlib's thread pool (ending on a sync flush, the last one finished), and the raw deflate
 * streams are joined under one gzip header and trailer (pigz's layout, without dictionaries shared
 * between chunks). One member, not concatenated members: some readers (fflate, inside
 * nifti-reader-js) stop after the first member.
 */
export async function gzipParallel(data: Buffer, level: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let start = 0; start < data.length || chunks.length === 0; start += CHUNK_BYTES) chunks.push(data.subarray(start, Math.min(data.length, start + CHUNK_BYTES)));
  const deflated = await Promise.all(chunks.map((chunk, i) => deflateRawAsync(chunk, level, i === chunks.length - 1)));
  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level >= 9 ? 2 : level <= 1 ? 4 : 0, os.platform() === 'win32' ? 0 : 3]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE((nativeCrc32 ? nativeCrc32(data) : crc32Js(data)) >>> 0, 0);
  trailer.writeUInt32LE(data.length % 2 ** 32, 4);
  return Buffer.concat([header, ...deflated, trailer]);
}
