/**
 * Decoy keys for the login (PROTOCOL.md section 3, rule 2.4): what the
 * server checks an unknown user's CLIENT_AUTH signature against, so that
 * refusing a name nobody enrolled does the same work as refusing a bad
 * signature from an enrolled user, whatever the key sizes.
 *
 * An RSA-PSS verification costs what the modulus size makes it cost, and a
 * signature that is not as long as the modulus is refused at once. A single
 * decoy (the server's own key, as before) therefore answered an unknown name
 * in another time than an enrolled user's key of another size did (issue 10
 * item 3: a 4096-bit server and 2048-bit users told the two apart).
 *
 * {@link LoginDecoys} keeps one decoy public key per modulus size among the
 * enrolled keys, and gives every username one of those sizes, drawn in the
 * enrolled keys' own proportions by HMAC-SHA256 under a secret of this
 * server: the same name always gets the same decoy, and nobody outside can
 * tell which size a name was given. An unknown name then behaves like an
 * enrolled user whose key has that size; an enrolled name behaves like its
 * own key. The server asks for the decoy on every CLIENT_AUTH, enrolled name
 * or not, so both paths take the same steps.
 *
 * The decoys are throwaway keys, generated once per process and size. Their
 * private halves are dropped: an unknown user is refused whatever its
 * signature, so a decoy guards nothing, it only has to cost the same. They
 * match the modulus size, not the public exponent (65537, as keygen makes
 * every key).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoginDecoys } from "./login_decoys.ts";
 * const decoys = new LoginDecoys([{ bits: 2048 }, { bits: 2048 }]);
 * assert.equal(decoys.sizeFor("nobody"), 2048);
 * assert.equal(decoys.sizeFor("nobody"), decoys.sizeFor("nobody"));
 * ```
 * @module
 */

import { randomBytes, utf8 } from "../util/mod.ts";
import {
  checkRsaBits,
  DEFAULT_RSA_BITS,
  generateRsaKeyPair,
  HmacSha256,
  loadPublicIdentity,
  type PublicIdentity,
} from "../crypto/mod.ts";

/** Where `ServerHandshake` gets the key an unknown user's signature is checked against. */
export interface DecoySource {
  /**
   * The decoy for `user`; asked for on every CLIENT_AUTH, known user or not.
   * @param user the claimed username
   * @returns a public key nobody signs for
   */
  decoyFor(user: string): Promise<PublicIdentity>;
}

/** Anything with a modulus size: a {@link PublicIdentity}, or just `{ bits }`. */
export interface KeySize {
  readonly bits: number;
}

// One decoy per modulus size, for the whole process.
const decoyKeys = new Map<number, Promise<PublicIdentity>>();

async function generateDecoy(bits: number): Promise<PublicIdentity> {
  const { publicPem } = await generateRsaKeyPair(bits);
  return await loadPublicIdentity(publicPem, `decoy key of ${bits} bits`);
}

/** The decoy of `bits` bits: generated on first use, then cached; a failed generation is tried again next time. */
function decoyKey(bits: number): Promise<PublicIdentity> {
  let key = decoyKeys.get(bits);
  if (key === undefined) {
    const made = generateDecoy(bits);
    decoyKeys.set(bits, made);
    made.catch(() => {
      if (decoyKeys.get(bits) === made) decoyKeys.delete(bits);
    });
    key = made;
  }
  return key;
}

/** A modulus size and the number of enrolled keys up to and including it. */
interface Share {
  bits: number;
  upTo: number;
}

/** 2^48: a name's HMAC, read as 48 bits, is a point in [0, 2^48). */
const POINTS = 2 ** 48;

/**
 * Decoy keys shaped like the enrolled keys (rule 2.4). The server makes one,
 * hands it to every `ServerHandshake` as `decoy`, and calls
 * {@link update} whenever its client directory changes.
 */
export class LoginDecoys implements DecoySource {
  // Chooses a size per name; the key is this object's secret.
  #choose = new HmacSha256(randomBytes(32));
  #shares: Share[] = [];
  #total = 0;

  /**
   * @param enrolled the enrolled keys (only their sizes are read); with none,
   *   the decoy has {@link DEFAULT_RSA_BITS}, the size keygen gives
   * @throws {KeyError} `bad-bits` for a size outside 2048..4096
   */
  constructor(enrolled: Iterable<KeySize> = []) {
    this.update(enrolled);
  }

  /**
   * Take the sizes of a new client directory. Names keep their size unless
   * the proportions changed; a decoy of a new size is generated when first
   * needed (await {@link ready} to have it made now).
   * @param enrolled the enrolled keys
   * @throws {KeyError} `bad-bits` for a size outside 2048..4096
   */
  update(enrolled: Iterable<KeySize>): void {
    const counts = new Map<number, number>();
    for (const k of enrolled) {
      const bits = checkRsaBits(k.bits);
      counts.set(bits, (counts.get(bits) ?? 0) + 1);
    }
    if (counts.size === 0) counts.set(DEFAULT_RSA_BITS, 1);
    let upTo = 0;
    this.#shares = [...counts.keys()].sort((a, b) => a - b).map((bits) => {
      upTo += counts.get(bits)!;
      return { bits, upTo };
    });
    this.#total = upTo;
  }

  /** The modulus sizes present, smallest first. */
  get sizes(): number[] {
    return this.#shares.map((s) => s.bits);
  }

  /**
   * The size of `user`'s decoy: one of {@link sizes}, each as likely as its
   * share of the enrolled keys, the same for the same name.
   * @param user the claimed username
   * @returns a modulus size in bits
   */
  sizeFor(user: string): number {
    const h = this.#choose.mac(utf8(user));
    let point = 0;
    for (let i = 0; i < 6; i++) point = point * 256 + h[i]!;
    const at = Math.floor((point / POINTS) * this.#total);
    for (const s of this.#shares) if (at < s.upTo) return s.bits;
    return this.#shares[this.#shares.length - 1]!.bits;
  }

  /**
   * The decoy key for `user`: of {@link sizeFor} bits, shared by every name
   * given that size.
   * @param user the claimed username
   * @returns the decoy public key
   * @throws {KeyError} when a decoy cannot be generated
   */
  decoyFor(user: string): Promise<PublicIdentity> {
    return decoyKey(this.sizeFor(user));
  }

  /**
   * Generate the decoys of every size present now, so that no login waits
   * for one (a server awaits this when it starts and after a reload).
   * @returns when they exist
   * @throws {KeyError} when a decoy cannot be generated
   */
  async ready(): Promise<void> {
    await Promise.all(this.#shares.map((s) => decoyKey(s.bits)));
  }
}
