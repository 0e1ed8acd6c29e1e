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
 * The room's signed statements are split by job; this file gathers them
 * for callers:
 * - `room_id.ts`: {@link ROOM_VERSION}, {@link ROOM_ID_BYTES}, `roomIdHex`;
 * - `room_member_list.ts`: {@link RoomList}, its limits, `makeRoomList`,
 *   `decodeRoomList`, `verifyRoomList`, `membersAt`;
 * - `room_leave.ts`: {@link RoomLeave}, `makeRoomLeave`, `decodeRoomLeave`,
 *   `verifyRoomLeave`;
 * - `_room_list.ts`: the refusals and field checks they share.
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

export * from "./room_id.ts";
export * from "./room_leave.ts";
export * from "./room_member_list.ts";
