/**
 * The checks a sender runs on a fetched bundle (PROTOCOL.md section 9.2 step
 * 3), in order, and the lighter check of a `keys` answer's `IK_CERT`
 * (section 9.4 step 2): the certificates decode and name the user, verify
 * with the pinned RSA key, have not expired, were not made in the future,
 * and are not older than the ones verified before. The certificates
 * themselves, their codecs and signatures are mail_certs.ts's (section 9.1).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { makeIdentityCert } from "./mail_certs.ts";
 * import { verifyIdentityOnly } from "./mail_bundle.ts";
 * const a = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const identityCert = await makeIdentityCert(a, "A", new Uint8Array(32).fill(7), 1);
 * assert.equal((await verifyIdentityOnly({ user: "A", owner: a.publicIdentity, identityCert })).user, "A");
 * ```
 * @module
 */

import type { PublicIdentity } from "../crypto/mod.ts";
import { isImError, ProtocolError } from "../util/mod.ts";
import {
  decodeIdentityCert,
  decodePrekeyCert,
  type IdentityCert,
  type PrekeyCert,
  verifyIdentityCert,
  verifyPrekeyCert,
} from "./mail_certs.ts";
import type { PeerMailCerts } from "./mail_vault.ts";

/** How far in the future a certificate's `created` may lie (section 9.2 step 3, the record window). */
export const CERT_CLOCK_SKEW_MS = 120_000;

function badBundle(user: string, why: string): ProtocolError {
  return new ProtocolError("bad-bundle", `Keys of "${user}" refused: ${why}`);
}

/**
 * Decode a certificate of a bundle; any failure is `bad-bundle`.
 * @param user whose bundle
 * @param decode the decoder
 * @param b the bytes
 * @returns the certificate
 */
function decodeForBundle<T>(
  user: string,
  decode: (b: Uint8Array) => T,
  b: Uint8Array,
): T {
  try {
    return decode(b);
  } catch (e) {
    if (isImError(e)) throw badBundle(user, e.message);
    throw e;
  }
}

/**
 * Decode the `IK_CERT` of a bundle or a `keys` answer and check that it
 * names `user`.
 * @param user whose keys
 * @param bytes the certificate
 * @returns the certificate, its signature not yet checked
 */
function identityFor(user: string, bytes: Uint8Array): IdentityCert {
  const identity = decodeForBundle(user, decodeIdentityCert, bytes);
  if (identity.user !== user) {
    throw badBundle(user, `IK_CERT names "${identity.user}"`);
  }
  return identity;
}

/**
 * Refuse an `IK_CERT` whose signature does not verify with `owner`.
 * @param user whose keys
 * @param identity the certificate
 * @param owner the pinned RSA key
 */
async function checkIdentitySignature(
  user: string,
  identity: IdentityCert,
  owner: PublicIdentity,
): Promise<void> {
  if (!(await verifyIdentityCert(identity, owner))) {
    throw badBundle(user, `IK_CERT is not signed by ${owner.fingerprint}`);
  }
}

function rollback(user: string, which: string): ProtocolError {
  return new ProtocolError(
    "prekey-rollback",
    `Keys of "${user}" refused: the server handed out an ${which} older than one verified before`,
  );
}

/**
 * Refuse an `IK_CERT` older (by `created`) than the one verified before.
 * @param user whose certificate
 * @param identity the new one
 * @param previous what was verified before
 */
function checkIdentityRollback(
  user: string,
  identity: IdentityCert,
  previous: PeerMailCerts | undefined,
): void {
  if (previous === undefined) return;
  const before = decodeIdentityCert(previous.identityCert);
  if (identity.created < before.created) throw rollback(user, "IK_CERT");
}

/**
 * Check a fetched bundle (PROTOCOL.md section 9.2 step 3), in order; the
 * first failure decides:
 * 1. both certificates decode (version 1) and name `user`: `bad-bundle`;
 * 2. `sig_ik` and `sig_spk` verify with `owner` (the pinned RSA key):
 *    `bad-bundle`;
 * 3. `SPK_CERT`'s `ik` is `IK_CERT`'s (it is signed over it, so this is
 *    step 2's `sig_spk` check with `IK_CERT`'s key): `bad-bundle`;
 * 4. `expires > now`: `prekey-expired`;
 * 5. both `created <= now + 120 s`: `bad-bundle`;
 * 6. neither certificate older (by `created`) than `previous`'s:
 *    `prekey-rollback`.
 * @param a `user` whose bundle; `owner` its pinned RSA key; the two
 *   certificates' bytes; `now` in ms (server's clock); `previous`, the
 *   certificates verified before (`peers/<user>.mail`)
 * @returns the decoded certificates, to keep
 * @throws {ProtocolError} `bad-bundle`, `prekey-expired`, `prekey-rollback`;
 *   `bad-cert` when `previous` itself does not decode (a corrupt store)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, generateX25519, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { makeIdentityCert, makePrekeyCert } from "./mail_certs.ts";
 * import { verifyBundle } from "./mail_bundle.ts";
 * const b = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const [ik, spk] = await Promise.all([generateX25519(false), generateX25519(false)]);
 * const now = Date.now();
 * const identityCert = await makeIdentityCert(b, "B", ik.publicRaw, now);
 * const signedPrekeyCert = await makePrekeyCert(b, "B", ik.publicRaw, 1, spk.publicRaw, now, now + 1000);
 * const ok = await verifyBundle({ user: "B", owner: b.publicIdentity, identityCert, signedPrekeyCert, now });
 * assert.equal(ok.prekey.id, 1);
 * await assert.rejects(
 *   verifyBundle({ user: "B", owner: b.publicIdentity, identityCert, signedPrekeyCert, now: now + 1000 }),
 *   { code: "prekey-expired" },
 * );
 * ```
 */
export async function verifyBundle(a: {
  user: string;
  owner: PublicIdentity;
  identityCert: Uint8Array;
  signedPrekeyCert: Uint8Array;
  now: number;
  previous?: PeerMailCerts | undefined;
}): Promise<{ identity: IdentityCert; prekey: PrekeyCert }> {
  const { user, owner, now } = a;
  // Step 3, first: both decode with version 1 and name the user.
  const identity = identityFor(user, a.identityCert);
  const prekey = decodeForBundle(user, decodePrekeyCert, a.signedPrekeyCert);
  if (prekey.user !== user) {
    throw badBundle(user, `SPK_CERT names "${prekey.user}"`);
  }
  // Then the signatures; SPK_CERT is signed over IK_CERT's ik, so one that
  // names another identity key fails here.
  await checkIdentitySignature(user, identity, owner);
  if (!(await verifyPrekeyCert(prekey, owner, identity.ik))) {
    throw badBundle(
      user,
      `SPK_CERT is not signed by ${owner.fingerprint} for this identity key`,
    );
  }
  if (prekey.expires <= now) {
    throw new ProtocolError(
      "prekey-expired",
      `Keys of "${user}" refused: the signed prekey expired on ${
        new Date(prekey.expires).toISOString()
      } ("${user}" has not been online for 30 days)`,
    );
  }
  for (
    const [which, created] of [["IK_CERT", identity.created], [
      "SPK_CERT",
      prekey.created,
    ]] as const
  ) {
    if (created > now + CERT_CLOCK_SKEW_MS) {
      throw badBundle(
        user,
        `${which} was made in the future (${new Date(created).toISOString()})`,
      );
    }
  }
  checkIdentityRollback(user, identity, a.previous);
  const previousPrekey = a.previous?.signedPrekeyCert;
  if (previousPrekey !== undefined) {
    const before = decodePrekeyCert(previousPrekey);
    if (prekey.created < before.created) throw rollback(user, "SPK_CERT");
  }
  return { identity, prekey };
}

/**
 * Check the `IK_CERT` of a `keys` answer, where only the identity key
 * matters (a recipient learning a sender's `ik`, section 9.4 step 2): it
 * decodes, names `user` and verifies with `owner` (`bad-bundle`), and is not
 * older than `previous`'s (`prekey-rollback`).
 * @param a `user` whose keys; `owner` its pinned RSA key; the `IK_CERT`
 *   bytes; `previous`, the certificates verified before
 * @returns the decoded certificate, to keep
 * @throws {ProtocolError} `bad-bundle`, `prekey-rollback`; `bad-cert` when
 *   `previous` itself does not decode (a corrupt store)
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "../crypto/mod.ts";
 * import { makeIdentityCert } from "./mail_certs.ts";
 * import { verifyIdentityOnly } from "./mail_bundle.ts";
 * const a = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const identityCert = await makeIdentityCert(a, "A", new Uint8Array(32).fill(7), 1);
 * assert.equal((await verifyIdentityOnly({ user: "A", owner: a.publicIdentity, identityCert })).created, 1);
 * await assert.rejects(verifyIdentityOnly({ user: "C", owner: a.publicIdentity, identityCert }), { code: "bad-bundle" });
 * ```
 */
export async function verifyIdentityOnly(a: {
  user: string;
  owner: PublicIdentity;
  identityCert: Uint8Array;
  previous?: PeerMailCerts | undefined;
}): Promise<IdentityCert> {
  const identity = identityFor(a.user, a.identityCert);
  await checkIdentitySignature(a.user, identity, a.owner);
  checkIdentityRollback(a.user, identity, a.previous);
  return identity;
}
