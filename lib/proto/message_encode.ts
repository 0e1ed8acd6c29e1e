/**
 * What goes out: a message of PROTOCOL.md section 5 as the UTF-8 JSON of a
 * DATA record, and the server's answer naming the request it answers
 * (section 5.1). The types of message_schemas.ts make sure only well-formed
 * messages are encoded; message_decode.ts checks what comes in.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessage } from "./message_encode.ts";
 * assert.equal(new TextDecoder().decode(encodeMessage({ t: "unhost" })), '{"t":"unhost"}');
 * ```
 * @module
 */

import { utf8 } from "../util/mod.ts";
import type {
  ClientToServer,
  Message,
  ServerToClient,
} from "./message_schemas.ts";

/**
 * The server's answer to a request, naming it: `req` is copied from the
 * request when it has one (PROTOCOL.md section 5.1).
 * @param request what the client sent
 * @param answer the answer
 * @returns the answer, with the request's id
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { answerTo } from "./message_encode.ts";
 * const a = answerTo({ t: "list", req: 7 }, { t: "users", users: [], more: 0 });
 * assert.equal(a.req, 7);
 * ```
 */
export function answerTo(
  request: ClientToServer,
  answer: ServerToClient,
): ServerToClient {
  return request.req === undefined ? answer : { ...answer, req: request.req };
}

/**
 * Encode a message as UTF-8 JSON.
 * @param m the message
 * @returns bytes for a DATA record
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMessage } from "./message_encode.ts";
 * assert.equal(encodeMessage({ t: "list" }).length, 12);
 * ```
 */
export function encodeMessage(m: Message): Uint8Array {
  return utf8(JSON.stringify(m));
}
