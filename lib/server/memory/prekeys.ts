/**
 * {@link MemoryPrekeys}: the {@link Prekeys} of one process, lost when it
 * stops; for tests and for a server without a disk. The SQLite one follows
 * the same contract (tests/server/prekeys_contract.ts).
 * @module
 */

import type { Prekeys, PublishedCerts, PublishedPrekey } from "../seams.ts";

interface Held {
  certs: PublishedCerts;
  /** One-time prekeys by id. */
  oneTime: Map<number, Uint8Array>;
}

const copyCerts = (c: PublishedCerts): PublishedCerts => ({
  identityCert: c.identityCert.slice(),
  signedPrekeyCert: c.signedPrekeyCert.slice(),
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Published keys in memory. Each call completes in one turn of the event
 * loop, so {@link MemoryPrekeys.take} is atomic: two takers never get the
 * same one-time prekey.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryPrekeys } from "./prekeys.ts";
 * const p = new MemoryPrekeys();
 * const certs = { identityCert: new Uint8Array([1]), signedPrekeyCert: new Uint8Array([2]) };
 * assert.equal(await p.publish("B", certs, [{ id: 2, opk: new Uint8Array(36) }, { id: 1, opk: new Uint8Array(36) }]), 2);
 * assert.equal((await p.take("B"))?.oneTime?.id, 1); // the lowest id first
 * assert.equal(await p.count("B"), 1);
 * assert.equal(await p.take("C"), undefined); // never published
 * ```
 */
export class MemoryPrekeys implements Prekeys {
  #users = new Map<string, Held>();

  publish(
    user: string,
    certs: PublishedCerts,
    oneTime: readonly PublishedPrekey[],
  ): Promise<number> {
    for (const k of oneTime) {
      if (!Number.isInteger(k.id) || k.id < 0 || k.id > 0xffff_ffff) {
        return Promise.reject(
          new RangeError(
            `id: expected an integer from 0 to 4294967295, got ${k.id}`,
          ),
        );
      }
    }
    const held = this.#users.get(user) ?? {
      certs,
      oneTime: new Map<number, Uint8Array>(),
    };
    if (!sameBytes(held.certs.identityCert, certs.identityCert)) {
      // Another identity key: the pool was made for the old one.
      held.oneTime.clear();
    }
    held.certs = copyCerts(certs);
    for (const k of oneTime) {
      if (!held.oneTime.has(k.id)) held.oneTime.set(k.id, k.opk.slice());
    }
    this.#users.set(user, held);
    return Promise.resolve(held.oneTime.size);
  }

  certs(user: string): Promise<PublishedCerts | undefined> {
    const held = this.#users.get(user);
    return Promise.resolve(held && copyCerts(held.certs));
  }

  take(
    user: string,
  ): Promise<
    { certs: PublishedCerts; oneTime: PublishedPrekey | undefined } | undefined
  > {
    const held = this.#users.get(user);
    if (!held) return Promise.resolve(undefined);
    let lowest: number | undefined;
    for (const id of held.oneTime.keys()) {
      if (lowest === undefined || id < lowest) lowest = id;
    }
    let oneTime: PublishedPrekey | undefined;
    if (lowest !== undefined) {
      oneTime = { id: lowest, opk: held.oneTime.get(lowest)! };
      held.oneTime.delete(lowest);
    }
    return Promise.resolve({ certs: copyCerts(held.certs), oneTime });
  }

  count(user: string): Promise<number> {
    return Promise.resolve(this.#users.get(user)?.oneTime.size ?? 0);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
