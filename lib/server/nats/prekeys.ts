/**
 * {@link KvPrekeys}: the users' published mailbox keys (PROTOCOL.md 9.9) of
 * a cluster, in one JetStream KV bucket `im_<cluster>_prekeys` (history 1,
 * file storage, replicas configurable), so every node hands out the same
 * pool (11.6):
 *
 * - `certs.<user>`: `u32 len(IK_CERT) || IK_CERT || SPK_CERT`;
 * - `opk.<user>.<gen>.<id>`: a one-time prekey, `<gen>` the first 8 bytes of
 *   SHA-256 of the `IK_CERT` it was published under (hex), `<id>` its id in
 *   10 decimal digits.
 *
 * Every value is sealed with the cluster key for its key's subject
 * (`$KV.im_<cluster>_prekeys.<key>`, `sealStored` of
 * lib/proto/cluster_store.ts), so NATS can neither read, change nor move
 * it to another user or key; a value that does not open is refused
 * (counted, logged `cluster-store-refused`): certificates that do not open
 * are as none, a one-time prekey that does not open is passed over.
 *
 * A one-time prekey is handed out by deleting its key with the revision it
 * was read at (compare-and-set): of two nodes that read it, one delete
 * succeeds and the other is refused and tries the next key, so none is ever
 * handed out twice. Only the keys of the held certificates' `<gen>` are
 * counted or handed out: a new `IK_CERT` switches the pool in the one put
 * of the certificates, and the old keys are purged after it (a crash in
 * between leaves keys never handed out, purged by the next change).
 *
 * Keys are listed from the stream's subjects (stream info with a subject
 * filter, answered by the stream's leader), never by a consumer: an
 * ephemeral consumer placed on a NATS server that died does not answer
 * while that server is down. So a taken key's subject is purged after its
 * delete; a delete marker left by a node that died in between is passed
 * over and purged by the next take (11.6).
 *
 * @example
 * ```ts ignore
 * const prekeys = await KvPrekeys.open({ nc, cluster: "team", keys: new StoreKeys(clusterKey) });
 * await prekeys.publish("bob", certs, [{ id: 1, opk }]);  // 1
 * await prekeys.take("bob");  // { certs, oneTime: { id: 1, opk } }, on one node only
 * ```
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  type JetStreamManager,
  jetstreamManager,
  StorageType,
} from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import {
  isValidUsername,
  openStored,
  sealStored,
  type StoreKeys,
} from "../../proto/mod.ts";
import { type Logger, ProtocolError } from "../../util/mod.ts";
import { Refusals } from "./refusals.ts";
import type { Prekeys, PublishedCerts, PublishedPrekey } from "../seams.ts";

/** The bucket of a cluster's prekeys. */
export function prekeysBucket(cluster: string): string {
  return `im_${cluster}_prekeys`;
}

/** Options of {@link KvPrekeys.open}. */
export interface KvPrekeysOptions {
  /** A connected NATS client, with JetStream on the server; the caller closes it. */
  nc: NatsConnection;
  /** The cluster's name (rule 2.9). */
  cluster: string;
  /** The cluster key's store keys: every value is sealed with them (11.6). */
  keys: StoreKeys;
  /** Where refused values are logged (`cluster-store-refused`). */
  log?: Logger;
  /**
   * The bucket's replicas when it is made (1 to 5, default 1); one already
   * there with another count is used as it is and logged
   * `cluster-replicas-differ` (11.6).
   */
  replicas?: number;
}

function checkUser(user: string): void {
  if (!isValidUsername(user)) {
    throw new RangeError(`KvPrekeys: not a username: ${JSON.stringify(user)}`);
  }
}

function encodeCerts(c: PublishedCerts): Uint8Array {
  const out = new Uint8Array(
    4 + c.identityCert.length + c.signedPrekeyCert.length,
  );
  new DataView(out.buffer).setUint32(0, c.identityCert.length);
  out.set(c.identityCert, 4);
  out.set(c.signedPrekeyCert, 4 + c.identityCert.length);
  return out;
}

function decodeCerts(b: Uint8Array): PublishedCerts {
  if (b.length < 4) throw new ProtocolError("store-malformed", "certs");
  const n = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0);
  if (4 + n > b.length) throw new ProtocolError("store-malformed", "certs");
  return {
    identityCert: b.slice(4, 4 + n),
    signedPrekeyCert: b.slice(4 + n),
  };
}

/** The pool's name for an `IK_CERT`. */
async function generation(identityCert: Uint8Array): Promise<string> {
  const h = new Uint8Array(
    await crypto.subtle.digest("SHA-256", identityCert.slice()),
  );
  return [...h.subarray(0, 8)].map((x) => x.toString(16).padStart(2, "0"))
    .join("");
}

const isCasRefusal = (e: unknown) => /wrong last sequence/i.test(String(e));

/** The Prekeys of a cluster, in a KV bucket (PROTOCOL.md 11.6). */
export class KvPrekeys implements Prekeys {
  readonly #kv: KV;
  readonly #nc: NatsConnection;
  readonly #bucket: string;
  readonly #keys: StoreKeys;
  readonly #refusals: Refusals;
  #jsm: Promise<JetStreamManager> | undefined;
  /** Takes of one user on this node run one at a time (fewer refused deletes). */
  readonly #takes = new Map<string, Promise<unknown>>();
  #closed = false;

  private constructor(
    kv: KV,
    nc: NatsConnection,
    bucket: string,
    o: KvPrekeysOptions,
  ) {
    this.#kv = kv;
    this.#nc = nc;
    this.#bucket = bucket;
    this.#keys = o.keys;
    this.#refusals = new Refusals(
      "cluster-store-refused",
      o.log ?? (() => {}),
    );
  }

  /** Values refused so far (they did not open), by code (11.6). */
  refusals(): Record<string, number> {
    return this.#refusals.byCode();
  }

  /** The subject a key's value is sealed for. */
  #subject(key: string): string {
    return `$KV.${this.#bucket}.${key}`;
  }

  #seal(key: string, value: Uint8Array): Uint8Array {
    return sealStored(this.#keys, {
      subject: this.#subject(key),
      at: Date.now(),
      value,
    });
  }

  /** The value of `key`, or undefined (counted, logged) when it does not open. */
  #unseal(key: string, sealed: Uint8Array): Uint8Array | undefined {
    try {
      return openStored(this.#keys, sealed, this.#subject(key)).value;
    } catch (e) {
      const code = e instanceof ProtocolError ? e.code : "store-malformed";
      this.#refusals.refuse(code, { key: key.slice(0, 80) });
      return undefined;
    }
  }

  /**
   * Open the bucket, making it when there is none.
   * @throws {RangeError} a cluster name that is not a username
   */
  static async open(opts: KvPrekeysOptions): Promise<KvPrekeys> {
    if (!isValidUsername(opts.cluster)) {
      throw new RangeError(
        `not a cluster name: ${JSON.stringify(opts.cluster)}`,
      );
    }
    const bucket = prekeysBucket(opts.cluster);
    const replicas = opts.replicas ?? 1;
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
      throw new RangeError(`replicas ${replicas}: 1 to 5`);
    }
    const kv = await new Kvm(opts.nc).create(bucket, {
      history: 1,
      storage: StorageType.File,
      replicas,
    });
    // 11.6: a bucket already there is used as it is; another count is said.
    const had = (await kv.status()).replicas;
    if (had !== replicas) {
      opts.log?.("cluster-replicas-differ", {
        stream: `KV_${bucket}`,
        replicas: had,
        wanted: replicas,
      });
    }
    return new KvPrekeys(kv, opts.nc, bucket, opts);
  }

  #open(): void {
    if (this.#closed) throw new Error("KvPrekeys: closed");
  }

  async #held(user: string): Promise<PublishedCerts | undefined> {
    const key = `certs.${user}`;
    const e = await this.#kv.get(key);
    if (!e || e.operation !== "PUT") return undefined;
    const value = this.#unseal(key, e.value);
    if (!value) return undefined; // refused: as no certificates
    try {
      return decodeCerts(value);
    } catch (err) {
      this.#refusals.refuse((err as ProtocolError).code, { key });
      return undefined;
    }
  }

  /**
   * The keys that match `filter` (a key with wildcards), from the subjects
   * the stream holds (11.6): no consumer, so a dead NATS server that one
   * would be placed on does not stall it. A key whose delete marker is
   * still there is listed too.
   */
  async #list(filter: string): Promise<string[]> {
    this.#jsm ??= jetstreamManager(this.#nc, { checkAPI: false });
    const prefix = `$KV.${this.#bucket}.`;
    const info = await (await this.#jsm).streams.info(`KV_${this.#bucket}`, {
      subjects_filter: prefix + filter,
    });
    return Object.keys(info.state.subjects ?? {}).map((s) =>
      s.slice(prefix.length)
    );
  }

  /** Remove what a key's subject holds (a delete marker); failures are left for the next take. */
  async #purge(key: string): Promise<void> {
    try {
      this.#jsm ??= jetstreamManager(this.#nc, { checkAPI: false });
      await (await this.#jsm).streams.purge(`KV_${this.#bucket}`, {
        filter: this.#subject(key),
      });
    } catch {
      // Left: passed over and purged by a later take.
    }
  }

  /** The keys of the user's pool `gen`, by id. */
  async #pool(user: string, gen: string): Promise<string[]> {
    return (await this.#list(`opk.${user}.${gen}.*`)).sort();
  }

  async publish(
    user: string,
    certs: PublishedCerts,
    oneTime: readonly PublishedPrekey[],
  ): Promise<number> {
    this.#open();
    checkUser(user);
    for (const k of oneTime) {
      if (!Number.isInteger(k.id) || k.id < 0 || k.id > 0xffff_ffff) {
        throw new RangeError(
          `KvPrekeys: one-time prekey id ${k.id} is not a u32`,
        );
      }
    }
    const old = await this.#held(user);
    const gen = await generation(certs.identityCert);
    const oldGen = old ? await generation(old.identityCert) : undefined;
    const certsKey = `certs.${user}`;
    await this.#kv.put(certsKey, this.#seal(certsKey, encodeCerts(certs)));
    for (const k of oneTime) {
      const key = `opk.${user}.${gen}.${String(k.id).padStart(10, "0")}`;
      try {
        await this.#kv.create(key, this.#seal(key, k.opk));
      } catch (e) {
        if (!isCasRefusal(e)) throw e; // held already: the first key stays
      }
    }
    if (oldGen !== gen) await this.#dropOtherPools(user, gen);
    return await this.count(user);
  }

  /** Purge the user's one-time prekeys of every pool but `gen`. */
  async #dropOtherPools(user: string, gen: string): Promise<void> {
    const gens = new Set<string>();
    for (const k of await this.#list(`opk.${user}.*.*`)) {
      const g = k.split(".")[2]!;
      if (g !== gen) gens.add(g);
    }
    if (gens.size === 0) return;
    this.#jsm ??= jetstreamManager(this.#nc, { checkAPI: false });
    const jsm = await this.#jsm;
    for (const g of gens) {
      await jsm.streams.purge(`KV_${this.#bucket}`, {
        filter: `$KV.${this.#bucket}.opk.${user}.${g}.>`,
      });
    }
  }

  async certs(user: string): Promise<PublishedCerts | undefined> {
    this.#open();
    checkUser(user);
    return await this.#held(user);
  }

  take(
    user: string,
  ): Promise<
    { certs: PublishedCerts; oneTime: PublishedPrekey | undefined } | undefined
  > {
    try {
      this.#open();
      checkUser(user);
    } catch (e) {
      return Promise.reject(e);
    }
    const prev = this.#takes.get(user) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => this.#take(user));
    const tail = next.catch(() => {});
    this.#takes.set(user, tail);
    tail.then(() => {
      if (this.#takes.get(user) === tail) this.#takes.delete(user);
    });
    return next;
  }

  async #take(
    user: string,
  ): Promise<
    { certs: PublishedCerts; oneTime: PublishedPrekey | undefined } | undefined
  > {
    const certs = await this.#held(user);
    if (!certs) return undefined;
    const gen = await generation(certs.identityCert);
    for (const key of await this.#pool(user, gen)) {
      const e = await this.#kv.get(key);
      if (!e || e.operation !== "PUT") {
        // A delete marker whose purge was lost (a node died in between).
        if (e) await this.#purge(key);
        continue;
      }
      const opk = this.#unseal(key, e.value);
      if (!opk) continue; // refused: passed over, left where it is
      try {
        // Compare-and-set: refused when another taker deleted it first.
        await this.#kv.delete(key, { previousSeq: e.revision });
      } catch (err) {
        if (isCasRefusal(err)) continue;
        throw err;
      }
      // The marker out of the listing (11.6).
      await this.#purge(key);
      const id = Number(key.split(".")[3]);
      return { certs, oneTime: { id, opk } };
    }
    return { certs, oneTime: undefined };
  }

  async count(user: string): Promise<number> {
    this.#open();
    checkUser(user);
    const certs = await this.#held(user);
    if (!certs) return 0;
    return (await this.#pool(user, await generation(certs.identityCert)))
      .length;
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
