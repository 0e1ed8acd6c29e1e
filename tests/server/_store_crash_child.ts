/**
 * The child of the crash test (sqlite_store_test.ts): opens the store at
 * `Deno.args[0]`, appends records for user "A" in a loop, and right after
 * each append resolves writes `seq` and the record's number to stdout, one
 * line each. It runs until it is killed.
 * @module
 */

import { SqliteStore } from "../../lib/server/mod.ts";

/** The bytes of record `i`, which the parent checks. */
export function crashRecord(i: number): Uint8Array {
  return new TextEncoder().encode(`record ${i} `.repeat(1 + (i % 7)));
}

if (import.meta.main) {
  const store = await SqliteStore.open(Deno.args[0]!);
  const out = Deno.stdout;
  const enc = new TextEncoder();
  for (let i = 0;; i++) {
    const seq = await store.append("A", crashRecord(i));
    // Written synchronously: once the line is out, the parent may rely on it.
    const line = enc.encode(`${seq} ${i}\n`);
    for (let n = 0; n < line.length;) n += out.writeSync(line.subarray(n));
  }
}
