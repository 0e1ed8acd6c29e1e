/**
 * A queue of the user's lines with one async consumer, and the marks of
 * back-pressure on a fast piped input ({@link HIGH_MARK}, {@link LOW_MARK}).
 * A skipped line's report waits in the queue as a function, so reports come
 * out in input order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LineQueue } from "./line_queue.ts";
 * const q = new LineQueue();
 * q.push("a");
 * q.push("b");
 * q.end(false);
 * const got: string[] = [];
 * for await (const line of q.iterate()) got.push(line);
 * assert.deepEqual(got, ["a", "b"]);
 * ```
 * @module
 */

/** Back-pressure of piped input: pause above this many queued lines. */
export const HIGH_MARK = 256;
/** Back-pressure of piped input: resume below this many queued lines. */
export const LOW_MARK = 64;

/**
 * A queue of lines with one async consumer. A function in the queue is a
 * deferred report (a skipped line): it runs when the consumer reaches it,
 * so reports come out in input order.
 */
export class LineQueue {
  #items: Array<string | (() => void)> = [];
  #ended = false;
  #wake: (() => void) | null = null;
  /** Called when the queue drains below the low mark (for back-pressure). */
  onDrain: () => void = () => {};

  get size(): number {
    return this.#items.length;
  }

  push(line: string | (() => void)): void {
    if (this.#ended) return;
    this.#items.push(line);
    this.#poke();
  }

  /** No more items; with `discard`, also drop what was not consumed yet. */
  end(discard: boolean): void {
    if (discard) this.#items = [];
    this.#ended = true;
    this.#poke();
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async *iterate(): AsyncGenerator<string> {
    while (true) {
      const item = this.#items.shift();
      if (item !== undefined) {
        if (this.#items.length < LOW_MARK) this.onDrain();
        if (typeof item === "string") yield item;
        else item();
      } else if (this.#ended) {
        return;
      } else {
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
    }
  }
}
