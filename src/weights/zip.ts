/**
 * The central directory of a ZIP archive (ZIP64 included), enough to locate the stored members of a PyTorch
 * checkpoint: torch.save writes an uncompressed ("stored") zip whose members are the pickle and one raw file per
 * storage. Members are never decompressed here; a compressed member is an error when it is read.
 */
import type { FileHandle } from 'fs/promises';
import { SafetensorsError } from '../errors';

export interface ZipMember {
  name: string;
  method: number; // 0 = stored
  size: number; // uncompressed bytes
  compressedSize: number;
  headerOffset: number; // the local file header
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const MAX_COMMENT = 0xffff;

async function read(handle: FileHandle, file: string, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, offset);
  if (bytesRead !== length) throw new SafetensorsError(file, `truncated zip: wanted ${length} bytes at ${offset}, got ${bytesRead}`);
  return buf;
}

function u64(buf: Buffer, at: number, file: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new SafetensorsError(file, 'zip offset beyond 2^53');
  return Number(v);
}

/** The members of the archive, by name. */
export async function readZipDirectory(handle: FileHandle, file: string, fileSize: number): Promise<Map<string, ZipMember>> {
  const tailLength = Math.min(fileSize, 22 + MAX_COMMENT);
  const tail = await read(handle, file, fileSize - tailLength, tailLength);
  let at = -1;
  for (let i = tailLength - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD) {
      at = i;
      break;
    }
  }
  if (at < 0) throw new SafetensorsError(file, 'not a zip archive (no end-of-central-directory record)');
  let entries = tail.readUInt16LE(at + 10);
  let cdSize = tail.readUInt32LE(at + 12);
  let cdOffset = tail.readUInt32LE(at + 16);
  const eocdOffset = fileSize - tailLength + at;
  if (entries === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locator = await read(handle, file, eocdOffset - 20, 20);
    if (locator.readUInt32LE(0) !== ZIP64_LOCATOR) throw new SafetensorsError(file, 'zip64 archive without its locator');
    const record = await read(handle, file, u64(locator, 8, file), 56);
    if (record.readUInt32LE(0) !== ZIP64_EOCD) throw new SafetensorsError(file, 'zip64 end-of-central-directory record not found');
    entries = u64(record, 32, file);
    cdSize = u64(record, 40, file);
    cdOffset = u64(record, 48, file);
  }
  const cd = await read(handle, file, cdOffset, cdSize);
  const members = new Map<string, ZipMember>();
  let p = 0;
  for (let i = 0; i < entries; i++) {
    if (cd.readUInt32LE(p) !== CENTRAL) throw new SafetensorsError(file, `corrupt zip central directory at entry ${i}`);
    const method = cd.readUInt16LE(p + 10);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    let headerOffset = cd.readUInt32LE(p + 42);
    const name = cd.toString('utf8', p + 46, p + 46 + nameLength);
    // ZIP64 extra field: 64-bit values for the 32-bit fields that hold 0xffffffff, in this order.
    let e = p + 46 + nameLength;
    const end = e + extraLength;
    while (e + 4 <= end) {
      const id = cd.readUInt16LE(e);
      const length = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) {
          size = u64(cd, q, file);
          q += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = u64(cd, q, file);
          q += 8;
        }
        if (headerOffset === 0xffffffff) headerOffset = u64(cd, q, file);
      }
      e += 4 + length;
    }
    members.set(name, { name, method, size, compressedSize, headerOffset });
    p = end + commentLength;
  }
  return members;
}

/** Absolute offset of a stored member's data. */
export async function memberDataOffset(handle: FileHandle, file: string, member: ZipMember): Promise<number> {
  if (member.method !== 0) {
    throw new SafetensorsError(file, `zip member ${member.name} is compressed (method ${member.method}); torch.save stores members uncompressed`);
  }
  const header = await read(handle, file, member.headerOffset, 30);
  if (header.readUInt32LE(0) !== LOCAL) throw new SafetensorsError(file, `corrupt local header of zip member ${member.name}`);
  return member.headerOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
}
