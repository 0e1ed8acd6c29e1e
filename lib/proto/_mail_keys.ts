/**
 * One mail's keys (PROTOCOL.md section 9.2): the X3DH DH values, computed
 * together and wiped on any failure, and the key schedule from them to
 * `enc`, `ivk`, `mac` and `rk`. Shared by sealing and opening, which run it
 * from the two sides.
 * @module
 */

import {
  concat,
  isImError,
  type ProtocolError,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  deriveKeySync,
  Label,
  sharedSecret,
  transcriptHash,
} from "../crypto/mod.ts";
import type { MailHeader } from "./mail_format.ts";
import type { MailKeyPair } from "./mail_vault.ts";

/** X3DH section 2.2: 32 bytes 0xff before the DH values, for X25519. */
const F = new Uint8Array(32).fill(0xff);
/** One message's keys (section 9.2). */
export interface MailKeys {
  enc: Uint8Array;
  ivk: Uint8Array;
  mac: Uint8Array;
  rk: Uint8Array;
}

/**
 * From the DH values to one message's keys (section 9.2): `ad`, then
 * `sk = HKDF(F || DH1 || DH2 || DH3 [|| DH4], ad, "im v1 mail secret")`,
 * then `enc`, `ivk`, `mac`, `rk = HKDF(sk, msg_id, label)`. The DH values,
 * the input and `sk` are wiped here.
 * @param dh DH1 to DH3, and DH4 when a one-time prekey was used (wiped)
 * @param header the names, identity keys and `msg_id`
 * @param fpSender the sender's raw RSA fingerprint
 * @param fpRecipient the recipient's raw RSA fingerprint
 * @param ikRecipient the recipient's identity key `ik_b`
 * @returns the keys
 */
export async function mailKeys(
  dh: Uint8Array[],
  header: Pick<MailHeader, "version" | "sender" | "recipient" | "ik" | "msgId">,
  fpSender: Uint8Array,
  fpRecipient: Uint8Array,
  ikRecipient: Uint8Array,
): Promise<MailKeys> {
  const ikm = concat(F, ...dh);
  wipe(...dh);
  let sk: Uint8Array | undefined;
  try {
    const ad = await transcriptHash(Label.MAIL_AD, [
      new Uint8Array([header.version]),
      utf8(header.sender),
      utf8(header.recipient),
      fpSender,
      fpRecipient,
      header.ik,
      ikRecipient,
    ]);
    // Synchronous HKDF: five derivations per message, each the same bytes
    // as WebCrypto's (kdf_test.ts) at a fifth of the cost.
    sk = deriveKeySync(ikm, ad, Label.MAIL_SECRET);
    return {
      enc: deriveKeySync(sk, header.msgId, Label.MAIL_ENC),
      ivk: deriveKeySync(sk, header.msgId, Label.MAIL_IV),
      mac: deriveKeySync(sk, header.msgId, Label.MAIL_MAC),
      rk: deriveKeySync(sk, header.msgId, Label.MAIL_RECEIPT),
    };
  } finally {
    wipe(ikm);
    if (sk !== undefined) wipe(sk);
  }
}

/**
 * The DH values, in order; any that fails (a low-order public key: an
 * all-zero value, RFC 7748 section 6.1) throws `onBad()`, and the values
 * already computed are wiped.
 * @param pairs each own key pair and the peer's public key
 * @param onBad the error to throw
 * @returns the 32-byte values
 */
export async function dhAll(
  pairs: [MailKeyPair, Uint8Array][],
  onBad: () => ProtocolError,
): Promise<Uint8Array[]> {
  // At once: WebCrypto runs them off the main thread, so the four take
  // about the time of two on two cores.
  const settled = await Promise.allSettled(
    pairs.map(([own, peer]) => sharedSecret(own, peer)),
  );
  const out = settled.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
  const failed = settled.find((r) => r.status === "rejected");
  if (failed === undefined) return out;
  wipe(...out);
  if (isImError(failed.reason)) throw onBad();
  throw failed.reason;
}
