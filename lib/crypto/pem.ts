/**
 * PEM armour (RFC 7468, strict form) for the two key files `im` reads and
 * writes (PROTOCOL.md section 1, "Primitives": PKCS#8 `PRIVATE KEY` and SPKI
 * `PUBLIC KEY`, readable by `openssl pkey`).
 *
 * Decoding is strict: one block, nothing around it, standard base64, and a
 * DER SEQUENCE that fills the body exactly. Every failure is a
 * {@link KeyError} `bad-pem` naming what is wrong; a key in a format people
 * are likely to hand us by mistake (PKCS#1, OpenSSH, encrypted) gets a hint
 * with the conversion command.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pemDecode, pemEncode } from "./pem.ts";
 * const der = new Uint8Array([0x30, 0x01, 0x05]);
 * assert.deepEqual(pemDecode(pemEncode("PUBLIC KEY", der), "PUBLIC KEY"), der);
 * ```
 * @module
 */

import { KeyError } from "../util/mod.ts";
import { readTlv } from "./_der.ts";
import { reason } from "./_util.ts";

/** A PEM file larger than this is refused before it is parsed. */
export const MAX_PEM_CHARS = 64 * 1024;

/** The two PEM labels `im` reads and writes (RFC 7468 sections 10 and 13). */
export type PemLabel = "PRIVATE KEY" | "PUBLIC KEY";

/** Hints for PEM labels people are likely to hand us by mistake. */
const LABEL_HINTS: Record<string, string> = {
  "RSA PRIVATE KEY":
    'convert the PKCS#1 key with "openssl pkcs8 -topk8 -nocrypt -in FILE -out private.pem"',
  "ENCRYPTED PRIVATE KEY":
    'im needs an unencrypted key: "openssl pkey -in FILE -out private.pem"',
  "OPENSSH PRIVATE KEY":
    'convert the OpenSSH key with "ssh-keygen -p -m PKCS8 -f FILE"',
  "RSA PUBLIC KEY":
    'convert the PKCS#1 key with "openssl rsa -RSAPublicKey_in -in FILE -pubout -out public.pem"',
  "PRIVATE KEY": "this is a private key; give the public.pem file instead",
  "PUBLIC KEY": "this is a public key; give the private.pem file instead",
};

/**
 * Encode DER as PEM with 64-character base64 lines (RFC 7468 section 2).
 * @param label `PRIVATE KEY` or `PUBLIC KEY`
 * @param der the DER bytes
 * @returns PEM text ending in a newline
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pemEncode } from "./pem.ts";
 * const pem = pemEncode("PUBLIC KEY", new Uint8Array([0x30, 0x00]));
 * assert(pem === "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n");
 * ```
 */
export function pemEncode(label: PemLabel, der: Uint8Array): string {
  const b64 = der.toBase64();
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${
    lines.join("\n")
  }\n-----END ${label}-----\n`;
}

/**
 * Decode one PEM block strictly: exactly one `-----BEGIN label-----` /
 * `-----END label-----` pair with nothing but whitespace around it, a body of
 * standard base64 (lines of any length, CRLF allowed), and a DER SEQUENCE
 * that fills the body exactly.
 * @param pem PEM text
 * @param label the label expected
 * @param source what the text is, for error messages (e.g. a file path)
 * @returns the DER bytes
 * @throws {KeyError} `bad-pem` naming what is wrong: missing header or footer,
 *   wrong label, text around the block, bad base64, trailing data
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pemDecode, pemEncode } from "./pem.ts";
 * const der = new Uint8Array([0x30, 0x01, 0x05]);
 * assert(pemDecode(pemEncode("PUBLIC KEY", der), "PUBLIC KEY")[2] === 5);
 * ```
 */
export function pemDecode(
  pem: string,
  label: PemLabel,
  source = "PEM input",
): Uint8Array<ArrayBuffer> {
  function fail(why: string, hint?: string): never {
    throw new KeyError("bad-pem", `Cannot read ${source}: ${why}`, hint);
  }
  if (typeof pem !== "string") fail("expected PEM text");
  if (pem.length > MAX_PEM_CHARS) {
    fail(`${pem.length} characters exceeds the limit of ${MAX_PEM_CHARS}`);
  }
  const lines = pem.split(/\r?\n/).map((l) => l.trim());
  while (lines.length > 0 && lines[0] === "") lines.shift();
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const first = lines[0] ?? "";
  if (first !== begin) {
    const found = /^-----BEGIN ([A-Z0-9 ]+)-----$/.exec(first);
    if (found) {
      fail(
        `expected "${label}" PEM, found "${found[1]}"`,
        LABEL_HINTS[found[1]!],
      );
    }
    if (/^ssh-(rsa|ed25519|dss) /.test(first) || first.startsWith("ecdsa-")) {
      fail(
        `expected "${label}" PEM, found an OpenSSH public key`,
        'convert it with "ssh-keygen -e -m PKCS8 -f FILE"',
      );
    }
    if (lines.some((l) => l === begin)) {
      fail(`unexpected text before the "${begin}" line`);
    }
    fail(`no "${begin}" line`);
  }
  const endAt = lines.indexOf(end);
  if (endAt < 0) fail(`no "${end}" line`);
  if (endAt !== lines.length - 1) {
    fail(`unexpected text after the "${end}" line`);
  }
  const body = lines.slice(1, endAt);
  if (body.length === 0) fail("empty PEM body");
  for (let i = 0; i < body.length; i++) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body[i]!)) {
      fail(`invalid base64 on line ${i + 2}`);
    }
  }
  const b64 = body.join("");
  if (/=[^=]/.test(b64) || b64.length % 4 !== 0) {
    fail("invalid base64: bad padding or length");
  }
  let der: Uint8Array<ArrayBuffer>;
  try {
    der = Uint8Array.fromBase64(b64, { lastChunkHandling: "strict" });
  } catch {
    return fail("invalid base64: non-zero padding bits");
  }
  try {
    const top = readTlv(der, 0);
    if (top.tag !== 0x30) fail("PEM body is not a DER SEQUENCE");
    if (top.next !== der.length) {
      fail(
        `${
          der.length - top.next
        } bytes of trailing data after the DER structure`,
      );
    }
  } catch (e) {
    if (e instanceof KeyError) throw e;
    fail(`PEM body is not valid DER: ${reason(e)}`);
  }
  return der;
}
