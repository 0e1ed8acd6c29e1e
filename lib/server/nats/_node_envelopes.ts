/**
 * {@link NodeEnvelopes}: the sealed envelopes (PROTOCOL.md 11.2) a node's
 * delivery sends and opens (11.4): its boot and sequence numbers, the
 * replay window with one boot per node, and the refusals of what does not
 * open, counted per code and logged at most once per code per 10 s.
 * @module
 */

import {
  type ClusterKeys,
  EnvelopeWindow,
  openEnvelope,
  sealEnvelope,
} from "../../proto/mod.ts";
import {
  fromUtf8,
  type Logger,
  ProtocolError,
  randomBytes,
  utf8,
} from "../../util/mod.ts";

/** At most one refusal log line per code per this many ms (11.4). */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** How long a node's earlier boot is remembered after a newer one is seen (ms). */
const RETIRED_BOOT_MS = 5 * 60_000;

/**
 * The replay window, one boot per node: once a node's newer boot is seen,
 * its earlier boots' windows are forgotten and their envelopes refused
 * (`cluster-replayed`) while they could still pass the time check.
 */
class BootWindow extends EnvelopeWindow {
  #current = new Map<string, string>();
  #retired = new Map<string, number>();
  readonly #now: () => number;

  constructor(now: () => number) {
    super();
    this.#now = now;
  }

  override take(node: string, boot: Uint8Array, seq: number): boolean {
    const id = `${node}\0${boot.toHex()}`;
    const now = this.#now();
    for (const [old, at] of this.#retired) {
      if (now - at > RETIRED_BOOT_MS) this.#retired.delete(old);
    }
    if (this.#retired.has(id)) return false;
    const current = this.#current.get(node);
    if (current !== id) {
      if (current !== undefined) {
        this.#retired.set(current, now);
        this.forget(node);
      }
      this.#current.set(node, id);
    }
    return super.take(node, boot, seq);
  }

  /** Boots remembered (for tests). */
  get boots(): number {
    return this.#current.size + this.#retired.size;
  }
}

/** An envelope that opened: who sealed it, when, and its JSON object. */
export interface OpenedRequest {
  node: string;
  time: number;
  body: Record<string, unknown>;
}

/** The envelopes of one node's delivery, sealed and opened under the cluster key. */
export class NodeEnvelopes {
  readonly #node: string;
  readonly #keys: ClusterKeys;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #boot = randomBytes(8);
  readonly #window: BootWindow;
  #seq = 0;
  #logged = new Map<string, { at: number; since: number }>();
  #refused = 0;
  #refusedByCode = new Map<string, number>();

  /**
   * @param o this node's name, the cluster key's keys, the clock, the logger
   */
  constructor(
    o: { node: string; keys: ClusterKeys; now: () => number; log: Logger },
  ) {
    this.#node = o.node;
    this.#keys = o.keys;
    this.#now = o.now;
    this.#log = o.log;
    this.#window = new BootWindow(this.#now);
  }

  /** Envelopes refused so far. */
  get refused(): number {
    return this.#refused;
  }

  /** Refusals so far by code. */
  refusals(): Record<string, number> {
    return Object.fromEntries(this.#refusedByCode);
  }

  /**
   * Seal a payload as JSON, bound to the subject it is sent on (11.2).
   * @param subject where it goes
   * @param payload a JSON value
   * @returns the envelope
   */
  seal(subject: string, payload: unknown): Uint8Array {
    return sealEnvelope(this.#keys, {
      node: this.#node,
      boot: this.#boot,
      seq: ++this.#seq,
      time: this.#now(),
      subject,
      payload: utf8(JSON.stringify(payload)),
    });
  }

  /**
   * Open an envelope; a refusal is counted and logged, and gives undefined.
   * @param bytes the envelope
   * @param subject the subject it came on
   * @param from the node it is expected from, for the log (`?`: any)
   * @returns its sender, time and JSON object, or undefined
   */
  open(
    bytes: Uint8Array,
    subject: string,
    from: string,
  ): OpenedRequest | undefined {
    try {
      const opened = openEnvelope(this.#keys, bytes, {
        subject,
        now: this.#now(),
        window: this.#window,
      });
      let body: unknown;
      try {
        body = JSON.parse(fromUtf8(opened.payload, "cluster payload"));
      } catch {
        throw new ProtocolError("cluster-malformed", "payload is not JSON");
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        throw new ProtocolError("cluster-malformed", "payload not an object");
      }
      return {
        node: opened.node,
        time: opened.time,
        body: body as Record<string, unknown>,
      };
    } catch (e) {
      this.refuse(e, from);
      return undefined;
    }
  }

  /**
   * Count a refusal, and log it unless a line of its code went out in the
   * last 10 s (`cluster-refused`).
   * @param e why (a {@link ProtocolError}'s code, else `cluster-malformed`)
   * @param from the node it came from, or `?`
   */
  refuse(e: unknown, from: string): void {
    const code = e instanceof ProtocolError ? e.code : "cluster-malformed";
    this.#refused++;
    this.#refusedByCode.set(code, (this.#refusedByCode.get(code) ?? 0) + 1);
    // One line per code per 10 s, with how many since the last line: a
    // flood of junk cannot flood the log (the counters count them all).
    const now = this.#now();
    const l = this.#logged.get(code);
    if (l && now - l.at < REFUSAL_LOG_INTERVAL_MS) {
      l.since++;
      return;
    }
    this.#logged.set(code, { at: now, since: 0 });
    this.#log("cluster-refused", {
      node: this.#node,
      from,
      code,
      reason: e instanceof Error ? e.message : String(e),
      ...(l && l.since > 0 && { suppressed: l.since }),
    });
  }
}
