/**
 * Internal: {@link allSettledOrThrow}, for work that must not outlive a
 * failure (key generation that would otherwise go on writing files after
 * an error was already reported).
 * @module
 */

/**
 * Like `Promise.all`, but waits for every promise before throwing the first
 * error, so no work is left running (or writing) after a failure.
 * @param ps the promises
 * @returns their values, in order
 * @throws the first rejection, once all have settled
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { allSettledOrThrow } from "./async.ts";
 * assert.deepEqual(await allSettledOrThrow([Promise.resolve(1), Promise.resolve("a")]), [1, "a"]);
 * await assert.rejects(allSettledOrThrow([Promise.reject(new Error("x")), Promise.resolve(2)]));
 * ```
 */
export async function allSettledOrThrow<T extends readonly unknown[] | []>(
  ps: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === "rejected") throw r.reason;
  return rs.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}
