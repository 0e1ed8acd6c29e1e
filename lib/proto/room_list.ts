/**
 * A room's member list and a member's leave (PROTOCOL.md section 10.1): the
 * creator alone says who is a member, by signing `ROOM_LIST` with its RSA
 * key; a member leaves by signing `ROOM_LEAVE` with its own.
 *
 * ```
 * ROOM_LIST  = u8 version (1) || room_id[16] || bytes8(name) || bytes8(creator) || epoch u32
 *              || created u64 || u16 n || n x bytes8(member) || bytes16(sig)
 * list_th    = TH("im v1 room list", version, room_id, name, creator, fp_creator, epoch, created, member_1, ..., member_n)
 * sig        = PSS(creator key, "im v1 room list signature" || 0x00 || list_th)
 *
 * ROOM_LEAVE = u8 version (1) || room_id[16] || bytes8(member) || epoch u32 || bytes16(sig)
 * sig        = PSS(member key, "im v1 room leave signature" || 0x00 ||
 *                  TH("im v1 room leave", version, room_id, member, fp_member, epoch))
 * ```
 *
 * Pure: codecs and signatures, no I/O. Which key is the creator's (the pin
 * of section 6), whether the room is the one known, the epoch against the
 * one held (`room-rollback`) and the configured member limit are the
 * caller's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodeRoomList, makeRoomList, verifyRoomList } from "./room_list.ts";
 * const a = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const list = await makeRoomList({
 *   roomId: new Uint8Array(16).fill(1), name: "team", creator: a, creatorName: "A",
 *   epoch: 1, created: Date.now(), members: ["C", "B"],
 * });
 * assert.deepEqual(list.members, ["A", "B", "C"]);
 * await verifyRoomList(decodeRoomList(list.bytes), a.publicIdentity);
 * ```
 * @module
 */

import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  isImError,
  ProtocolError,
  u64be,
  utf8,
} from "../util/mod.ts";
import {
  Label,
  MAX_RSA_BITS,
  MIN_RSA_BITS,
  type PrivateIdentity,
  type PublicIdentity,
  signPss,
  transcriptHash,
  verifyPss,
} from "../crypto/mod.ts";
import { signedContent } from "./_login.ts";
import { isValidUsername } from "./username.ts";

/** The version byte of `ROOM_LIST`, `ROOM_LEAVE`, `ROOM_KEY` and `ROOM_MSG` (section 10). */
export const ROOM_VERSION = 1;
/** Bytes of a `room_id` (section 10.1). */
export const ROOM_ID_BYTES = 16;
/**
 * The most members a `ROOM_LIST` may name and still decode. The configured
 * limit (`--room-max-members`, {@link DEFAULT_ROOM_MAX_MEMBERS}) is policy,
 * checked by the callers.
 */
export const ROOM_MEMBERS_HARD_LIMIT = 1024;
/** The default of `--room-max-members` (section 10.1). */
export const DEFAULT_ROOM_MAX_MEMBERS = 256;

/** Shortest signature accepted: that of a 2048-bit key. */
const MIN_SIG_BYTES = MIN_RSA_BITS / 8;
/** Longest signature accepted: that of a 4096-bit key. */
const MAX_SIG_BYTES = MAX_RSA_BITS / 8;
/** Largest u32: epochs are counted from 1. */
const U32_MAX = 0xffff_ffff;

/** A `ROOM_LIST`, decoded (section 10.1). */
export interface RoomList {
  /** Always {@link ROOM_VERSION}. */
  readonly version: number;
  /** 16 random bytes chosen by the creator. */
  readonly roomId: Uint8Array;
  /** The room's name (rule 2.9). */
  readonly name: string;
  /** Who made the room and alone signs its lists. */
  readonly creator: string;
  /** 1 at creation, one more at each membership change. */
  readonly epoch: number;
  /** When this list was signed, ms since the epoch (server's clock). */
  readonly created: number;
  /** The creator first, then the others in byte order, no repeats. */
  readonly members: readonly string[];
  /** RSA-PSS by the creator's key over `list_th`. */
  readonly sig: Uint8Array;
  /** The whole encoding, as sent and stored. */
  readonly bytes: Uint8Array;
}

/** A `ROOM_LEAVE`, decoded (section 10.1). */
export interface RoomLeave {
  /** Always {@link ROOM_VERSION}. */
  readonly version: number;
  /** The room's `room_id`, 16 bytes. */
  readonly roomId: Uint8Array;
  /** Who leaves. */
  readonly member: string;
  /** The epoch it leaves at: it is no member from this epoch on. */
  readonly epoch: number;
  /** RSA-PSS by the member's key. */
  readonly sig: Uint8Array;
  /** The whole encoding, as sent and stored. */
  readonly bytes: Uint8Array;
}

function malformed(what: string, why: string): ProtocolError {
  return new ProtocolError("room-malformed", `Cannot read ${what}: ${why}`);
}

function forged(what: string): ProtocolError {
  return new ProtocolError(
    "room-forged",
    `${what} refused: its signature does not verify with the signer's key`,
  );
}

function shown(name: string): string {
  return name.length > 40 ? `${name.slice(0, 40)}...` : name;
}

function checkName(name: string, field: string, what: string): void {
  if (!isValidUsername(name)) {
    throw malformed(what, `${field}: invalid name "${shown(name)}"`);
  }
}

function checkRoomId(id: Uint8Array, what: string): void {
  if (id.length !== ROOM_ID_BYTES) {
    throw malformed(
      what,
      `room_id: expected ${ROOM_ID_BYTES} bytes, got ${id.length}`,
    );
  }
}

function checkEpoch(epoch: number, what: string): void {
  if (!Number.isInteger(epoch) || epoch < 1 || epoch > U32_MAX) {
    throw malformed(what, `epoch: expected 1 to ${U32_MAX}, got ${epoch}`);
  }
}

function checkSig(sig: Uint8Array, what: string): void {
  if (sig.length < MIN_SIG_BYTES || sig.length > MAX_SIG_BYTES) {
    throw malformed(
      what,
      `signature: expected ${MIN_SIG_BYTES} to ${MAX_SIG_BYTES} bytes, got ${sig.length}`,
    );
  }
}

/**
 * Byte order of two names' UTF-8 encodings (section 10.1).
 * @returns negative, 0 or positive, as `Array.prototype.sort` wants
 */
function byteOrder(a: string, b: string): number {
  const x = utf8(a), y = utf8(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

/**
 * The members as a list holds them: the creator first, then the rest
 * sorted by byte order, without repeats.
 * @param creator the creator's name
 * @param members any names, in any order
 * @returns the canonical order
 */
function canonicalMembers(
  creator: string,
  members: readonly string[],
): string[] {
  const rest = [...new Set(members)].filter((m) => m !== creator);
  return [creator, ...rest.sort(byteOrder)];
}

/**
 * Check the member order of a list: 1 to {@link ROOM_MEMBERS_HARD_LIMIT}
 * valid names, the creator first, the rest strictly increasing in byte
 * order and none the creator.
 */
function checkMembers(
  creator: string,
  members: readonly string[],
  what: string,
): void {
  if (members.length < 1 || members.length > ROOM_MEMBERS_HARD_LIMIT) {
    throw malformed(
      what,
      `expected 1 to ${ROOM_MEMBERS_HARD_LIMIT} members, got ${members.length}`,
    );
  }
  members.forEach((m, i) => checkName(m, `member ${i + 1}`, what));
  if (members[0] !== creator) {
    throw malformed(
      what,
      `the first member is "${members[0]}", not the creator "${creator}"`,
    );
  }
  for (let i = 1; i < members.length; i++) {
    const m = members[i]!;
    if (m === creator) {
      throw malformed(what, `the creator "${creator}" is listed twice`);
    }
    if (i > 1 && byteOrder(members[i - 1]!, m) >= 0) {
      throw malformed(
        what,
        `members are not in byte order without repeats: "${
          members[i - 1]
        }" before "${m}"`,
      );
    }
  }
}

/**
 * Run a decoder; a truncated or over-long input, or bad UTF-8, becomes
 * `room-malformed`.
 */
function decoding<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (isImError(e) && e.code !== "room-malformed") {
      throw malformed(what, e.message);
    }
    throw e;
  }
}

function readTime(r: ByteReader, name: string, what: string): number {
  const t = r.u64();
  if (t > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw malformed(what, `${name}: ${t} is past the largest time`);
  }
  return Number(t);
}

function u32be(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/**
 * `list_th = TH("im v1 room list", version, room_id, name, creator,
 * fp_creator, epoch, created, member_1, ..., member_n)`.
 */
function listTranscript(
  l: Omit<RoomList, "sig" | "bytes">,
  fp: Uint8Array,
): Promise<Uint8Array> {
  return transcriptHash(Label.ROOM_LIST, [
    new Uint8Array([l.version]),
    l.roomId,
    utf8(l.name),
    utf8(l.creator),
    fp,
    u32be(l.epoch),
    u64be(BigInt(l.created)),
    ...l.members.map(utf8),
  ]);
}

/** `TH("im v1 room leave", version, room_id, member, fp_member, epoch)`. */
function leaveTranscript(
  l: Omit<RoomLeave, "sig" | "bytes">,
  fp: Uint8Array,
): Promise<Uint8Array> {
  return transcriptHash(Label.ROOM_LEAVE, [
    new Uint8Array([l.version]),
    l.roomId,
    utf8(l.member),
    fp,
    u32be(l.epoch),
  ]);
}

/**
 * Make and sign a `ROOM_LIST` (section 10.1). The members are put in the
 * list's order: the creator first (added when absent), then the others in
 * byte order of their UTF-8 names, repeats dropped.
 * @param a `roomId` (16 bytes); the room's `name`; the `creator`'s RSA
 *   identity and `creatorName`; `epoch` (1 to 2^32-1); `created`, ms
 *   (server's clock); `members`
 * @returns the list, with its encoding in `bytes`
 * @throws {ProtocolError} `room-malformed` for a field that would not
 *   decode (a bad name or id, an epoch of 0, too many members)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { makeRoomList } from "./room_list.ts";
 * const a = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const base = { roomId: new Uint8Array(16), name: "r", creator: a, creatorName: "A", created: 0 };
 * const list = await makeRoomList({ ...base, epoch: 1, members: ["b", "B", "A", "B"] });
 * assert.deepEqual(list.members, ["A", "B", "b"]);
 * await assert.rejects(makeRoomList({ ...base, epoch: 0, members: [] }), { code: "room-malformed" });
 * ```
 */
export async function makeRoomList(a: {
  roomId: Uint8Array;
  name: string;
  creator: PrivateIdentity;
  creatorName: string;
  epoch: number;
  created: number;
  members: readonly string[];
}): Promise<RoomList> {
  const what = "ROOM_LIST";
  checkRoomId(a.roomId, what);
  checkName(a.name, "name", what);
  checkName(a.creatorName, "creator", what);
  checkEpoch(a.epoch, what);
  if (!Number.isSafeInteger(a.created) || a.created < 0) {
    throw malformed(
      what,
      `created: expected ms since the epoch, got ${a.created}`,
    );
  }
  const members = canonicalMembers(a.creatorName, a.members);
  checkMembers(a.creatorName, members, what);
  const body = {
    version: ROOM_VERSION,
    roomId: new Uint8Array(a.roomId),
    name: a.name,
    creator: a.creatorName,
    epoch: a.epoch,
    created: a.created,
    members,
  };
  const th = await listTranscript(body, a.creator.fingerprintBytes);
  const sig = await signPss(
    a.creator.sign,
    signedContent(Label.ROOM_LIST_SIGNATURE, th),
  );
  checkSig(sig, what);
  const w = new ByteWriter().u8(body.version).bytes(body.roomId)
    .bytes8(utf8(body.name)).bytes8(utf8(body.creator)).u32(body.epoch)
    .u64(BigInt(body.created)).u16(members.length);
  for (const m of members) w.bytes8(utf8(m));
  const bytes = w.bytes16(sig).finish();
  return { ...body, sig, bytes };
}

/**
 * Decode a `ROOM_LIST` (section 10.1): version 1, valid names (rule 2.9),
 * 1 to {@link ROOM_MEMBERS_HARD_LIMIT} members, the creator first, the
 * others strictly increasing in byte order, `epoch` from 1, a signature as
 * long as a 2048- to 4096-bit key's, nothing after it. The signature is
 * not checked here ({@link verifyRoomList}).
 * @param b the bytes
 * @returns the list (`bytes` a copy of `b`)
 * @throws {ProtocolError} `room-malformed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRoomList } from "./room_list.ts";
 * assert.throws(() => decodeRoomList(new Uint8Array([1, 2, 3])), { code: "room-malformed" });
 * ```
 */
export function decodeRoomList(b: Uint8Array): RoomList {
  const what = "ROOM_LIST";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const version = r.u8();
    if (version !== ROOM_VERSION) {
      throw malformed(what, `version ${version}, expected ${ROOM_VERSION}`);
    }
    const roomId = r.bytes(ROOM_ID_BYTES);
    const name = fromUtf8(r.bytes8(), `${what} name`);
    checkName(name, "name", what);
    const creator = fromUtf8(r.bytes8(), `${what} creator`);
    checkName(creator, "creator", what);
    const epoch = r.u32();
    checkEpoch(epoch, what);
    const created = readTime(r, "created", what);
    const n = r.u16();
    if (n < 1 || n > ROOM_MEMBERS_HARD_LIMIT) {
      throw malformed(
        what,
        `expected 1 to ${ROOM_MEMBERS_HARD_LIMIT} members, got ${n}`,
      );
    }
    const members: string[] = [];
    for (let i = 0; i < n; i++) {
      members.push(fromUtf8(r.bytes8(), `${what} member`));
    }
    checkMembers(creator, members, what);
    const sig = r.bytes16();
    checkSig(sig, what);
    r.end();
    return {
      version,
      roomId,
      name,
      creator,
      epoch,
      created,
      members,
      sig,
      bytes: new Uint8Array(b),
    };
  });
}

/**
 * Check a list's signature with the creator's RSA key (section 10.1), over
 * its fields and that key's fingerprint. That the key is the creator's
 * pinned one, the room the one known and the epoch newer than the one held
 * are the caller's checks.
 * @param list a decoded list
 * @param creatorKey the RSA key it should be signed by
 * @throws {ProtocolError} `room-forged` when the signature does not verify
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { makeRoomList, verifyRoomList } from "./room_list.ts";
 * const [a, b] = await Promise.all([1, 2].map(async () => loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem)));
 * const list = await makeRoomList({ roomId: new Uint8Array(16), name: "r", creator: a!, creatorName: "A", epoch: 1, created: 0, members: [] });
 * await assert.rejects(verifyRoomList(list, b!.publicIdentity), { code: "room-forged" });
 * ```
 */
export async function verifyRoomList(
  list: RoomList,
  creatorKey: PublicIdentity,
): Promise<void> {
  const ok = list.version === ROOM_VERSION &&
    await verifyPss(
      creatorKey.verify,
      list.sig,
      signedContent(
        Label.ROOM_LIST_SIGNATURE,
        await listTranscript(list, creatorKey.fingerprintBytes),
      ),
    );
  if (!ok) throw forged(`Member list of room "${list.name}"`);
}

/**
 * Make and sign a `ROOM_LEAVE` (section 10.1): `member` is no member of
 * the room from `epoch` on.
 * @param a `roomId` (16 bytes); the leaving `member`'s name and RSA
 *   `identity`; the `epoch` it leaves at
 * @returns the statement, with its encoding in `bytes`
 * @throws {ProtocolError} `room-malformed` for a field that would not
 *   decode
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { decodeRoomLeave, makeRoomLeave, verifyRoomLeave } from "./room_list.ts";
 * const b = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const leave = await makeRoomLeave({ roomId: new Uint8Array(16), member: "B", identity: b, epoch: 3 });
 * await verifyRoomLeave(decodeRoomLeave(leave.bytes), b.publicIdentity);
 * assert.equal(leave.epoch, 3);
 * ```
 */
export async function makeRoomLeave(a: {
  roomId: Uint8Array;
  member: string;
  identity: PrivateIdentity;
  epoch: number;
}): Promise<RoomLeave> {
  const what = "ROOM_LEAVE";
  checkRoomId(a.roomId, what);
  checkName(a.member, "member", what);
  checkEpoch(a.epoch, what);
  const body = {
    version: ROOM_VERSION,
    roomId: new Uint8Array(a.roomId),
    member: a.member,
    epoch: a.epoch,
  };
  const th = await leaveTranscript(body, a.identity.fingerprintBytes);
  const sig = await signPss(
    a.identity.sign,
    signedContent(Label.ROOM_LEAVE_SIGNATURE, th),
  );
  checkSig(sig, what);
  const bytes = new ByteWriter().u8(body.version).bytes(body.roomId)
    .bytes8(utf8(body.member)).u32(body.epoch).bytes16(sig).finish();
  return { ...body, sig, bytes };
}

/**
 * Decode a `ROOM_LEAVE` (section 10.1): version 1, a valid name, `epoch`
 * from 1, a signature as long as a 2048- to 4096-bit key's, nothing after
 * it. The signature is not checked here ({@link verifyRoomLeave}).
 * @param b the bytes
 * @returns the statement (`bytes` a copy of `b`)
 * @throws {ProtocolError} `room-malformed`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRoomLeave } from "./room_list.ts";
 * assert.throws(() => decodeRoomLeave(new Uint8Array(30)), { code: "room-malformed" });
 * ```
 */
export function decodeRoomLeave(b: Uint8Array): RoomLeave {
  const what = "ROOM_LEAVE";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const version = r.u8();
    if (version !== ROOM_VERSION) {
      throw malformed(what, `version ${version}, expected ${ROOM_VERSION}`);
    }
    const roomId = r.bytes(ROOM_ID_BYTES);
    const member = fromUtf8(r.bytes8(), `${what} member`);
    checkName(member, "member", what);
    const epoch = r.u32();
    checkEpoch(epoch, what);
    const sig = r.bytes16();
    checkSig(sig, what);
    r.end();
    return { version, roomId, member, epoch, sig, bytes: new Uint8Array(b) };
  });
}

/**
 * Check a leave's signature with the member's RSA key (section 10.1), over
 * its fields and that key's fingerprint. That the key is the member's
 * pinned one is the caller's check.
 * @param leave a decoded statement
 * @param memberKey the RSA key it should be signed by
 * @throws {ProtocolError} `room-forged` when the signature does not verify
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { makeRoomLeave, verifyRoomLeave } from "./room_list.ts";
 * const [a, b] = await Promise.all([1, 2].map(async () => loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem)));
 * const leave = await makeRoomLeave({ roomId: new Uint8Array(16), member: "B", identity: b!, epoch: 1 });
 * await assert.rejects(verifyRoomLeave(leave, a!.publicIdentity), { code: "room-forged" });
 * ```
 */
export async function verifyRoomLeave(
  leave: RoomLeave,
  memberKey: PublicIdentity,
): Promise<void> {
  const ok = leave.version === ROOM_VERSION &&
    await verifyPss(
      memberKey.verify,
      leave.sig,
      signedContent(
        Label.ROOM_LEAVE_SIGNATURE,
        await leaveTranscript(leave, memberKey.fingerprintBytes),
      ),
    );
  if (!ok) throw forged(`Leave of "${leave.member}"`);
}

/**
 * The members of a room at the list's epoch `e` (section 10.1): the list's,
 * minus every member with a leave for this room and epoch `e` or later. A
 * leave of an earlier epoch is one the list already answered (it left the
 * member out, or named it again after it came back). The leaves must have
 * been verified ({@link verifyRoomLeave}); here they are only filtered by
 * `room_id` and epoch.
 * @param list the room's newest accepted list
 * @param leaves the verified leaves held for the room
 * @returns the members, in the list's order
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { membersAt, type RoomLeave, type RoomList } from "./room_list.ts";
 * const roomId = new Uint8Array(16);
 * const list = { roomId, epoch: 2, members: ["A", "B", "C"] } as unknown as RoomList;
 * const leave = (member: string, epoch: number) => ({ roomId, member, epoch }) as RoomLeave;
 * assert.deepEqual(membersAt(list, [leave("B", 1), leave("C", 2)]), ["A", "B"]);
 * ```
 */
export function membersAt(
  list: RoomList,
  leaves: readonly RoomLeave[],
): string[] {
  const left = new Set(
    leaves.filter((l) =>
      l.epoch >= list.epoch && sameBytes(l.roomId, list.roomId)
    ).map((l) => l.member),
  );
  return list.members.filter((m) => !left.has(m));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * A `room_id` as text: 32 lowercase hex digits.
 * @param id 16 bytes
 * @returns the hex text
 * @throws {ProtocolError} `bad-length` for another length
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roomIdHex } from "./room_list.ts";
 * assert.equal(roomIdHex(new Uint8Array(16).fill(0xab)), "ab".repeat(16));
 * ```
 */
export function roomIdHex(id: Uint8Array): string {
  if (id.length !== ROOM_ID_BYTES) {
    throw new ProtocolError(
      "bad-length",
      `room_id: expected ${ROOM_ID_BYTES} bytes, got ${id.length}`,
    );
  }
  return id.toHex();
}
