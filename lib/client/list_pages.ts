/**
 * `!list`'s pages (PROTOCOL.md 5.3): the `list` to send for `!list`,
 * `!list <start>` and `!list +`, and the line an answer ends with. Pure;
 * the client sends and shows.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ListPages } from "./list_pages.ts";
 * const pages = new ListPages();
 * assert.equal(pages.request({ next: true }), undefined);
 * const ask = pages.request({ prefix: "a" })!;
 * assert.deepEqual(ask, { t: "list", limit: 100, prefix: "a" });
 * const more = pages.shown(ask, { users: [{ name: "al" }], more: 3 });
 * assert.equal(more, "... and 3 more online (!list + for more)");
 * assert.deepEqual(pages.request({ next: true }), {
 *   t: "list",
 *   limit: 100,
 *   prefix: "a",
 *   after: "al",
 * });
 * ```
 * @module
 */

import type { ClientToServer } from "../proto/mod.ts";

/** Users a `!list` asks for at once (PROTOCOL.md 5.3). */
export const LIST_PAGE = 100;

/** The `list` request of a page. */
export type ListRequest = Extract<ClientToServer, { t: "list" }>;

/** The last page shown: where the next one starts. */
interface Shown {
  prefix?: string;
  last?: string;
  more: number;
}

/** What `!list` asked for last, so `!list +` can ask for what follows. */
export class ListPages {
  #shown: Shown | undefined;

  /**
   * The request for `!list` (`prefix`: only names starting with it) or,
   * with `next`, for the page after the last one shown.
   * @param cmd the parsed command
   * @returns the request, or undefined for `next` when nothing follows
   */
  request(cmd: { prefix?: string; next?: true }): ListRequest | undefined {
    if (!cmd.next) {
      return {
        t: "list",
        limit: LIST_PAGE,
        ...(cmd.prefix !== undefined && { prefix: cmd.prefix }),
      };
    }
    const s = this.#shown;
    if (!s || s.more === 0 || s.last === undefined) return undefined;
    return {
      t: "list",
      limit: LIST_PAGE,
      ...(s.prefix !== undefined && { prefix: s.prefix }),
      after: s.last,
    };
  }

  /**
   * Note a page the user was shown.
   * @param asked the request it answers, if known
   * @param page its users and the count beyond them
   * @returns the line to show after it when more follow
   */
  shown(
    asked: ClientToServer | undefined,
    page: { users: readonly { name: string }[]; more: number },
  ): string | undefined {
    const list = asked?.t === "list" ? asked : undefined;
    // An empty page keeps the place it was asked from.
    const last = page.users.at(-1)?.name ?? list?.after;
    this.#shown = {
      ...(list?.prefix !== undefined && { prefix: list.prefix }),
      ...(last !== undefined && { last }),
      more: page.more,
    };
    if (page.more <= 0) return undefined;
    return `... and ${page.more} more online (!list + for more${
      list?.prefix === undefined ? ", !list <start of a name> for some" : ""
    })`;
  }
}
