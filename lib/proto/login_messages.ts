/**
 * Login messages (PROTOCOL.md "Login"): the four cleartext frames of the
 * handshake and the cleartext error frame. Pure codecs: bytes in, values out,
 * or a {@link ProtocolError}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeClientHello, encodeClientHello } from "./login_messages.ts";
 * const hello = { version: 1, user: "A", nonce: new Uint8Array(32), ephemeral: new Uint8Array(32) };
 * assert.ok(decodeClientHello(encodeClientHello(hello)).user === "A");
 * ```
 * @module
 */

import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  ProtocolError,
  utf8,
} from "../util/mod.ts";
import { FrameKind } from "../wire/mod.ts";
import { X25519_PUBLIC_BYTES } from "../crypto/mod.ts";

/** The protocol version this code speaks. */
export const PROTOCOL_VERSION = 1;
/** Bytes of each side's nonce, rule 2.1. */
export const NONCE_BYTES = 32;

/** CLIENT_HELLO: who I am, my nonce, my ephemeral key. */
export interface ClientHello {
  version: number;
  user: string;
  nonce: Uint8Array;
  ephemeral: Uint8Array;
}

/** SERVER_HELLO: server nonce, ephemeral key, public key and its signature over the transcript (rule 2.2). */
export interface ServerHello {
  version: number;
  nonce: Uint8Array;
  ephemeral: Uint8Array;
  serverPublicKey: Uint8Array;
  signature: Uint8Array;
}

/** CLIENT_AUTH: the client's signature over the transcript (rule 2.3). */
export interface ClientAuth {
  signature: Uint8Array;
}

/** SERVER_KEY: the session key under RSA-OAEP (rule 2.5). */
export interface ServerKey {
  sealedSessionKey: Uint8Array;
  /** HMAC of the sealed key under a key from the X25519 secret (PROTOCOL.md section 3). */
  tag: Uint8Array;
}

/** Bytes of {@link ServerKey.tag}. */
export const SERVER_KEY_TAG_BYTES = 32;

/** Codes of the cleartext ERROR frame (before keys exist; afterwards errors are records, rule 3.6). */
export const ErrorCode = {
  PROTOCOL: 1,
  AUTH_FAILED: 2,
  VERSION: 3,
  TOO_MANY: 4,
  TIMEOUT: 5,
  RATE_LIMITED: 6,
  SHUTDOWN: 7,
  BAD_USERNAME: 8,
} as const;

/** One of the values of {@link ErrorCode}. */
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** ERROR frame: a code and one line of text. */
export interface ErrorFrame {
  code: number;
  message: string;
}

function reader(payload: Uint8Array, kind: number, what: string): ByteReader {
  const r = new ByteReader(payload, what);
  const k = r.u8();
  if (k !== kind) {
    throw new ProtocolError(
      "unexpected-frame",
      `Expected ${what} (kind ${kind}), got frame kind ${k}`,
    );
  }
  return r;
}

function fixed(r: ByteReader, n: number): Uint8Array {
  return r.bytes(n);
}

/**
 * @param m the hello
 * @returns the frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeClientHello } from "./login_messages.ts";
 * const p = encodeClientHello({ version: 1, user: "B", nonce: new Uint8Array(32), ephemeral: new Uint8Array(32) });
 * assert.ok(p[0] === 0x01);
 * ```
 */
export function encodeClientHello(m: ClientHello): Uint8Array {
  return new ByteWriter().u8(FrameKind.CLIENT_HELLO).u8(m.version).bytes8(
    utf8(m.user),
  )
    .bytes(m.nonce).bytes(m.ephemeral).finish();
}

/**
 * @param p frame payload
 * @returns the hello (the username is not yet checked against rule 2.9)
 * @throws {ProtocolError} truncated, trailing bytes, bad UTF-8 or wrong kind
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeClientHello } from "./login_messages.ts";
 * assert.throws(() => decodeClientHello(new Uint8Array([1, 1])), { name: "ProtocolError" });
 * ```
 */
export function decodeClientHello(p: Uint8Array): ClientHello {
  const r = reader(p, FrameKind.CLIENT_HELLO, "CLIENT_HELLO");
  const version = r.u8();
  const userBytes = r.bytes8();
  const user = fromUtf8(userBytes, "username");
  const nonce = fixed(r, NONCE_BYTES);
  const ephemeral = fixed(r, X25519_PUBLIC_BYTES);
  r.end();
  return { version, user, nonce, ephemeral };
}

/**
 * @param m the hello
 * @returns the frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeServerHello, encodeServerHello } from "./login_messages.ts";
 * const m = { version: 1, nonce: new Uint8Array(32), ephemeral: new Uint8Array(32), serverPublicKey: new Uint8Array(3), signature: new Uint8Array(4) };
 * assert.ok(decodeServerHello(encodeServerHello(m)).signature.length === 4);
 * ```
 */
export function encodeServerHello(m: ServerHello): Uint8Array {
  return new ByteWriter().u8(FrameKind.SERVER_HELLO).u8(m.version).bytes(
    m.nonce,
  )
    .bytes(m.ephemeral).bytes16(m.serverPublicKey).bytes16(m.signature)
    .finish();
}

/**
 * @param p frame payload
 * @returns the hello
 * @throws {ProtocolError} on any malformation
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeServerHello } from "./login_messages.ts";
 * assert.throws(() => decodeServerHello(new Uint8Array([2])), { name: "ProtocolError" });
 * ```
 */
export function decodeServerHello(p: Uint8Array): ServerHello {
  const r = reader(p, FrameKind.SERVER_HELLO, "SERVER_HELLO");
  const version = r.u8();
  const nonce = fixed(r, NONCE_BYTES);
  const ephemeral = fixed(r, X25519_PUBLIC_BYTES);
  const serverPublicKey = r.bytes16();
  const signature = r.bytes16();
  r.end();
  return { version, nonce, ephemeral, serverPublicKey, signature };
}

/**
 * @param m the auth message
 * @returns the frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeClientAuth, encodeClientAuth } from "./login_messages.ts";
 * assert.ok(decodeClientAuth(encodeClientAuth({ signature: new Uint8Array(5) })).signature.length === 5);
 * ```
 */
export function encodeClientAuth(m: ClientAuth): Uint8Array {
  return new ByteWriter().u8(FrameKind.CLIENT_AUTH).bytes16(m.signature)
    .finish();
}

/**
 * @param p frame payload
 * @returns the auth message
 * @throws {ProtocolError} on any malformation
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeClientAuth } from "./login_messages.ts";
 * assert.throws(() => decodeClientAuth(new Uint8Array([3, 0, 9])), { name: "ProtocolError" });
 * ```
 */
export function decodeClientAuth(p: Uint8Array): ClientAuth {
  const r = reader(p, FrameKind.CLIENT_AUTH, "CLIENT_AUTH");
  const signature = r.bytes16();
  r.end();
  return { signature };
}

/**
 * @param m the sealed session key
 * @returns the frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeServerKey } from "./login_messages.ts";
 * assert.ok(encodeServerKey({ sealedSessionKey: new Uint8Array(1), tag: new Uint8Array(32) })[0] === 0x04);
 * ```
 */
export function encodeServerKey(m: ServerKey): Uint8Array {
  if (m.tag.length !== SERVER_KEY_TAG_BYTES) {
    throw new ProtocolError("bad-field", "SERVER_KEY tag must be 32 bytes");
  }
  return new ByteWriter().u8(FrameKind.SERVER_KEY).bytes16(m.sealedSessionKey)
    .bytes(m.tag).finish();
}

/**
 * @param p frame payload
 * @returns the sealed session key
 * @throws {ProtocolError} on any malformation
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeServerKey, encodeServerKey } from "./login_messages.ts";
 * assert.ok(decodeServerKey(encodeServerKey({ sealedSessionKey: new Uint8Array(2), tag: new Uint8Array(32) })).sealedSessionKey.length === 2);
 * ```
 */
export function decodeServerKey(p: Uint8Array): ServerKey {
  const r = reader(p, FrameKind.SERVER_KEY, "SERVER_KEY");
  const sealedSessionKey = r.bytes16();
  const tag = r.bytes(SERVER_KEY_TAG_BYTES);
  r.end();
  return { sealedSessionKey, tag };
}

/**
 * @param m code and text (text is cut to 1,000 characters, never inside one)
 * @returns the frame payload
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeErrorFrame, encodeErrorFrame } from "./login_messages.ts";
 * assert.ok(decodeErrorFrame(encodeErrorFrame({ code: 2, message: "no" })).message === "no");
 * ```
 */
export function encodeErrorFrame(m: ErrorFrame): Uint8Array {
  return new ByteWriter().u8(FrameKind.ERROR).u8(m.code).bytes16(
    utf8(Array.from(m.message).slice(0, 1000).join("")),
  )
    .finish();
}

/**
 * @param p frame payload
 * @returns code and text
 * @throws {ProtocolError} on any malformation
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeErrorFrame } from "./login_messages.ts";
 * assert.throws(() => decodeErrorFrame(new Uint8Array([0x0e])), { name: "ProtocolError" });
 * ```
 */
export function decodeErrorFrame(p: Uint8Array): ErrorFrame {
  const r = reader(p, FrameKind.ERROR, "ERROR");
  const code = r.u8();
  const message = fromUtf8(r.bytes16(), "error message");
  r.end();
  return { code, message };
}
