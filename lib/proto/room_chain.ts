/**
 * Sender chains (PROTOCOL.md section 10.2): for each room and epoch at
 * which it is a member, a member keeps a chain of message keys and hands
 * its current position to every other member, once, as a `ROOM_KEY` sealed
 * in a mail of plaintext type 2 (section 9).
 *
 * ```
 * mk_i     = HKDF(ck_i, room_id, "im v1 room message")
 * ck_{i+1} = HKDF(ck_i, room_id, "im v1 room chain")
 * ROOM_KEY = u8 version || room_id[16] || bytes8(name) || epoch u32 || index u32
 *            || ck_index[32] || ed25519_public[32]
 * ```
 *
 * {@link SenderChain} is our own chain; {@link ReceiverChain} another
 * member's, as we hold it: keys derived ahead and kept for messages that
 * arrive out of order (at most {@link ROOM_MAX_SKIP}), each used once.
 * Chain keys are wiped as soon as the next one is derived (forward secrecy
 * inside the chain). Pure: no I/O; the states are JSON for the caller to
 * keep.
 *
 * The chains are split by job; this file gathers them for callers:
 * - `room_key.ts`: {@link RoomKey}, `encodeRoomKey`, `decodeRoomKey`;
 * - `room_sender_chain.ts`: {@link SenderChain};
 * - `room_receiver_chain.ts`: {@link ReceiverChain}, {@link ROOM_MAX_SKIP};
 * - `_room_chain.ts`: the checks and the two derivations they share.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ReceiverChain, SenderChain } from "./room_chain.ts";
 * const roomId = new Uint8Array(16).fill(3);
 * const mine = SenderChain.fresh(roomId);
 * const { index, chainKey } = mine.current();
 * const theirs = new ReceiverChain({
 *   roomId, name: "team", epoch: 1, index, chainKey, signingKey: new Uint8Array(32),
 * });
 * const m0 = mine.next(), m1 = mine.next();
 * assert.deepEqual(theirs.keyFor(1), m1.messageKey); // out of order
 * theirs.use(1);
 * assert.deepEqual(theirs.keyFor(0), m0.messageKey);
 * ```
 * @module
 */

export * from "./room_key.ts";
export * from "./room_receiver_chain.ts";
export * from "./room_sender_chain.ts";
