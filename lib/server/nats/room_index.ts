/**
 * {@link RoomIndex}: each user's rooms in the cluster's room store
 * (PROTOCOL.md 11.6 _The index_), a part of the `JetStreamRoomStore`
 * (room_store.ts). A KV bucket `im_<cluster>_room_index`, one key per user
 * whose value, sealed for the key's subject under labels of its own, lists
 * room names: every room the user holds a position in, and maybe more
 * (rooms it left, rooms gone). A name is added, by a conditional put,
 * before the change that gives the user a position is committed, and never
 * removed. The key `index.built` says the index covers the stream; a store
 * opened without it builds the index from a full read of the rooms first.
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import { StorageType } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import { deriveKeySync } from "../../crypto/mod.ts";
import {
  isValidUsername,
  openStored,
  sealStored,
  type StoreKeys,
} from "../../proto/mod.ts";
import {
  ByteReader,
  ByteWriter,
  fromUtf8,
  type LogFields,
  type Logger,
  ProtocolError,
  utf8,
  wipe,
} from "../../util/mod.ts";

/** The labels of the index's keys, derived from the cluster's store keys (11.6). */
export const ROOM_INDEX_LABELS = {
  enc: "im v1 cluster room index enc",
  iv: "im v1 cluster room index iv",
  mac: "im v1 cluster room index mac",
} as const;

/** The key saying the index covers the stream (not a user: rule 2.9 names have no dot). */
export const INDEX_BUILT_KEY = "index.built";

/** The bucket of a cluster's room index. */
export function roomIndexBucket(cluster: string): string {
  return `im_${cluster}_room_index`;
}

/** A user's room names: `u32 count || bytes8(name)...`, sorted, each once. */
function encodeNames(names: Iterable<string>): Uint8Array {
  const sorted = [...new Set(names)].sort();
  const w = new ByteWriter().u32(sorted.length);
  for (const n of sorted) w.bytes8(utf8(n));
  return w.finish();
}

function decodeNames(b: Uint8Array): string[] {
  const r = new ByteReader(b, "room index");
  const out: string[] = [];
  for (let n = r.u32(); n > 0; n--) {
    const name = fromUtf8(r.bytes8(), "room index name");
    if (!isValidUsername(name)) {
      throw new ProtocolError("store-malformed", "room index name");
    }
    out.push(name);
  }
  r.end();
  return out;
}

const isCasRefusal = (e: unknown) => /wrong last sequence/i.test(String(e));

/** Options of {@link RoomIndex.open}. */
export interface RoomIndexOptions {
  nc: NatsConnection;
  cluster: string;
  keys: StoreKeys;
  replicas: number;
  log?: Logger;
  /** A value that does not open was refused (11.6). */
  refuse: (code: string, fields: LogFields) => void;
}

/** Each user's rooms (PROTOCOL.md 11.6 _The index_). */
export class RoomIndex {
  readonly #kv: KV;
  readonly #bucket: string;
  readonly #keys: StoreKeys;
  readonly #refuse: RoomIndexOptions["refuse"];
  #built = false;

  private constructor(kv: KV, bucket: string, o: RoomIndexOptions) {
    this.#kv = kv;
    this.#bucket = bucket;
    const empty = new Uint8Array(0);
    const enc = deriveKeySync(o.keys.enc, empty, ROOM_INDEX_LABELS.enc);
    const ivk = deriveKeySync(o.keys.ivk, empty, ROOM_INDEX_LABELS.iv);
    const mac = deriveKeySync(o.keys.mac, empty, ROOM_INDEX_LABELS.mac);
    this.#keys = { enc, ivk, mac, wipe: () => wipe(enc, ivk, mac) };
    this.#refuse = o.refuse;
  }

  /**
   * Open the bucket, making it when there is none (one already there is
   * used as it is; another replica count is logged).
   */
  static async open(o: RoomIndexOptions): Promise<RoomIndex> {
    const bucket = roomIndexBucket(o.cluster);
    const kv = await new Kvm(o.nc).create(bucket, {
      history: 1,
      storage: StorageType.File,
      replicas: o.replicas,
    });
    const had = (await kv.status()).replicas;
    if (had !== o.replicas) {
      o.log?.("cluster-replicas-differ", {
        stream: `KV_${bucket}`,
        replicas: had,
        wanted: o.replicas,
      });
    }
    const index = new RoomIndex(kv, bucket, o);
    // Its presence is the word (what NATS could do with it, it can do by
    // dropping a user's key: 11.6).
    index.#built = (await kv.get(INDEX_BUILT_KEY))?.operation === "PUT";
    return index;
  }

  /** Does the index cover the stream (else readers read every room)? */
  get built(): boolean {
    return this.#built;
  }

  /** Say the index covers the stream (after a full build). */
  async markBuilt(): Promise<void> {
    await this.#kv.put(INDEX_BUILT_KEY, new Uint8Array(0));
    this.#built = true;
  }

  #subject(key: string): string {
    return `$KV.${this.#bucket}.${key}`;
  }

  #seal(key: string, names: Iterable<string>): Uint8Array {
    return sealStored(this.#keys, {
      subject: this.#subject(key),
      at: 0,
      value: encodeNames(names),
    });
  }

  /** The key's names and revision (names undefined: no value, or one refused). */
  async #read(
    key: string,
  ): Promise<{ names: string[] | undefined; revision: number | undefined }> {
    const e = await this.#kv.get(key);
    if (!e) return { names: undefined, revision: undefined };
    if (e.operation !== "PUT") {
      return { names: undefined, revision: e.revision };
    }
    try {
      const o = openStored(this.#keys, e.value, this.#subject(key));
      return { names: decodeNames(o.value), revision: e.revision };
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : "store-malformed";
      this.#refuse(code, { index: key.slice(0, 40), revision: e.revision });
      return { names: undefined, revision: e.revision };
    }
  }

  /** The rooms the index names for `user` (a superset of its rooms), sorted. */
  async rooms(user: string): Promise<string[]> {
    if (!isValidUsername(user)) return [];
    return (await this.#read(user)).names ?? [];
  }

  /**
   * Add `room` to each user's names (a conditional put each; a lost race
   * reads again). Done before the change that gives them a position.
   */
  async add(users: Iterable<string>, room: string): Promise<void> {
    for (const user of new Set(users)) {
      if (!isValidUsername(user)) continue;
      for (;;) {
        const { names, revision } = await this.#read(user);
        if (names?.includes(room)) break;
        const value = this.#seal(user, [...(names ?? []), room]);
        try {
          if (revision === undefined) await this.#kv.create(user, value);
          else await this.#kv.update(user, value, revision);
          break;
        } catch (e) {
          if (!isCasRefusal(e) && !/key exists/i.test(String(e))) throw e;
        }
      }
    }
  }

  /** Wipe the keys; the bucket stays. */
  close(): void {
    this.#keys.wipe();
  }
}
