/**
 * A pool of Web Workers that sign with one RSA-PSS private key (PROTOCOL.md
 * section 1, "Primitives": RSA-PSS SHA-256, salt 32), so the server's
 * private-key work (the SERVER_HELLO signature, PROTOCOL.md 2.2) runs on
 * every core (issue 15).
 *
 * Each worker runs one fixed script ({@link signWorkerScript}) that uses
 * WebCrypto and nothing else, loaded from a `data:` URL: no file to read,
 * so `im serve` needs no read permission for it, and a bundled or compiled
 * `im` carries it. The key goes to each worker as the non-extractable
 * `CryptoKey` itself (structured clone), never as bytes: no PKCS#8 or JWK
 * is made, held or logged. {@link SignPool.replaceKey} sends a new key to
 * every worker; a job posted after it is signed with the new key.
 *
 * Jobs go to the worker with the fewest pending, ties in turn. A worker that
 * fails (an uncaught error, or {@link SignPool.terminateWorker}) is replaced
 * at once; its pending jobs fail with {@link KeyError} `signer-lost`, one
 * error each, and the pool goes on. A place whose workers keep failing
 * before they ever sign ({@link SIGN_WORKER_RETRIES} in a row) is given up
 * rather than refilled in a loop. {@link SignPool.close} terminates every
 * worker and fails what is pending with `signer-closed`. A pool of 0
 * workers signs on the calling thread with {@link signPss}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateRsaKeyPair, loadPrivateIdentity } from "./rsa.ts";
 * import { verifyPss } from "./pss_oaep.ts";
 * import { SignPool } from "./sign_pool.ts";
 * const me = await loadPrivateIdentity((await generateRsaKeyPair(2048)).privatePem);
 * const pool = new SignPool(me.sign, { workers: 1 });
 * const msg = new TextEncoder().encode("hello");
 * assert(await verifyPss(me.publicIdentity.verify, await pool.sign(msg), msg));
 * await pool.close();
 * ```
 * @module
 */

import { KeyError, type Logger } from "../util/mod.ts";
import { PSS_SALT_LENGTH, signPss } from "./pss_oaep.ts";

/** Options of {@link SignPool}. */
export interface SignPoolOptions {
  /**
   * Workers to start (default `navigator.hardwareConcurrency`, one per
   * core); 0 signs on the calling thread.
   */
  workers?: number;
  /** Where a lost worker is reported (`sign-worker-lost`); never the key. */
  log?: Logger;
}

/** Main thread to worker. */
type ToWorker =
  | { op: "key"; key: CryptoKey; salt: number }
  | { op: "sign"; id: number; data: Uint8Array };

/** Worker to main thread. */
type FromWorker =
  | { id: number; signature: ArrayBuffer }
  | { id: number; error: string };

/**
 * The worker's code. It is turned into source text with `toString()` and
 * run in the worker, so it must use nothing from outside its own body.
 */
function signWorkerMain(): void {
  interface Scope {
    onmessage: ((e: MessageEvent) => void) | null;
    postMessage(message: unknown, transfer?: Transferable[]): void;
  }
  const scope = globalThis as unknown as Scope;
  let key: CryptoKey | undefined;
  let params: RsaPssParams = { name: "RSA-PSS", saltLength: 32 };
  scope.onmessage = (e: MessageEvent) => {
    const m = e.data;
    if (m.op === "key") {
      key = m.key;
      params = { name: "RSA-PSS", saltLength: m.salt };
      return;
    }
    if (m.op !== "sign") throw new Error("sign worker: unknown message");
    const id = m.id;
    if (key === undefined) {
      scope.postMessage({ id, error: "no key" });
      return;
    }
    crypto.subtle.sign(params, key, m.data).then(
      (signature) => scope.postMessage({ id, signature }, [signature]),
      (err) => scope.postMessage({ id, error: String(err?.message ?? err) }),
    );
  };
}

/**
 * The source text every pool worker runs (WebCrypto only).
 * @returns JavaScript module source
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { signWorkerScript } from "./sign_pool.ts";
 * assert(!signWorkerScript().includes("import"));
 * ```
 */
export function signWorkerScript(): string {
  return `(${signWorkerMain.toString()})();\n`;
}

/** The script as a `data:` URL, made when the first worker starts. */
let scriptUrl: string | undefined;

interface Job {
  resolve: (signature: Uint8Array<ArrayBuffer>) => void;
  reject: (e: Error) => void;
}

/** One worker and the jobs it has not answered yet. */
interface Slot {
  worker: Worker;
  pending: Map<number, Job>;
  /** False once it failed or was terminated: its late answers are dropped. */
  live: boolean;
  /** Workers lost in this place in a row without a signature in between. */
  failures: number;
  /** It signed at least once. */
  signed: boolean;
}

/**
 * Workers lost in one place in a row, none of them having signed, before
 * the place is given up (a worker that cannot start would be replaced in a
 * loop); with every place given up, signing goes on on the calling thread.
 */
export const SIGN_WORKER_RETRIES = 3;

function checkSignKey(key: CryptoKey): void {
  if (
    key.algorithm.name !== "RSA-PSS" || key.type !== "private" ||
    !key.usages.includes("sign")
  ) {
    throw new KeyError(
      "wrong-key",
      `Cannot sign: expected a private RSA-PSS key with usage "sign", got a ${key.type} ${key.algorithm.name} key`,
    );
  }
}

/** Workers that sign with one RSA-PSS private key; see the module text. */
export class SignPool {
  #key: CryptoKey;
  #slots: Slot[] = [];
  #log: Logger;
  #nextId = 1;
  #turn = 0;
  #closed = false;

  /**
   * Start the workers; the key is posted to each before any job.
   * @param key the RSA-PSS private key (`PrivateIdentity.sign`), non-extractable
   * @param opts how many workers; where a lost worker is reported
   * @throws {KeyError} `wrong-key` for a key of the wrong kind; `bad-workers`
   *   unless the count is an integer from 0 to 1024
   */
  constructor(key: CryptoKey, opts: SignPoolOptions = {}) {
    checkSignKey(key);
    const n = opts.workers ?? defaultSignWorkers();
    if (!Number.isInteger(n) || n < 0 || n > 1024) {
      throw new KeyError(
        "bad-workers",
        `Invalid sign worker count "${n}": expected an integer from 0 to 1024`,
      );
    }
    this.#key = key;
    this.#log = opts.log ?? (() => {});
    for (let i = 0; i < n; i++) this.#slots.push(this.#spawn());
  }

  /** Workers running (0: signing on the calling thread). */
  get size(): number {
    return this.#slots.length;
  }

  /** Jobs posted and not answered yet, over all workers. */
  get pending(): number {
    let n = 0;
    for (const s of this.#slots) n += s.pending.size;
    return n;
  }

  #spawn(failures = 0): Slot {
    scriptUrl ??= `data:text/javascript;base64,${btoa(signWorkerScript())}`;
    const worker = new Worker(scriptUrl, {
      type: "module",
      name: "im-sign",
    });
    const slot: Slot = {
      worker,
      pending: new Map(),
      live: true,
      failures,
      signed: false,
    };
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      if (!slot.live) return;
      const m = e.data;
      const job = slot.pending.get(m.id);
      if (!job) return;
      slot.pending.delete(m.id);
      if ("signature" in m) {
        slot.signed = true;
        job.resolve(new Uint8Array(m.signature));
      } else job.reject(new KeyError("sign-failed", `Cannot sign: ${m.error}`));
    };
    worker.onerror = (e: ErrorEvent) => {
      // Handled here: an error in a worker must not end the server.
      e.preventDefault();
      this.#lose(slot, e.message || "uncaught error");
    };
    worker.onmessageerror = () => this.#lose(slot, "unreadable message");
    worker.postMessage(
      { op: "key", key: this.#key, salt: PSS_SALT_LENGTH } satisfies ToWorker,
    );
    return slot;
  }

  /** A worker is gone: fail its jobs, put a new one in its place. */
  #lose(slot: Slot, why: string): void {
    if (!slot.live) return;
    slot.live = false;
    slot.worker.terminate();
    const jobs = [...slot.pending.values()];
    slot.pending.clear();
    const i = this.#slots.indexOf(slot);
    const failures = slot.signed ? 1 : slot.failures + 1;
    const replaced = i >= 0 && !this.#closed &&
      failures < SIGN_WORKER_RETRIES;
    this.#log("sign-worker-lost", {
      worker: i,
      pending: jobs.length,
      why,
      replaced,
    });
    if (replaced) this.#slots[i] = this.#spawn(failures);
    else if (i >= 0) this.#slots.splice(i, 1);
    for (const job of jobs) {
      job.reject(
        new KeyError(
          "signer-lost",
          "Cannot sign: the signing worker stopped; try again",
        ),
      );
    }
  }

  /** The worker with the fewest pending jobs; ties go in turn. */
  #pick(): Slot {
    const n = this.#slots.length;
    let best = this.#slots[this.#turn % n]!;
    for (let k = 1; k < n; k++) {
      const s = this.#slots[(this.#turn + k) % n]!;
      if (s.pending.size < best.pending.size) best = s;
    }
    this.#turn = (this.#turn + 1) % n;
    return best;
  }

  /**
   * Sign with RSA-PSS SHA-256, salt 32 bytes (RFC 8017 8.1), on a worker.
   * @param data the bytes to sign (copied)
   * @returns the signature, as long as the modulus
   * @throws {KeyError} `signer-lost` when the worker stopped before it
   *   answered, `signer-closed` after {@link close}, `sign-failed`
   */
  sign(data: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#closed) {
      return Promise.reject(
        new KeyError("signer-closed", "Cannot sign: the server is closing"),
      );
    }
    if (this.#slots.length === 0) return signPss(this.#key, data);
    const slot = this.#pick();
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<
      Uint8Array<ArrayBuffer>
    >();
    slot.pending.set(id, { resolve, reject });
    slot.worker.postMessage(
      { op: "sign", id, data: data.slice() } satisfies ToWorker,
    );
    return promise;
  }

  /**
   * Sign with another key from now on: posted to every worker, so a job
   * posted after this call is signed with `key`. Jobs already posted finish
   * with the key they were posted under.
   * @param key the new RSA-PSS private key
   * @throws {KeyError} `wrong-key`
   */
  replaceKey(key: CryptoKey): void {
    checkSignKey(key);
    this.#key = key;
    for (const s of this.#slots) {
      if (s.live) {
        s.worker.postMessage(
          { op: "key", key, salt: PSS_SALT_LENGTH } satisfies ToWorker,
        );
      }
    }
  }

  /**
   * End worker `i` as a crash would (tests use it to stop a worker in the
   * middle of a job): its pending jobs fail with `signer-lost`, and a new
   * worker with the current key takes its place, unless this is the
   * {@link SIGN_WORKER_RETRIES}th in a row there with no signature made.
   * @param i the worker's index, below {@link size}
   */
  terminateWorker(i: number): void {
    const slot = this.#slots[i];
    if (slot) this.#lose(slot, "terminated");
  }

  /** Terminate every worker; pending jobs fail with `signer-closed`. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const s of this.#slots) {
      s.live = false;
      s.worker.terminate();
      for (const job of s.pending.values()) {
        job.reject(
          new KeyError("signer-closed", "Cannot sign: the server is closing"),
        );
      }
      s.pending.clear();
    }
    this.#slots = [];
    return Promise.resolve();
  }
}

/**
 * One worker per core: `navigator.hardwareConcurrency` (at least 1).
 * @returns the default worker count
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultSignWorkers } from "./sign_pool.ts";
 * assert(defaultSignWorkers() >= 1);
 * ```
 */
export function defaultSignWorkers(): number {
  return Math.max(1, navigator.hardwareConcurrency || 1);
}
