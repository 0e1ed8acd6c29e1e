/**
 * Messages carried inside DATA records (PROTOCOL.md "Messages"): UTF-8 JSON
 * objects with a `t` field naming the message. After login every one of them
 * travels encrypted (rule 3.6). The decoder checks every field's type, so
 * the rest of the program only ever sees well-formed values.
 *
 * A facade over its parts, each with one job:
 * - message_schemas.ts: every message of each direction and its fields'
 *   checked types, the limits, and the message types derived from them;
 * - message_decode.ts: the decoder, one check per field type;
 * - message_encode.ts: the encoder, and an answer naming its request;
 * - message_docs.ts: the words of PROTOCOL.md section 5's tables
 *   (documentation only; `deno task spec`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeMessage } from "./messages.ts";
 * const m = decodeMessage(encodeMessage({ t: "session", peer: "A" }));
 * assert.ok(m.t === "session");
 * ```
 * @module
 */

export {
  CLIENT_TO_SERVER,
  type ClientToServer,
  type DeliveredProof,
  type FieldType,
  MAX_ACK_COUNT,
  MAX_LIST_LIMIT,
  MAX_REQUEST_ID,
  type Message,
  type MessageType,
  PEER_TO_PEER,
  type PeerToPeer,
  type ReceiptStatus,
  type RefusalReason,
  type RequestId,
  type RoomBundle,
  type RoomSummary,
  SERVER_TO_CLIENT,
  type ServerToClient,
  type UserEntry,
  type UserState,
} from "./message_schemas.ts";
export {
  decodeClientToServer,
  decodeMessage,
  decodePeerToPeer,
  decodeServerToClient,
} from "./message_decode.ts";
export { answerTo, encodeMessage } from "./message_encode.ts";
export {
  FIELD_TYPE_DOCS,
  MESSAGE_DOCS,
  type MessageDoc,
} from "./message_docs.ts";
