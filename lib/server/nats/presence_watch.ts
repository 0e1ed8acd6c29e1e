/**
 * {@link PresenceWatch}: the watch of the presence bucket (PROTOCOL.md
 * 11.3), a part of `NatsPresence` (presence.ts): every entry of the
 * KV bucket as the watch shows it, handed on one at a time; the watch made
 * again when it ends (NATS back, an error, the bucket made again), after
 * 100 ms doubling up to the heartbeat; the bucket made again when the
 * watch says it is gone; and a watch that stopped showing this node's own
 * puts taken for dead and made again.
 * @module
 */

import type { KV, KvEntry } from "@nats-io/kv";
import type { Logger } from "../../util/mod.ts";
import { isGone } from "./presence_config.ts";

/** What {@link PresenceWatch} works with, of its presence. */
export interface PresenceWatchHooks {
  /** This node's name (for the log). */
  node: string;
  /** The bucket now (it is replaced when made again). */
  kv(): KV;
  /** The presence closed: the watch ends. */
  closed(): boolean;
  /** The NATS connection closed: the watch ends. */
  ncClosed(): boolean;
  /** One entry of the bucket. */
  onEntry(e: KvEntry): void;
  /** The watch failed (true) or runs again (false). */
  failing(failing: boolean): void;
  /** The watch said the bucket is gone: make it again. */
  remake(): Promise<void>;
  /** Longest wait before watching again (ms): the heartbeat. */
  maxDelayMs: number;
  log: Logger;
}

/** The presence bucket watched, and watched again whenever the watch ends. */
export class PresenceWatch {
  readonly #h: PresenceWatchHooks;
  #watcher: { stop(): void } | undefined;
  /** Since when (Date.now()) a put succeeded that the watch has not shown yet. */
  #echoSince: number | undefined;
  #rewatchTimer: ReturnType<typeof setTimeout> | undefined;
  #rewatchWake: (() => void) | undefined;
  /** The loop; it ends once the presence closed. */
  readonly done: Promise<void>;

  /** Start watching. @param h the presence's side of it */
  constructor(h: PresenceWatchHooks) {
    this.#h = h;
    this.done = this.#loop();
  }

  /** Watch the bucket; watch again when the watch ends (NATS back, or an error). */
  async #loop(): Promise<void> {
    const h = this.#h;
    let delay = 100;
    while (!h.closed()) {
      try {
        const w = await h.kv().watch();
        if (h.closed()) {
          w.stop();
          break;
        }
        this.#watcher = w;
        h.failing(false);
        delay = 100;
        for await (const e of w) h.onEntry(e);
      } catch (e) {
        if (h.closed()) break;
        h.failing(true);
        h.log("cluster-presence-watch-failed", {
          node: h.node,
          error: e instanceof Error ? e.message : String(e),
        });
        if (isGone(e)) await h.remake();
      }
      this.#watcher = undefined;
      if (h.closed() || h.ncClosed()) break;
      await new Promise<void>((r) => {
        this.#rewatchWake = r;
        this.#rewatchTimer = setTimeout(r, delay);
      });
      this.#rewatchWake = undefined;
      delay = Math.min(delay * 2, h.maxDelayMs);
    }
  }

  /** Watch again now: the entries are read from the start (NATS came back, the bucket was made again). */
  again(): void {
    this.#watcher?.stop();
    this.#rewatchWake?.();
  }

  /** A put of ours succeeded: the watch should show it. */
  put(): void {
    this.#echoSince ??= Date.now();
  }

  /** The watch showed one of our puts: it is alive. */
  echoed(): void {
    this.#echoSince = undefined;
  }

  /**
   * A watch that did not show our own put for `staleMs / 2` is dead (its
   * stream was deleted under it): watch again.
   */
  check(staleMs: number): void {
    if (
      this.#echoSince !== undefined && this.#watcher &&
      Date.now() - this.#echoSince > staleMs / 2
    ) {
      this.#echoSince = undefined;
      this.#h.log("cluster-presence-watch-stalled", { node: this.#h.node });
      this.#watcher.stop();
    }
  }

  /** Stop: no timer left, the watch ended (await {@link done}). */
  stop(): void {
    clearTimeout(this.#rewatchTimer);
    this.#rewatchWake?.();
    this.#watcher?.stop();
  }
}
