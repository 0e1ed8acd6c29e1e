/**
 * The bytes of the mailbox's files (the layout table in `mail_vault.ts`,
 * PROTOCOL.md section 9.1 "At rest" and "The peer's keys", 9.5, 9.6): the
 * encoders and parsers of `identity.cert`, `spk-<id>.cert`, `state`, `seen`,
 * `pending`, `pending.to`, `peers/<peer>.mail` and `peers/<peer>.verified`;
 * each file's size limit and how it is read; the names a crash can leave and
 * the ids the names hold; and the checks of the values a vault is given
 * (`bad-mail-value`). Pure: byte arrays in and out; a file that does not
 * parse is `mail-corrupt`, naming it. Internal to the keystore.
 * @module
 */

import { MAX_PEM_CHARS } from "../crypto/mod.ts";
import {
  isValidUsername,
  type MailIdentity,
  type PeerMailCerts,
  type SignedPrekey,
} from "../proto/mod.ts";
import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  KeyError,
  ProtocolError,
  utf8,
} from "../util/mod.ts";
import { KeyStoreError } from "./keystore_error.ts";

/** Length of a message id. */
export const MSG_ID_BYTES = 16;
/** Length of a receipt key. */
export const RK_BYTES = 32;
/** Length of an X25519 public key. */
export const KEY_BYTES = 32;
/** Length of a `seen` record: msg_id[16] || time u64. */
export const SEEN_RECORD: number = MSG_ID_BYTES + 8;
/** Length of a `pending` record: msg_id[16] || rk[32] || time u64. */
export const PENDING_RECORD: number = MSG_ID_BYTES + RK_BYTES + 8;
/** The largest prekey id (a u32 of `state`). */
export const MAX_ID = 0xffff_ffff;
/** Format byte of the files whose layout is this module's own. */
const FORMAT = 1;
/** Limit of a certificate, `state`, peer or verified file. */
const MAX_SMALL_FILE = 64 * 1024;
/** Limit of `seen`, `pending`, `pending.to` (32 days of mail at 24 bytes a message). */
const MAX_LOG_FILE = 256 * 1024 * 1024;
const MAX_FINGERPRINT_CHARS = 200;

/**
 * How a mailbox file is read: its name in messages, whether it holds
 * secrets (then group and others must not read it; else not write it), and
 * its size limit.
 */
export interface MailFileKind {
  readonly what: string;
  readonly secret: boolean;
  readonly max: number;
}

/** Each file of the mailbox, as it is read. */
export const MAIL_FILE = {
  state: { what: "state", secret: false, max: MAX_SMALL_FILE },
  identityCert: {
    what: "mail identity certificate",
    secret: false,
    max: MAX_SMALL_FILE,
  },
  spkCert: {
    what: "signed prekey certificate",
    secret: false,
    max: MAX_SMALL_FILE,
  },
  privateKey: {
    what: "mailbox private key",
    secret: true,
    max: MAX_PEM_CHARS,
  },
  seen: { what: "seen file", secret: false, max: MAX_LOG_FILE },
  pending: { what: "pending file", secret: true, max: MAX_LOG_FILE },
  pendingTo: { what: "pending file", secret: false, max: MAX_LOG_FILE },
  peerCerts: {
    what: "peer mail certificates",
    secret: false,
    max: MAX_SMALL_FILE,
  },
  verified: {
    what: "verified fingerprint",
    secret: false,
    max: MAX_SMALL_FILE,
  },
} as const satisfies Record<string, MailFileKind>;

/** A pending entry as stored. */
export interface Pending {
  msgId: Uint8Array<ArrayBuffer>;
  rk: Uint8Array<ArrayBuffer>;
  time: number;
  to?: string;
}

/** The id counters of `state`: the next id of each kind of prekey. */
export interface NextIds {
  spk: number;
  opk: number;
}

/** A certificate file: the public half of a private key, and its certificate. */
export interface CertFile {
  created: number;
  publicRaw: Uint8Array<ArrayBuffer>;
  cert: Uint8Array<ArrayBuffer>;
}

// ---- values

/**
 * The error of a value a vault was given that it cannot store.
 * @param message what was expected and what came
 * @returns a `bad-mail-value` error
 */
export function badValue(message: string): KeyError {
  return new KeyError("bad-mail-value", message);
}

/**
 * Check a prekey id.
 * @param id the id
 * @throws {KeyError} `bad-mail-value` unless 1 to {@link MAX_ID}
 */
export function checkId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 1 || id > MAX_ID) {
    throw badValue(`id: expected 1 to ${MAX_ID}, got ${id}`);
  }
}

/**
 * Check a time.
 * @param name the field, for the message
 * @param t ms since the epoch
 * @throws {KeyError} `bad-mail-value`
 */
export function checkTime(name: string, t: number): void {
  if (!Number.isSafeInteger(t) || t < 0) {
    throw badValue(`${name}: expected ms since the epoch, got ${t}`);
  }
}

/**
 * Check a field of fixed length.
 * @param name the field, for the message
 * @param b its bytes
 * @param n the length it must have
 * @throws {KeyError} `bad-mail-value`
 */
export function checkLength(name: string, b: Uint8Array, n: number): void {
  if (!(b instanceof Uint8Array) || b.length !== n) {
    throw badValue(`${name}: expected ${n} bytes, got ${b?.length}`);
  }
}

/**
 * Check a certificate.
 * @param name the field, for the message
 * @param b its bytes
 * @throws {KeyError} `bad-mail-value` unless 1 to {@link MAX_CERT_BYTES} bytes
 */
export function checkCert(name: string, b: Uint8Array): void {
  if (
    !(b instanceof Uint8Array) || b.length === 0 || b.length > MAX_CERT_BYTES
  ) {
    throw badValue(
      `${name}: expected 1 to ${MAX_CERT_BYTES} bytes, got ${b?.length}`,
    );
  }
}

/**
 * Largest certificate kept: an `IK_CERT` or `SPK_CERT` with a 4096-bit
 * signature is under 700 bytes; this bound keeps every file that holds
 * certificates far below the read limit, so what is saved can be read back.
 */
export const MAX_CERT_BYTES = 4096;

/**
 * Check a fingerprint the user verified.
 * @param fingerprint its text
 * @throws {KeyError} `bad-mail-value` unless one line of printable characters
 */
export function checkFingerprint(fingerprint: string): void {
  if (!isFingerprintText(fingerprint)) {
    throw badValue(
      `fingerprint: expected one line of at most ${MAX_FINGERPRINT_CHARS} printable characters`,
    );
  }
}

/** Is `s` one line of at most {@link MAX_FINGERPRINT_CHARS} printable ASCII characters? */
function isFingerprintText(s: string): boolean {
  return typeof s === "string" && s.length > 0 &&
    s.length <= MAX_FINGERPRINT_CHARS && /^[\x21-\x7e]+$/.test(s);
}

// ---- parsing

/**
 * The error of a mailbox file that cannot be read as its layout says.
 * @param path the file
 * @param why the reason, or what was thrown
 * @returns a `mail-corrupt` error naming the file
 */
export function corrupt(path: string, why: unknown): KeyStoreError {
  const text = typeof why === "string"
    ? why
    : why instanceof Error
    ? why.message
    : String(why);
  return new KeyStoreError(
    "mail-corrupt",
    `Cannot read mailbox file "${path}": ${text}`,
    path,
  );
}

/** Run `read` over a file's bytes; a truncated or malformed file is `mail-corrupt`. */
function parse<T>(
  path: string,
  bytes: Uint8Array,
  read: (r: ByteReader) => T,
): T {
  try {
    return read(new ByteReader(bytes, "it"));
  } catch (e) {
    if (e instanceof ProtocolError) throw corrupt(path, e.message);
    throw e;
  }
}

/** Read the format byte; any but {@link FORMAT} is `mail-corrupt`. */
function format(r: ByteReader, path: string): void {
  const v = r.u8();
  if (v !== FORMAT) throw corrupt(path, `unknown format ${v}`);
}

/** A certificate read from a file, which must not be empty. */
function nonEmpty(
  b: Uint8Array<ArrayBuffer>,
  path: string,
): Uint8Array<ArrayBuffer> {
  if (b.length === 0) throw corrupt(path, "no certificate");
  return b;
}

// ---- names

/**
 * The names a crash can leave: temporary files, and a signed prekey's
 * private key without its certificate (a save or a drop cut short).
 * @param names the names in the mailbox folder
 * @returns those to remove
 */
export function crashLeftovers(names: ReadonlySet<string>): string[] {
  const gone: string[] = [];
  for (const name of names) {
    const spk = /^spk-(\d+)\.pem$/.exec(name);
    if (name.endsWith(".tmp") || (spk && !names.has(`spk-${spk[1]}.cert`))) {
      gone.push(name);
    }
  }
  return gone;
}

/**
 * Raise the id counters above every id a file of the mailbox holds, so an
 * id is never reused even if `state` is lost.
 * @param next the counters, raised in place
 * @param names the names in the mailbox folder
 */
export function raiseNextIds(next: NextIds, names: Iterable<string>): void {
  for (const name of names) {
    const m = /^(spk|opk)-(\d+)\.(pem|cert)$/.exec(name);
    if (!m) continue;
    const kind = m[1] as "spk" | "opk", id = Number(m[2]);
    if (id >= next[kind]) next[kind] = id + 1;
  }
}

/**
 * The ids of the signed prekeys held: those with a certificate file.
 * @param names the names in the mailbox folder
 * @returns the ids, ascending
 */
export function signedPrekeyIds(names: Iterable<string>): number[] {
  return [...names]
    .map((n) => /^spk-(\d+)\.cert$/.exec(n)?.[1])
    .filter((m) => m !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

// ---- state

/**
 * `state`: u8 1 || next spk_id u32 || next opk_id u32.
 * @param next the id counters
 * @returns the file's bytes
 */
export function encodeState(next: NextIds): Uint8Array<ArrayBuffer> {
  return new ByteWriter().u8(FORMAT).u32(next.spk).u32(next.opk).finish();
}

/**
 * Parse `state`.
 * @param path the file, for the error
 * @param bytes its bytes
 * @returns the id counters
 * @throws {KeyStoreError} `mail-corrupt`
 */
export function parseState(path: string, bytes: Uint8Array): NextIds {
  return parse(path, bytes, (r) => {
    format(r, path);
    return { spk: r.u32(), opk: r.u32() };
  });
}

// ---- certificates

/**
 * `identity.cert`: u8 1 || created u64 || ik[32] || IK_CERT.
 * @param id the identity
 * @returns the file's bytes
 */
export function encodeIdentityCert(id: MailIdentity): Uint8Array<ArrayBuffer> {
  return new ByteWriter().u8(FORMAT).u64(BigInt(id.created))
    .bytes(id.pair.publicRaw).bytes(id.cert).finish();
}

/**
 * Parse `identity.cert`.
 * @param path the file, for the error
 * @param bytes its bytes
 * @returns when it was made, the public key and the certificate
 * @throws {KeyStoreError} `mail-corrupt`
 */
export function parseIdentityCert(path: string, bytes: Uint8Array): CertFile {
  return parse(path, bytes, (r) => {
    format(r, path);
    const created = Number(r.u64());
    const publicRaw = r.bytes(KEY_BYTES);
    return { created, publicRaw, cert: nonEmpty(r.rest(), path) };
  });
}

/**
 * `spk-<id>.cert`: u8 1 || created u64 || expires u64 || spk[32] || SPK_CERT.
 * @param spk the signed prekey
 * @returns the file's bytes
 */
export function encodeSignedPrekeyCert(
  spk: SignedPrekey,
): Uint8Array<ArrayBuffer> {
  return new ByteWriter().u8(FORMAT).u64(BigInt(spk.created))
    .u64(BigInt(spk.expires)).bytes(spk.pair.publicRaw).bytes(spk.cert)
    .finish();
}

/**
 * Parse `spk-<id>.cert`.
 * @param path the file, for the error
 * @param bytes its bytes
 * @returns when it was made and expires, the public key and the certificate
 * @throws {KeyStoreError} `mail-corrupt`
 */
export function parseSignedPrekeyCert(
  path: string,
  bytes: Uint8Array,
): CertFile & { expires: number } {
  return parse(path, bytes, (r) => {
    format(r, path);
    const created = Number(r.u64()), expires = Number(r.u64());
    const publicRaw = r.bytes(KEY_BYTES);
    return { created, expires, publicRaw, cert: nonEmpty(r.rest(), path) };
  });
}

// ---- seen (PROTOCOL.md 9.5)

/**
 * A `seen` record: msg_id[16] || time u64.
 * @param msgId the message id
 * @param time when it was seen
 * @returns the record
 */
export function encodeSeen(
  msgId: Uint8Array,
  time: number,
): Uint8Array<ArrayBuffer> {
  return new ByteWriter().bytes(msgId).u64(BigInt(time)).finish();
}

/**
 * Parse `seen`, keeping the records from `oldest` on; a torn last record is
 * left out.
 * @param bytes the file's bytes
 * @param oldest the earliest time kept (ms since the epoch)
 * @returns the ids kept (hex) and their records, views of `bytes`
 */
export function parseSeen(
  bytes: Uint8Array<ArrayBuffer>,
  oldest: number,
): { ids: string[]; records: Uint8Array<ArrayBuffer>[] } {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const whole = bytes.length - bytes.length % SEEN_RECORD;
  const ids: string[] = [], records: Uint8Array<ArrayBuffer>[] = [];
  for (let at = 0; at < whole; at += SEEN_RECORD) {
    const time = Number(view.getBigUint64(at + MSG_ID_BYTES));
    if (time < oldest) continue;
    records.push(bytes.subarray(at, at + SEEN_RECORD));
    ids.push(bytes.subarray(at, at + MSG_ID_BYTES).toHex());
  }
  return { ids, records };
}

// ---- pending (PROTOCOL.md 9.6)

/**
 * A `pending` record: msg_id[16] || rk[32] || time u64 (a secret: wipe it).
 * @param p the entry
 * @returns the record
 */
export function encodePending(p: Pending): Uint8Array<ArrayBuffer> {
  return new ByteWriter().bytes(p.msgId).bytes(p.rk).u64(BigInt(p.time))
    .finish();
}

/**
 * A `pending.to` record: msg_id[16] || bytes8(to).
 * @param msgId the message id
 * @param to the recipient
 * @returns the record
 */
export function encodePendingTo(
  msgId: Uint8Array,
  to: string,
): Uint8Array<ArrayBuffer> {
  return new ByteWriter().bytes(msgId).bytes8(utf8(to)).finish();
}

/**
 * Both files of pending entries, whole.
 * @param all the entries
 * @returns `pending` (a secret: wipe it) and `pending.to`
 */
export function encodePendingFiles(
  all: Iterable<Pending>,
): { bytes: Uint8Array<ArrayBuffer>; toBytes: Uint8Array<ArrayBuffer> } {
  const w = new ByteWriter(), to = new ByteWriter();
  for (const p of all) {
    w.bytes(p.msgId).bytes(p.rk).u64(BigInt(p.time));
    if (p.to !== undefined) to.bytes(p.msgId).bytes8(utf8(p.to));
  }
  return { bytes: w.finish(), toBytes: to.finish() };
}

/**
 * Parse `pending`; a torn last record is left out. The entries are copies,
 * so `bytes` can be wiped.
 * @param bytes the file's bytes
 * @returns the entries in file order, and the length of the whole records
 */
export function parsePending(
  bytes: Uint8Array<ArrayBuffer>,
): { entries: Pending[]; whole: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const whole = bytes.length - bytes.length % PENDING_RECORD;
  const entries: Pending[] = [];
  for (let at = 0; at < whole; at += PENDING_RECORD) {
    const msgId = bytes.slice(at, at + MSG_ID_BYTES);
    const rk = bytes.slice(at + MSG_ID_BYTES, at + MSG_ID_BYTES + RK_BYTES);
    const time = Number(view.getBigUint64(at + MSG_ID_BYTES + RK_BYTES));
    entries.push({ msgId, rk, time });
  }
  return { entries, whole };
}

/**
 * Parse `pending.to` into the entries its records name.
 * @param to the file's bytes
 * @param pending the entries of `pending`, by msg_id in hex; each record sets its `to`
 * @returns false when the file wants rewriting: a torn last record, or a
 *   record of an entry dropped since, or one that is not a user name
 */
export function applyPendingTo(
  to: Uint8Array,
  pending: ReadonlyMap<string, Pending>,
): boolean {
  let clean = true;
  for (let at = 0; at < to.length;) {
    const len = to[at + MSG_ID_BYTES];
    const end = at + MSG_ID_BYTES + 1 + (len ?? 0);
    if (len === undefined || end > to.length) {
      clean = false; // a torn last record
      break;
    }
    const p = pending.get(to.subarray(at, at + MSG_ID_BYTES).toHex());
    const name = new TextDecoder().decode(to.subarray(end - len, end));
    if (p && isValidUsername(name)) p.to = name;
    else clean = false; // an entry dropped since, or not a name
    at = end;
  }
  return clean;
}

// ---- peers (PROTOCOL.md 9.1 "The peer's keys")

/**
 * `peers/<peer>.mail`: u8 1 || u32 n || IK_CERT[n] || u32 m || SPK_CERT[m]
 * (m = 0: none).
 * @param certs the peer's certificates
 * @returns the file's bytes
 */
export function encodePeerCerts(certs: PeerMailCerts): Uint8Array<ArrayBuffer> {
  const spk = certs.signedPrekeyCert;
  return new ByteWriter().u8(FORMAT).u32(certs.identityCert.length)
    .bytes(certs.identityCert).u32(spk?.length ?? 0)
    .bytes(spk ?? new Uint8Array()).finish();
}

/**
 * Parse `peers/<peer>.mail`.
 * @param path the file, for the error
 * @param bytes its bytes
 * @returns the peer's certificates
 * @throws {KeyStoreError} `mail-corrupt`
 */
export function parsePeerCerts(
  path: string,
  bytes: Uint8Array,
): PeerMailCerts {
  return parse(path, bytes, (r) => {
    format(r, path);
    const identityCert = nonEmpty(r.bytes(r.u32()), path);
    const spk = r.bytes(r.u32());
    r.end();
    return spk.length > 0
      ? { identityCert, signedPrekeyCert: spk }
      : { identityCert };
  });
}

/**
 * `peers/<peer>.verified`: the fingerprint, one line.
 * @param fingerprint a fingerprint {@link checkFingerprint} passed
 * @returns the file's bytes
 */
export function encodeFingerprint(
  fingerprint: string,
): Uint8Array<ArrayBuffer> {
  return utf8(`${fingerprint}\n`);
}

/**
 * Parse `peers/<peer>.verified`.
 * @param path the file, for the error
 * @param bytes its bytes
 * @returns the fingerprint
 * @throws {KeyStoreError} `mail-corrupt`
 */
export function parseFingerprint(path: string, bytes: Uint8Array): string {
  let text: string;
  try {
    text = fromUtf8(bytes, `verified fingerprint "${path}"`);
  } catch (e) {
    throw corrupt(path, e);
  }
  const fp = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (!isFingerprintText(fp)) {
    throw corrupt(path, "not one line of a fingerprint");
  }
  return fp;
}
