/**
 * {@link warmClientLogin}: the client's side of the login (PROTOCOL.md
 * section 3) and the server link's first message (section 5, `welcome`)
 * run once on throwaway inputs, before a fresh process connects (issue 15).
 *
 * A fresh `im chat` runs the login's JavaScript for the first time after
 * the TCP connect: V8 compiles each function at its first call and runs it
 * in its interpreter, so the key schedule (eight HKDF on lib/crypto's
 * SHA-256), the first records sealed and opened and the first message
 * decoded cost 6 to 14 ms more there than in a process that ran them once
 * (`bench --only start`; BENCHMARKS.md "Login from the TCP connect"). Run
 * while the key files are read and imported, before the connect, that cost
 * is off the path from the connect to `Logged in`; it is moved, not gone:
 * the process start pays it. The bytes on the wire do not change. Nothing
 * here touches a socket, a file or a real key, and every throwaway key is
 * wiped.
 *
 * @example
 * ```ts
 * import { warmClientLogin } from "./login_warm.ts";
 * await warmClientLogin();
 * ```
 * @module
 */

import { constantTimeEqual, randomBytes, wipe } from "../util/mod.ts";
import { Label, transcriptHash } from "../crypto/mod.ts";
import {
  RecordOpener,
  RecordSealer,
  RecordType,
  verifyFinished,
} from "../record/mod.ts";
import {
  decodeServerHello,
  decodeServerKey,
  encodeClientAuth,
  encodeClientHello,
  encodeServerHello,
  encodeServerKey,
  NONCE_BYTES,
  PROTOCOL_VERSION,
} from "./login_messages.ts";
import {
  loginKeys,
  loginTranscript,
  serverKeyTagKey,
  serverKeyTagWith,
  signedContent,
} from "./_login.ts";
import { SERVER_LINK_CODEC } from "./message_channel.ts";
import { encodeMessage } from "./messages.ts";

/** Sizes of a 2048-bit login's fields: an SPKI, a signature, a ciphertext. */
const SPKI_BYTES = 294, RSA_BYTES = 256;
/** An X25519 key or secret. */
const X25519_BYTES = 32;

/**
 * Run each step of the client's login once on throwaway inputs: the frames
 * (CLIENT_HELLO to SERVER_KEY), the transcript hashes, the SERVER_KEY tag,
 * the key schedule, both FINISHED records and a `welcome` opened and
 * decoded as the server link's codec does. Its hashes go to WebCrypto's
 * threads, and the I/O started before it goes on meanwhile. It never
 * throws: a failure here only leaves that code cold.
 */
export async function warmClientLogin(): Promise<void> {
  try {
    await warm();
  } catch {
    // Only speed depends on it; the login itself reports any real failure.
  }
}

async function warm(): Promise<void> {
  const hello = {
    version: PROTOCOL_VERSION,
    user: "warm",
    nonce: randomBytes(NONCE_BYTES),
    ephemeral: randomBytes(X25519_BYTES),
  };
  encodeClientHello(hello);
  const sh = decodeServerHello(encodeServerHello({
    version: PROTOCOL_VERSION,
    nonce: randomBytes(NONCE_BYTES),
    ephemeral: randomBytes(X25519_BYTES),
    serverPublicKey: new Uint8Array(SPKI_BYTES),
    signature: new Uint8Array(RSA_BYTES),
  }));
  const th = await loginTranscript(
    hello,
    sh.version,
    sh.nonce,
    new Uint8Array(32),
    sh.ephemeral,
  );
  signedContent(Label.CLIENT_SIGNATURE, th);
  const signature = new Uint8Array(RSA_BYTES);
  encodeClientAuth({ signature });

  // The X25519 secret is made by WebCrypto during the real login, while we
  // sign; random bytes stand for it here.
  const dh = randomBytes(X25519_BYTES);
  const tagKey = await serverKeyTagKey(dh, th);
  const sealed = randomBytes(RSA_BYTES);
  const sk = decodeServerKey(encodeServerKey({
    sealedSessionKey: sealed,
    tag: serverKeyTagWith(tagKey, sealed),
  }));
  constantTimeEqual(serverKeyTagWith(tagKey, sk.sealedSessionKey), sk.tag);
  wipe(tagKey);
  const th2 = await transcriptHash(Label.TRANSCRIPT_KEYS, [
    th,
    signature,
    sk.sealedSessionKey,
  ]);
  const keys = await loginKeys(randomBytes(32), dh, th2, "client", undefined);
  wipe(keys.ticketKeys.enc, keys.ticketKeys.mac);

  // The server's direction: a sealer and an opener on one throwaway key.
  const s2c = {
    enc: randomBytes(32),
    iv: randomBytes(32),
    mac: randomBytes(32),
  };
  const server = new RecordSealer(s2c);
  const opener = new RecordOpener(s2c);
  wipe(s2c.enc, s2c.iv, s2c.mac);
  try {
    const now = Date.now();
    verifyFinished(
      opener,
      server.seal(RecordType.FINISHED, th2, now),
      th2,
      now,
    );
    keys.sealer.seal(RecordType.FINISHED, th2, now);
    // The link's first message, as the client's channel reads it.
    const welcome = server.seal(
      RecordType.DATA,
      encodeMessage({
        t: "welcome",
        user: "warm",
        serverFingerprint: `SHA256:${"A".repeat(43)}`,
        maxFrame: 65536,
        now,
      }),
      now,
    );
    SERVER_LINK_CODEC.decode(opener.open(welcome, now).plaintext);
  } finally {
    for (const k of [keys.sealer, keys.opener, server, opener]) k.wipe();
  }
}
