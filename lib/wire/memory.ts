/**
 * An in-memory {@link FrameTransport} pair for channel and peer tests: what
 * one end sends, the other receives, unless the test's `tap` changes it.
 * @module
 */

import type { FrameTransport } from "./tcp.ts";

/** One end of a {@link memoryPair}. */
export class MemoryTransport implements FrameTransport {
  readonly remote: string;
  other: MemoryTransport | undefined;
  /** Sees every payload this end sends; returns the payloads to deliver instead. */
  tap: (payload: Uint8Array) => Uint8Array[] = (p) => [p];
  /** Everything this end sent, before the tap. */
  readonly sent: Uint8Array[] = [];
  #queue: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(name: string) {
    this.remote = name;
  }

  /** Deliver a payload to this end as if the other end sent it. */
  inject(p: Uint8Array): void {
    this.#queue.push(p);
    this.#wake?.();
  }

  send(payload: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("closed"));
    const copy = payload.slice();
    this.sent.push(copy);
    for (const p of this.tap(copy)) this.other?.inject(p);
    return Promise.resolve();
  }

  async recv(): Promise<Uint8Array | null> {
    while (this.#queue.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = undefined;
    }
    return this.#queue.shift()!;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake?.();
    this.other?.close();
  }
}

/**
 * Two connected ends; closing one closes both, like a TCP connection.
 * @returns the two ends
 */
export function memoryPair(): [MemoryTransport, MemoryTransport] {
  const a = new MemoryTransport("memory:a"),
    b = new MemoryTransport("memory:b");
  a.other = b;
  b.other = a;
  return [a, b];
}
