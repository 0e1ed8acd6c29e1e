/**
 * A room's member list (PROTOCOL.md section 10.1): the creator alone says
 * who is a member, by signing `ROOM_LIST` with its RSA key. Its limits, the
 * members' order, its codec and signature, and the members at its epoch
 * once the leaves are counted ({@link membersAt}).
 *
 * ```
 * ROOM_LIST  = u8 version (1) || room_id[16] || bytes8(name) || bytes8(creator) || epoch u32
 *              || created u64 || u16 n || n x bytes8(member) || bytes16(sig)
 * list_th    = TH("im v1 room list", version, room_id, name, creator, fp_creator, epoch, created, member_1, ..., member_n)
 * sig        = PSS(creator key, "im v1 room list signature" || 0x00 || list_th)
 * ```
 * @module
 */

import { ByteReader, ByteWriter, fromUtf8, u64be, utf8 } from "../util/mod.ts";
import {
  Label,
  type PrivateIdentity,
  type PublicIdentity,
  signPss,
  transcriptHash,
  verifyPss,
} from "../crypto/mod.ts";
import { signedContent } from "./_login.ts";
import {
  checkEpoch,
  checkName,
  checkRoomId,
  checkSig,
  forged,
  u32be,
} from "./_room_list.ts";
import { decoding, malformed, readRoomHead } from "./_room.ts";
import { ROOM_VERSION } from "./room_id.ts";
import type { RoomLeave } from "./room_leave.ts";

/**
 * The most members a `ROOM_LIST` may name and still decode. The configured
 * limit (`--room-max-members`, {@link DEFAULT_ROOM_MAX_MEMBERS}) is policy,
 * checked by the callers.
 */
export const ROOM_MEMBERS_HARD_LIMIT = 1024;
/** The default of `--room-max-members` (section 10.1). */
export const DEFAULT_ROOM_MAX_MEMBERS = 256;

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

function readTime(r: ByteReader, name: string, what: string): number {
  const t = r.u64();
  if (t > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw malformed(what, `${name}: ${t} is past the largest time`);
  }
  return Number(t);
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
 * import { makeRoomList } from "./room_member_list.ts";
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
 * import { decodeRoomList } from "./room_member_list.ts";
 * assert.throws(() => decodeRoomList(new Uint8Array([1, 2, 3])), { code: "room-malformed" });
 * ```
 */
export function decodeRoomList(b: Uint8Array): RoomList {
  const what = "ROOM_LIST";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const { version, roomId } = readRoomHead(r, what);
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
 * import { makeRoomList, verifyRoomList } from "./room_member_list.ts";
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
 * import type { RoomLeave } from "./room_leave.ts";
 * import { membersAt, type RoomList } from "./room_member_list.ts";
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
