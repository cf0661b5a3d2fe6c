import * as zlib from 'node:zlib';

/** Deflate expands at most about 1032:1; a claimed size beyond that is a lie. */
const MAX_DEFLATE_RATIO = 1032;

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

/**
 * A minimal reader of ZIP archives held in memory (stored and deflated entries, ZIP64 sizes),
 * enough for PyTorch's `torch.save` format. Throws plain Errors; callers add the file name.
 */
export class ZipArchive {
  readonly entries: Map<string, ZipEntry>;

  constructor(private readonly bytes: Buffer) {
    this.entries = readCentralDirectory(bytes);
  }

  static isZip(bytes: Buffer): boolean {
    return bytes.length >= 4 && bytes.readUInt32LE(0) === 0x04034b50;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  /** The entry's bytes (a view for stored entries, no copy). */
  read(name: string): Buffer {
    const entry = this.entries.get(name);
    if (!entry) throw new Error(`archive has no entry '${name}'`);
    const header = entry.localHeaderOffset;
    if (header + 30 > this.bytes.length || this.bytes.readUInt32LE(header) !== 0x04034b50) throw new Error(`bad local header for '${name}'`);
    const start = header + 30 + this.bytes.readUInt16LE(header + 26) + this.bytes.readUInt16LE(header + 28);
    const end = start + entry.compressedSize;
    if (end > this.bytes.length) throw new Error(`entry '${name}' runs past the end of the archive (truncated file?)`);
    const raw = this.bytes.subarray(start, end);
    if (entry.method === 0) return raw;
    if (entry.method === 8) {
      // The directory's size bounds the inflation (a small entry cannot expand into gigabytes), and
      // no size beyond deflate's maximum ratio is believed.
      if (entry.size > MAX_DEFLATE_RATIO * entry.compressedSize + 1024) {
        throw new Error(`entry '${name}' claims ${entry.size} bytes from ${entry.compressedSize} compressed, more than deflate can expand (a zip bomb or a corrupt directory)`);
      }
      let inflated: Buffer;
      try {
        inflated = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ERR_BUFFER_TOO_LARGE') throw new Error(`entry '${name}' inflates past the ${entry.size} bytes its directory claims (a zip bomb or a corrupt directory)`);
        throw new Error(`entry '${name}' does not inflate (${(error as Error).message})`);
      }
      if (inflated.length !== entry.size) throw new Error(`entry '${name}' inflates to ${inflated.length} bytes, its directory claims ${entry.size}`);
      return inflated;
    }
    throw new Error(`entry '${name}' uses unsupported compression method ${entry.method}`);
  }
}

function readCentralDirectory(bytes: Buffer): Map<string, ZipEntry> {
  const eocd = findEndOfCentralDirectory(bytes);
  let count = bytes.readUInt16LE(eocd + 10);
  let offset = bytes.readUInt32LE(eocd + 16);
  if (offset === 0xffffffff || count === 0xffff) {
    const locator = eocd - 20;
    if (locator < 0 || bytes.readUInt32LE(locator) !== 0x07064b50) throw new Error('ZIP64 locator missing');
    const zip64 = Number(bytes.readBigUInt64LE(locator + 8));
    if (bytes.readUInt32LE(zip64) !== 0x06064b50) throw new Error('ZIP64 end of central directory missing');
    count = Number(bytes.readBigUInt64LE(zip64 + 32));
    offset = Number(bytes.readBigUInt64LE(zip64 + 48));
  }
  const entries = new Map<string, ZipEntry>();
  for (let i = 0; i < count; i++) {
    if (offset + 46 > bytes.length || bytes.readUInt32LE(offset) !== 0x02014b50) throw new Error('corrupt central directory');
    const method = bytes.readUInt16LE(offset + 10);
    let compressedSize = bytes.readUInt32LE(offset + 20);
    let size = bytes.readUInt32LE(offset + 24);
    const nameLength = bytes.readUInt16LE(offset + 28);
    const extraLength = bytes.readUInt16LE(offset + 30);
    const commentLength = bytes.readUInt16LE(offset + 32);
    let localHeaderOffset = bytes.readUInt32LE(offset + 42);
    const name = bytes.toString('utf8', offset + 46, offset + 46 + nameLength);
    // ZIP64 extra field: 64-bit values replace the 0xffffffff placeholders, in this order.
    let extra = offset + 46 + nameLength;
    const extraEnd = extra + extraLength;
    while (extra + 4 <= extraEnd) {
      const id = bytes.readUInt16LE(extra);
      const length = bytes.readUInt16LE(extra + 2);
      if (id === 0x0001) {
        let p = extra + 4;
        if (size === 0xffffffff) (size = Number(bytes.readBigUInt64LE(p))), (p += 8);
        if (compressedSize === 0xffffffff) (compressedSize = Number(bytes.readBigUInt64LE(p))), (p += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = Number(bytes.readBigUInt64LE(p));
      }
      extra += 4 + length;
    }
    entries.set(name, { name, method, compressedSize, size, localHeaderOffset });
    offset = extraEnd + commentLength;
  }
  return entries;
}

function findEndOfCentralDirectory(bytes: Buffer): number {
  const lowest = Math.max(0, bytes.length - 22 - 0xffff);
  for (let i = bytes.length - 22; i >= lowest; i--) if (bytes.readUInt32LE(i) === 0x06054b50) return i;
  throw new Error('not a complete ZIP archive (end of central directory not found; truncated file?)');
}
