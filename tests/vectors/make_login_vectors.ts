/**
 * Generates `login_vectors.json`: one complete login (PROTOCOL.md section 3)
 * with fixed inputs, every message and every derived key, so a new
 * implementation can check each step offline (issue 17 item 11).
 *
 * Everything here is built straight from PROTOCOL.md with WebCrypto and the
 * MD-CFB and HMAC primitives, not with `lib/proto`:
 * `tests/login_vectors_test.ts` then checks that the real login code
 * reproduces every byte.
 *
 * Fixed inputs: two 2048-bit RSA key pairs (PKCS#8 and SPKI PEM), both
 * nonces, both X25519 private keys (RFC 7748 scalars), the session key and
 * the FINISHED timestamps. RSA-PSS signatures and RSA-OAEP ciphertexts are
 * randomized, so they cannot be recomputed: they were made once and are
 * inputs too. An implementation checks them (the signatures verify, the
 * ciphertext opens to the session key), it does not compare them.
 *
 * Run: `deno run --allow-read=tests/vectors --allow-write=tests/vectors
 * tests/vectors/make_login_vectors.ts` rebuilds the file from its own fixed
 * inputs (the keys, signatures and ciphertext already in it) and changes
 * nothing unless this script changed. `--fresh` makes new RSA keys,
 * signatures and a new ciphertext.
 * @module
 */

import { HmacSha256, MdCfb, pemDecode, pemEncode, sha256 } from "../../lib/crypto/mod.ts";

/** The file this script writes. */
export const LOGIN_VECTORS_FILE = new URL("./login_vectors.json", import.meta.url);

/** Inputs of the login, hex unless said otherwise. */
export interface LoginInputs {
  version: number;
  /** The username (rule 2.9). */
  user: string;
  clientPrivateKeyPem: string;
  clientPublicKeyPem: string;
  serverPrivateKeyPem: string;
  serverPublicKeyPem: string;
  nonce_c: string;
  nonce_s: string;
  /** X25519 private keys: 32-byte scalars as RFC 7748 takes them (clamped when used). */
  eph_c_private: string;
  eph_s_private: string;
  session_key: string;
  /** RSA-PSS-SHA256 (salt 32) by the server over `server_signed`: randomized, made once; check it, do not compare. */
  sig_s: string;
  /** RSA-PSS-SHA256 (salt 32) by the client over `client_signed`: the same. */
  sig_c: string;
  /** RSA-OAEP-SHA256 of session_key under the client key, label "im v1 session key": randomized, made once; it must open to session_key. */
  oaep_ciphertext: string;
  /** Timestamps (ms since the epoch) in the two FINISHED records. */
  finished_timestamp_s2c: number;
  finished_timestamp_c2s: number;
}

/** Every value of the login, hex. */
export interface LoginOutputs {
  eph_c: string;
  eph_s: string;
  /** SPKI DER of the server key (what SERVER_HELLO carries). */
  server_spki: string;
  /** H(server SPKI DER), 32 raw bytes. */
  fp_server: string;
  /** The same as ssh prints it. */
  fp_server_text: string;
  /** Frame payloads (kind byte first, no u32 length). */
  client_hello: string;
  th: string;
  /** `"im v1 server signature" || 0x00 || th`. */
  server_signed: string;
  server_hello: string;
  /** `"im v1 client signature" || 0x00 || th`. */
  client_signed: string;
  client_auth: string;
  /** HMAC-SHA256(HKDF(x25519_shared, th, "im v1 server key tag"), oaep_ciphertext). */
  server_key_tag: string;
  server_key: string;
  th2: string;
  /** X25519(eph_c_private, eph_s) = X25519(eph_s_private, eph_c). */
  x25519_shared: string;
  /** session_key || x25519_shared. */
  ikm: string;
  keys: {
    c2s: { enc: string; iv: string; mac: string };
    s2c: { enc: string; iv: string; mac: string };
    ticket: { enc: string; mac: string };
  };
  /** RECORD payloads: FINISHED (type 1), seq 0, body th2, at the fixed timestamps. */
  server_finished: string;
  client_finished: string;
  /** The frames on the wire, u32 length first, in order. */
  wire: Array<{ dir: "c2s" | "s2c"; frame: string }>;
}

/** The whole file. */
export interface LoginVectorFile {
  description: string;
  notes: string[];
  inputs: LoginInputs;
  outputs: LoginOutputs;
}

const te = new TextEncoder();
const hex = (b: Uint8Array) => b.toHex();
const unhex = (s: string) => Uint8Array.fromHex(s);

function fixed(label: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(sha256(te.encode(`im test vector login ${label}`)));
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u8(n: number): Uint8Array {
  return Uint8Array.of(n);
}

function u16(n: number): Uint8Array {
  return Uint8Array.of(n >> 8, n & 0xff);
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n);
  return b;
}

/** `bytes8(x)`, `bytes16(x)` of PROTOCOL.md's notation. */
const bytes8 = (x: Uint8Array) => concat(u8(x.length), x);
const bytes16 = (x: Uint8Array) => concat(u16(x.length), x);

async function H(b: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>));
}

/** TH(label, parts...) of PROTOCOL.md section 3. */
async function TH(label: string, ...parts: Uint8Array[]): Promise<Uint8Array<ArrayBuffer>> {
  return await H(concat(...[te.encode(label), ...parts].flatMap((p) => [u32(p.length), p])));
}

async function HMAC(key: Uint8Array, data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data as Uint8Array<ArrayBuffer>));
}

async function HKDF(ikm: Uint8Array, salt: Uint8Array, info: string): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey("raw", ikm as Uint8Array<ArrayBuffer>, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, info: te.encode(info) },
      key,
      256,
    ),
  );
}

/** PKCS#8 prefix of an X25519 private key (RFC 8410): the scalar follows. */
const X25519_PKCS8_PREFIX = Uint8Array.fromHex("302e020100300506032b656e04220420");

/** An X25519 pair from a fixed scalar, through WebCrypto. */
export async function x25519Pair(
  scalar: Uint8Array,
): Promise<{ privateKey: CryptoKey; publicKey: CryptoKey; publicRaw: Uint8Array<ArrayBuffer> }> {
  const pkcs8 = concat(X25519_PKCS8_PREFIX, scalar);
  const extractable = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, true, ["deriveBits"]);
  const jwk = await crypto.subtle.exportKey("jwk", extractable);
  const publicRaw = Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" });
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, false, ["deriveBits"]);
  const publicKey = await crypto.subtle.importKey("raw", publicRaw, { name: "X25519" }, true, []);
  return { privateKey, publicKey, publicRaw };
}

async function x25519(own: CryptoKey, peerRaw: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const pub = await crypto.subtle.importKey("raw", peerRaw as Uint8Array<ArrayBuffer>, { name: "X25519" }, false, []);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, own, 256));
}

const PSS = { name: "RSA-PSS", hash: "SHA-256" };
const OAEP = { name: "RSA-OAEP", hash: "SHA-256" };
const PSS_PARAMS = { name: "RSA-PSS", saltLength: 32 };
const OAEP_LABEL = te.encode("im v1 session key");

async function rsaKeyPair(): Promise<{ privatePem: string; publicPem: string }> {
  const pair = await crypto.subtle.generateKey(
    { ...PSS, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  return {
    privatePem: pemEncode("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey))),
    publicPem: pemEncode("PUBLIC KEY", new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey))),
  };
}

function importKey(pem: string, label: "PRIVATE KEY" | "PUBLIC KEY", alg: RsaHashedImportParams, usage: KeyUsage): Promise<CryptoKey> {
  return crypto.subtle.importKey(label === "PRIVATE KEY" ? "pkcs8" : "spki", pemDecode(pem, label), alg, false, [usage]);
}

/** Seal one record by PROTOCOL.md section 4. */
function sealRecord(
  k: { enc: Uint8Array; iv: Uint8Array; mac: Uint8Array },
  type: number,
  seq: bigint,
  timestamp: number,
  plaintext: Uint8Array,
): Uint8Array {
  const header = concat(u8(type), u64(seq), u64(BigInt(timestamp)));
  const iv = new HmacSha256(k.iv).mac(u64(seq));
  const ct = new MdCfb(k.enc).encrypt(iv, plaintext);
  return concat(u8(0x10), header, ct, new HmacSha256(k.mac).mac(concat(header, ct)));
}

async function directionKeys(ikm: Uint8Array, salt: Uint8Array, dir: string) {
  return {
    enc: hex(await HKDF(ikm, salt, `im v1 ${dir} enc`)),
    iv: hex(await HKDF(ikm, salt, `im v1 ${dir} iv`)),
    mac: hex(await HKDF(ikm, salt, `im v1 ${dir} mac`)),
  };
}

const T = 1_700_000_000_000;

/** What is randomized, or was generated once: taken from an earlier file unless `fresh`. */
interface Made {
  clientPrivateKeyPem: string;
  clientPublicKeyPem: string;
  serverPrivateKeyPem: string;
  serverPublicKeyPem: string;
  sig_s?: string;
  sig_c?: string;
  oaep_ciphertext?: string;
}

/**
 * Build the file. Keys, signatures and the OAEP ciphertext come from
 * `earlier` when given and still valid (a signature over a transcript that
 * changed is made again); everything else is computed from fixed inputs.
 * @param earlier the inputs of the file as it is, if any
 * @returns the file's content
 */
export async function buildLoginVectors(earlier?: Made): Promise<LoginVectorFile> {
  let made: Made;
  if (earlier) made = earlier;
  else {
    const [c, s] = [await rsaKeyPair(), await rsaKeyPair()];
    made = {
      clientPrivateKeyPem: c.privatePem,
      clientPublicKeyPem: c.publicPem,
      serverPrivateKeyPem: s.privatePem,
      serverPublicKeyPem: s.publicPem,
    };
  }
  const version = 1;
  const user = "alice";
  const nonce_c = fixed("nonce_c"), nonce_s = fixed("nonce_s");
  const eph_c_private = fixed("eph_c"), eph_s_private = fixed("eph_s");
  const session_key = fixed("session key");
  const ts_s2c = T, ts_c2s = T + 5;

  const ephC = await x25519Pair(eph_c_private), ephS = await x25519Pair(eph_s_private);
  const serverSpki = pemDecode(made.serverPublicKeyPem, "PUBLIC KEY");
  const fp = await H(serverSpki);

  // Section 3, step by step.
  const client_hello = concat(u8(0x01), u8(version), bytes8(te.encode(user)), nonce_c, ephC.publicRaw);
  const th = await TH(
    "im v1 login transcript",
    u8(version), // the client's, from CLIENT_HELLO
    u8(version), // the server's, from SERVER_HELLO
    te.encode(user),
    nonce_c,
    nonce_s,
    fp,
    ephC.publicRaw,
    ephS.publicRaw,
  );
  const server_signed = concat(te.encode("im v1 server signature"), u8(0), th);
  const client_signed = concat(te.encode("im v1 client signature"), u8(0), th);

  const serverSign = await importKey(made.serverPrivateKeyPem, "PRIVATE KEY", PSS, "sign");
  const serverVerify = await importKey(made.serverPublicKeyPem, "PUBLIC KEY", PSS, "verify");
  const clientSign = await importKey(made.clientPrivateKeyPem, "PRIVATE KEY", PSS, "sign");
  const clientVerify = await importKey(made.clientPublicKeyPem, "PUBLIC KEY", PSS, "verify");
  const clientEncrypt = await importKey(made.clientPublicKeyPem, "PUBLIC KEY", OAEP, "encrypt");
  const clientDecrypt = await importKey(made.clientPrivateKeyPem, "PRIVATE KEY", OAEP, "decrypt");

  async function signature(
    old: string | undefined,
    sign: CryptoKey,
    verify: CryptoKey,
    data: Uint8Array<ArrayBuffer>,
  ): Promise<Uint8Array<ArrayBuffer>> {
    if (old && await crypto.subtle.verify(PSS_PARAMS, verify, unhex(old), data)) return unhex(old);
    return new Uint8Array(await crypto.subtle.sign(PSS_PARAMS, sign, data));
  }
  const sig_s = await signature(made.sig_s, serverSign, serverVerify, server_signed);
  const sig_c = await signature(made.sig_c, clientSign, clientVerify, client_signed);

  let oaep = made.oaep_ciphertext ? unhex(made.oaep_ciphertext) : undefined;
  if (oaep) {
    const opened = await crypto.subtle.decrypt({ ...OAEP, label: OAEP_LABEL }, clientDecrypt, oaep).then(
      (b) => new Uint8Array(b),
      () => undefined,
    );
    if (!opened || hex(opened) !== hex(session_key)) oaep = undefined;
  }
  oaep ??= new Uint8Array(await crypto.subtle.encrypt({ ...OAEP, label: OAEP_LABEL }, clientEncrypt, session_key));

  const server_hello = concat(u8(0x02), u8(version), nonce_s, ephS.publicRaw, bytes16(serverSpki), bytes16(sig_s));
  const client_auth = concat(u8(0x03), bytes16(sig_c));
  const shared = await x25519(ephC.privateKey, ephS.publicRaw);
  if (hex(shared) !== hex(await x25519(ephS.privateKey, ephC.publicRaw))) throw new Error("X25519 disagrees");
  // The tag the client checks before it decrypts (section 3, SERVER_KEY).
  const server_key_tag = await HMAC(await HKDF(shared, th, "im v1 server key tag"), oaep);
  const server_key = concat(u8(0x04), bytes16(oaep), server_key_tag);
  const th2 = await TH("im v1 login keys", th, sig_c, oaep);
  const ikm = concat(session_key, shared);
  const c2s = await directionKeys(ikm, th2, "c2s");
  const s2c = await directionKeys(ikm, th2, "s2c");
  const ticket = {
    enc: hex(await HKDF(ikm, th2, "im v1 ticket enc")),
    mac: hex(await HKDF(ikm, th2, "im v1 ticket mac")),
  };
  const keysOf = (k: { enc: string; iv: string; mac: string }) => ({ enc: unhex(k.enc), iv: unhex(k.iv), mac: unhex(k.mac) });
  const server_finished = sealRecord(keysOf(s2c), 0x01, 0n, ts_s2c, th2);
  const client_finished = sealRecord(keysOf(c2s), 0x01, 0n, ts_c2s, th2);
  const frame = (p: Uint8Array) => hex(concat(u32(p.length), p));

  return {
    description:
      "im login vectors (PROTOCOL.md section 3, Login): one login of user `alice` with fixed inputs, every message and every derived key. Byte strings are hex; messages are frame payloads (kind byte first, no u32 length) unless under `wire`. Generated by make_login_vectors.ts; checked against lib/proto by tests/login_vectors_test.ts.",
    notes: [
      "Signatures are checked, not compared: RSA-PSS is randomized, so sig_s and sig_c were made once. A conforming implementation verifies sig_s with serverPublicKeyPem over server_signed and sig_c with clientPublicKeyPem over client_signed (RSA-PSS, SHA-256, MGF1-SHA-256, salt 32), and uses these bytes for everything after.",
      "RSA-OAEP is randomized too: oaep_ciphertext was made once under clientPublicKeyPem (SHA-256, MGF1-SHA-256, label \"im v1 session key\"); it must decrypt to session_key with clientPrivateKeyPem, and its bytes go into server_key and th2.",
      "X25519 private keys are RFC 7748 scalars (clamped when used); eph_c and eph_s are their public keys.",
      "The RSA private keys are throwaway keys made for these vectors only; no server or user holds them.",
      "Every other output is deterministic: recompute it from the inputs and compare byte for byte. fp_server is SHA-256 of the SPKI DER in serverPublicKeyPem.",
      "server_finished and client_finished are FINISHED records (type 1), seq 0, body th2, sealed with the s2c and c2s keys at the fixed timestamps; open them with a window wide enough for those timestamps, or reseal and compare.",
    ],
    inputs: {
      version,
      user,
      clientPrivateKeyPem: made.clientPrivateKeyPem,
      clientPublicKeyPem: made.clientPublicKeyPem,
      serverPrivateKeyPem: made.serverPrivateKeyPem,
      serverPublicKeyPem: made.serverPublicKeyPem,
      nonce_c: hex(nonce_c),
      nonce_s: hex(nonce_s),
      eph_c_private: hex(eph_c_private),
      eph_s_private: hex(eph_s_private),
      session_key: hex(session_key),
      sig_s: hex(sig_s),
      sig_c: hex(sig_c),
      oaep_ciphertext: hex(oaep),
      finished_timestamp_s2c: ts_s2c,
      finished_timestamp_c2s: ts_c2s,
    },
    outputs: {
      eph_c: hex(ephC.publicRaw),
      eph_s: hex(ephS.publicRaw),
      server_spki: hex(serverSpki),
      fp_server: hex(fp),
      fp_server_text: `SHA256:${fp.toBase64({ omitPadding: true })}`,
      client_hello: hex(client_hello),
      th: hex(th),
      server_signed: hex(server_signed),
      server_hello: hex(server_hello),
      client_signed: hex(client_signed),
      client_auth: hex(client_auth),
      server_key_tag: hex(server_key_tag),
      server_key: hex(server_key),
      th2: hex(th2),
      x25519_shared: hex(shared),
      ikm: hex(ikm),
      keys: { c2s, s2c, ticket },
      server_finished: hex(server_finished),
      client_finished: hex(client_finished),
      wire: [
        { dir: "c2s", frame: frame(client_hello) },
        { dir: "s2c", frame: frame(server_hello) },
        { dir: "c2s", frame: frame(client_auth) },
        { dir: "s2c", frame: frame(server_key) },
        { dir: "s2c", frame: frame(server_finished) },
        { dir: "c2s", frame: frame(client_finished) },
      ],
    },
  };
}

/**
 * The file as it is on disk, or undefined when there is none.
 * @returns its content
 */
export async function readLoginVectors(): Promise<LoginVectorFile | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(LOGIN_VECTORS_FILE)) as LoginVectorFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

if (import.meta.main) {
  const fresh = Deno.args.includes("--fresh");
  const earlier = fresh ? undefined : (await readLoginVectors())?.inputs;
  const doc = await buildLoginVectors(earlier);
  await Deno.writeTextFile(LOGIN_VECTORS_FILE, JSON.stringify(doc, null, 2) + "\n");
  console.log(`wrote ${LOGIN_VECTORS_FILE.pathname}${earlier ? "" : " with new keys, signatures and OAEP ciphertext"}`);
}
