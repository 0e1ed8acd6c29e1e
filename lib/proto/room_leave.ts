/**
 * A member's leave (PROTOCOL.md section 10.1): a member leaves a room by
 * signing `ROOM_LEAVE` with its own RSA key. Its codec and signature.
 *
 * ```
 * ROOM_LEAVE = u8 version (1) || room_id[16] || bytes8(member) || epoch u32 || bytes16(sig)
 * sig        = PSS(member key, "im v1 room leave signature" || 0x00 ||
 *                  TH("im v1 room leave", version, room_id, member, fp_member, epoch))
 * ```
 * @module
 */

import { ByteReader, ByteWriter, fromUtf8, utf8 } from "../util/mod.ts";
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
import { decoding, readRoomHead } from "./_room.ts";
import { ROOM_VERSION } from "./room_id.ts";

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
 * import { decodeRoomLeave, makeRoomLeave, verifyRoomLeave } from "./room_leave.ts";
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
 * import { decodeRoomLeave } from "./room_leave.ts";
 * assert.throws(() => decodeRoomLeave(new Uint8Array(30)), { code: "room-malformed" });
 * ```
 */
export function decodeRoomLeave(b: Uint8Array): RoomLeave {
  const what = "ROOM_LEAVE";
  return decoding(what, () => {
    const r = new ByteReader(b, what);
    const { version, roomId } = readRoomHead(r, what);
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
 * import { makeRoomLeave, verifyRoomLeave } from "./room_leave.ts";
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
