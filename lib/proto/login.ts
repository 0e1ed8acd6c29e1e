/**
 * The login handshake (PROTOCOL.md section 3, "Login"; requirements section
 * 2) as two explicit state machines with no I/O: each step takes the peer's
 * frame payload and returns the payloads to send. The socket loops live in
 * `lib/client` and `lib/server`.
 *
 * ```
 * client                                   server
 * CLIENT_HELLO  user, nonce_c, eph_c  -->
 *               <--  SERVER_HELLO  nonce_s, eph_s, server key, sig_s(th)
 * verifyServerSignature (pinned key, rule 2.2)
 * CLIENT_AUTH   sig_c(th)             -->  verifyClientSignature (rule 2.3, 2.4)
 *               <--  SERVER_KEY  OAEP(session key), FINISHED record (2.5, 2.7)
 * deriveKeys, check FINISHED
 * FINISHED record                     -->  check FINISHED: logged in
 * ```
 *
 * The login is split by side:
 * - this file: what both sides share and callers see (the constants, the
 *   {@link LoginResult}, the mapping between errors and ERROR frames);
 * - `_login.ts`: the transcript hash, the signed content and the key
 *   schedule (PROTOCOL.md section 3, "Transcript hashes", "Key schedule");
 * - `login_client.ts`: `ClientHandshake` ("Client states");
 * - `login_server.ts`: `ServerHandshake` ("Server states");
 * - `login_decoys.ts`: `LoginDecoys`, what an unknown user's signature is
 *   checked against (rule 2.4);
 * - `login_messages.ts`: the frames.
 *
 * @example
 * ```ts ignore
 * const client = new ClientHandshake({ user: "A", identity, pinnedServer });
 * const hello = await client.start();
 * ```
 * @module
 */

import {
  AuthError,
  type ImError,
  isImError,
  ProtocolError,
} from "../util/mod.ts";
import type { RecordOpener, RecordSealer } from "../record/mod.ts";
import { decodeErrorFrame, ErrorCode } from "./login_messages.ts";
import type { TicketKeys } from "./ticket.ts";

/** Bytes of the session key the server makes (rule 2.5). */
export const SESSION_KEY_BYTES = 32;

/** Rule 1.2: how long a login may take, from TCP connect to FINISHED, on either side (default). */
export const LOGIN_TIMEOUT_MS = 10_000;

/** What a finished login gives both sides. */
export interface LoginResult {
  user: string;
  /** Seals our direction (client: c2s, server: s2c). */
  sealer: RecordSealer;
  /** Opens the other direction. */
  opener: RecordOpener;
  /** Keys that seal tickets for this user (rule 4.2). */
  ticketKeys: TicketKeys;
  /** Final transcript hash (identifies the login; never secret). */
  transcript: Uint8Array;
  /**
   * Fingerprint of the key the other side proved it holds: the client's on
   * the server, the (pinned) server's on the client.
   */
  peerFingerprint: string;
}

/** Options shared by both sides. */
export interface HandshakeOptions {
  /** Freshness window of the records, rule 3.5. */
  windowMs?: number;
  /** This side's clock (ms), for the FINISHED records; tests skew it. */
  now?: () => number;
}

/**
 * The ERROR frame code a server sends for a login that failed with `e`
 * (PROTOCOL.md "Errors"): the inverse of {@link errorFromFrame}, kept beside
 * it so both directions of the mapping live in one place.
 * @param e what the login failed with
 * @returns the frame's code
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorFrameCode } from "./login.ts";
 * import { ErrorCode } from "./login_messages.ts";
 * assert.equal(errorFrameCode(new Error("boom")), ErrorCode.PROTOCOL);
 * ```
 */
export function errorFrameCode(e: unknown): ErrorCode {
  if (!isImError(e)) return ErrorCode.PROTOCOL;
  if (e.code === "version") return ErrorCode.VERSION;
  if (e.code === "bad-username") return ErrorCode.BAD_USERNAME;
  if (e instanceof AuthError) return ErrorCode.AUTH_FAILED;
  return ErrorCode.PROTOCOL;
}

/**
 * Turn a cleartext ERROR frame from the server into a typed error.
 * @param payload an ERROR frame payload
 * @returns the error to throw
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { errorFromFrame } from "./login.ts";
 * import { encodeErrorFrame, ErrorCode } from "./login_messages.ts";
 * const e = errorFromFrame(encodeErrorFrame({ code: ErrorCode.AUTH_FAILED, message: "no" }));
 * assert.equal(e.code, "login-failed");
 * ```
 */
export function errorFromFrame(payload: Uint8Array): ImError {
  let code: number, message: string;
  try {
    ({ code, message } = decodeErrorFrame(payload));
  } catch (e) {
    return e as ProtocolError;
  }
  switch (code) {
    case ErrorCode.AUTH_FAILED:
      return new AuthError(
        "login-failed",
        `Server refused the login: ${message}`,
        "check the username and that your private key is the one enrolled on the server",
      );
    case ErrorCode.RATE_LIMITED:
      return new AuthError(
        "rate-limited",
        `Server refused the login: ${message}`,
        "wait and try again",
      );
    case ErrorCode.BAD_USERNAME:
      return new AuthError(
        "bad-username",
        `Server refused the login: ${message}`,
      );
    case ErrorCode.TOO_MANY:
      return new ProtocolError(
        "server-busy",
        `Server is busy: ${message}`,
        "try again in a moment",
      );
    case ErrorCode.SHUTDOWN:
      return new ProtocolError(
        "server-shutdown",
        `Server is shutting down: ${message}`,
      );
    case ErrorCode.TIMEOUT:
      return new ProtocolError(
        "login-timeout",
        `Server closed the login: ${message}`,
      );
    case ErrorCode.VERSION:
      return new ProtocolError(
        "version",
        `Server refused the protocol version: ${message}`,
      );
    default:
      return new ProtocolError(
        "server-error",
        `Server reported an error: ${message}`,
      );
  }
}
