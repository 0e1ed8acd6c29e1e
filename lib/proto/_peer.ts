/**
 * Internal to the peer handshake (PROTOCOL.md section 6, "Peer sessions"):
 * the commit MAC, the transcript `pth`, the joiner's MAC, the key schedule
 * and the FINISHED check, shared by `peer_host.ts` and `peer_join.ts`; not
 * re-exported by `mod.ts`.
 * @module
 */

import { AuthError, concat, utf8, wipe } from "../util/mod.ts";
import {
  deriveDirectionKeys,
  deriveKey,
  HmacSha256,
  Label,
  transcriptHash,
} from "../crypto/mod.ts";
import {
  describeClockSkew,
  type RecordOpener,
  verifyFinished,
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
  return new HmacSha256(key).mac(concat(utf8("joiner"), ticketId, commit));
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
  const mac = new HmacSha256(authKey).mac(concat(utf8("joiner"), pth));
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

/**
 * Key confirmation: the other side's FINISHED must open and carry pth.
 * @param opener the record opener of the other direction
 * @param payload the other side's first record
 * @param pth the transcript hash
 * @param who "the host" or "the joiner", for the message
 * @throws {AuthError} `peer-auth-failed`
 */
export function checkFinished(
  opener: RecordOpener,
  payload: Uint8Array,
  pth: Uint8Array,
  who: string,
): void {
  const v = verifyFinished(opener, payload, pth);
  if (v.ok) return;
  if (v.clockOffsetMs !== undefined) {
    // Authentic but outside the window: the clocks, not an attack (PROTOCOL.md section 4).
    throw new AuthError(
      "clock-skew",
      `Peer session refused: ${
        describeClockSkew(`${who}'s`, v.clockOffsetMs, v.windowMs ?? 0)
      }`,
    );
  }
  throw new AuthError(
    "peer-auth-failed",
    `Peer session refused: ${who} could not prove it holds the peer key`,
  );
}
