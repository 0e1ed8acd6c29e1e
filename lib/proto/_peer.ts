/**
 * Internal to the peer handshake (PROTOCOL.md section 6, "Peer sessions"):
 * the commit MAC, the transcript `pth`, the joiner's MAC, the key schedule,
 * the signed FINISHED and its check (key continuity), shared by
 * `peer_host.ts` and `peer_join.ts`; not re-exported by `mod.ts`.
 * @module
 */

import {
  AuthError,
  concat,
  constantTimeEqual,
  utf8,
  wipe,
} from "../util/mod.ts";
import {
  deriveDirectionKeys,
  deriveKey,
  hmacSha256,
  Label,
  type PrivateIdentity,
  type PublicIdentity,
  signPss,
  transcriptHash,
  verifyPss,
} from "../crypto/mod.ts";
import {
  describeClockSkew,
  type RecordOpener,
  RecordType,
  StaleRecordError,
} from "../record/mod.ts";
import { formatSas, type PeerHello } from "./peer_handshake.ts";
import { type RecordPair, recordPair } from "./_record_pair.ts";

/**
 * commit_key (PROTOCOL.md section 6): `HKDF(peer_key, ticket id, "im v1 peer
 * commit auth")`, 32 bytes. The host derives it once per grant.
 * @param peerKey the peer key from the grant or the ticket
 * @param ticketId the ticket's id, the salt
 * @returns 32 bytes, for {@link commitMac}; the caller wipes them
 */
export function commitKey(
  peerKey: Uint8Array,
  ticketId: Uint8Array,
): Promise<Uint8Array> {
  return deriveKey(peerKey, ticketId, Label.PEER_COMMIT_AUTH);
}

/**
 * commit_mac (PROTOCOL.md section 6): `HMAC(commit_key, "joiner" || ticket
 * id || commit)`, binding the commitment to its grant.
 * @param key commit_key, from {@link commitKey}
 * @param ticketId the ticket's id
 * @param commit the commitment
 * @returns 32 bytes
 */
export function commitMac(
  key: Uint8Array,
  ticketId: Uint8Array,
  commit: Uint8Array,
): Uint8Array {
  return hmacSha256(key, concat(utf8("joiner"), ticketId, commit)); // wipes its keyed state
}

/** What goes into pth, in its order. */
export interface TranscriptParts {
  ticketId: Uint8Array;
  host: string;
  joiner: string;
  commit: Uint8Array;
  hello: PeerHello;
  replyNonce: Uint8Array;
  replyEphemeral: Uint8Array;
}

/**
 * pth (PROTOCOL.md section 6): `TH("im v1 peer transcript", version,
 * ticket id, host, joiner, commit, nonce_a, eph_a, nonce_b, eph_b)`.
 * @param p the parts
 * @returns 32 bytes
 */
export function peerTranscript(p: TranscriptParts): Promise<Uint8Array> {
  return transcriptHash(Label.PEER_TRANSCRIPT, [
    new Uint8Array([p.hello.version]),
    p.ticketId,
    utf8(p.host),
    utf8(p.joiner),
    p.commit,
    p.hello.nonce,
    p.hello.ephemeral,
    p.replyNonce,
    p.replyEphemeral,
  ]);
}

/**
 * mac_b (PROTOCOL.md section 6): `HMAC(auth_key, "joiner" || pth)` with
 * `auth_key = HKDF(peer_key, ticket id, "im v1 peer auth")`, wiped after use.
 * @param peerKey the peer key from the grant or the ticket
 * @param ticketId the ticket's id
 * @param pth the transcript hash
 * @returns 32 bytes
 */
export async function joinerMac(
  peerKey: Uint8Array,
  ticketId: Uint8Array,
  pth: Uint8Array,
): Promise<Uint8Array> {
  const authKey = await deriveKey(peerKey, ticketId, Label.PEER_AUTH);
  const mac = hmacSha256(authKey, concat(utf8("joiner"), pth));
  wipe(authKey);
  return mac;
}

/** One side's keys after the peer handshake. */
export interface PeerKeys extends RecordPair {
  /** Short authentication string, e.g. `482 193 004 771`. */
  sas: string;
}

/**
 * The peer key schedule (PROTOCOL.md section 6): `ikm = peer_key ||
 * X25519(eph_a, eph_b)`, salt pth; the h2j and j2h keys and the SAS. The
 * X25519 secret, the IKM and the direction keys are wiped here; the peer
 * key belongs to the caller.
 * @param peerKey the peer key (not wiped)
 * @param dh the X25519 shared secret (wiped)
 * @param pth the transcript hash
 * @param side which side's record layer to build (the host seals h2j)
 * @param windowMs the opener's freshness window (rule 3.5)
 * @returns the sealer, the opener and the SAS
 */
export async function peerKeys(
  peerKey: Uint8Array,
  dh: Uint8Array,
  pth: Uint8Array,
  side: "host" | "joiner",
  windowMs: number | undefined,
): Promise<PeerKeys> {
  const ikm = concat(peerKey, dh);
  wipe(dh);
  try {
    const [h2j, j2h, sas] = await Promise.all([
      deriveDirectionKeys(ikm, pth, "h2j"),
      deriveDirectionKeys(ikm, pth, "j2h"),
      deriveKey(ikm, pth, Label.PEER_SAS),
    ]);
    const records = side === "host"
      ? recordPair(h2j, j2h, windowMs)
      : recordPair(j2h, h2j, windowMs);
    return { ...records, sas: formatSas(sas) };
  } finally {
    wipe(ikm);
  }
}

/** Which side sealed a FINISHED: its signature label and its name in messages. */
export type PeerSide = "host" | "joiner";

const SIGNATURE_LABEL: Readonly<Record<PeerSide, string>> = {
  host: Label.PEER_HOST_SIGNATURE,
  joiner: Label.PEER_JOINER_SIGNATURE,
};

/**
 * What a side signs (PROTOCOL.md section 6, key continuity): its label's
 * ASCII bytes, one zero byte and pth, so neither side's signature passes
 * for the other's, nor for a login's.
 * @param side the signer
 * @param pth the transcript hash
 * @returns 58 (host) or 60 (joiner) bytes
 */
export function peerSignedContent(side: PeerSide, pth: Uint8Array): Uint8Array {
  return concat(utf8(SIGNATURE_LABEL[side]), new Uint8Array([0]), pth);
}

/**
 * The plaintext of a side's FINISHED: `pth || sig`, sig = RSA-PSS by the
 * side's own key over {@link peerSignedContent} (PROTOCOL.md section 6,
 * key continuity). The signature fills the rest: it is as long as the
 * signer's modulus, 256 to 512 bytes.
 * @param identity the signer's key pair (the one it logs in with)
 * @param side which side signs
 * @param pth the transcript hash
 * @returns 32 + modulus bytes
 */
export async function finishedPlaintext(
  identity: PrivateIdentity,
  side: PeerSide,
  pth: Uint8Array,
): Promise<Uint8Array> {
  return concat(
    pth,
    await signPss(identity.sign, peerSignedContent(side, pth)),
  );
}

/**
 * Key confirmation and the other side's signature, in this order
 * (PROTOCOL.md section 6, key continuity): the record must open (a record
 * outside the window only is `clock-skew`) and be a FINISHED longer than
 * pth whose first 32 bytes are pth, compared in constant time; then the
 * rest must verify as `side`'s signature under the key the server named.
 * @param opener the record opener of the other direction
 * @param payload the other side's first record
 * @param pth the transcript hash
 * @param side the side that sealed it
 * @param signer the key the server named for that side
 * @param name that side's username, for the message
 * @throws {AuthError} `clock-skew`, `peer-auth-failed` (it does not hold
 *   the peer key), `peer-signature-failed` (it is not the named user)
 */
export async function checkFinished(
  opener: RecordOpener,
  payload: Uint8Array,
  pth: Uint8Array,
  side: PeerSide,
  signer: PublicIdentity,
  name: string,
): Promise<void> {
  let plaintext: Uint8Array | undefined;
  try {
    const rec = opener.open(payload);
    if (rec.type === RecordType.FINISHED) plaintext = rec.plaintext;
  } catch (e) {
    if (e instanceof StaleRecordError) {
      // Authentic but outside the window: the clocks, not an attack (PROTOCOL.md section 4).
      throw new AuthError(
        "clock-skew",
        `Peer session refused: ${
          describeClockSkew(`the ${side}'s`, e.offsetMs, e.windowMs)
        }`,
      );
    }
  }
  if (
    plaintext === undefined || plaintext.length <= pth.length ||
    !constantTimeEqual(plaintext.subarray(0, pth.length), pth)
  ) {
    throw new AuthError(
      "peer-auth-failed",
      `Peer session refused: the ${side} could not prove it holds the peer key`,
    );
  }
  const sig = plaintext.subarray(pth.length);
  if (!await verifyPss(signer.verify, sig, peerSignedContent(side, pth))) {
    throw new AuthError(
      "peer-signature-failed",
      `WARNING: this session was not signed with ${name}'s key ${signer.fingerprint}, the one the server names for ${name}; refusing it (someone holding the session key, most likely the server, may be in the middle)`,
      `ask ${name} out of band which key is theirs`,
    );
  }
}
