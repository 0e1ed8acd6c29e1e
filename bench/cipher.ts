/**
 * Throughput of the synchronous hot path: MD-CFB at 100 B, 1 KiB and 64 KiB,
 * HMAC-SHA256 of 32 bytes, SHA-256 of 64 KiB, plus the alternatives that
 * `lib/sha256.ts` explains it does not use (node:crypto HMAC and WebCrypto
 * HMAC, per 32-byte call).
 *
 * Run alone: `deno run bench/cipher.ts [--quick]` (no
 * permissions are needed).
 *
 * @example
 * ```ts ignore
 * import { benchCipher } from "./cipher.ts";
 * const rows = await benchCipher({ quick: true });
 * console.assert(rows.length > 0);
 * ```
 * @module
 */

import { createHash, createHmac } from "node:crypto";
import { MdCfb } from "../lib/mdcfb.ts";
import { HmacSha256, sha256 } from "../lib/sha256.ts";

/** One measured figure. */
export interface BenchRow {
  /** What was measured, e.g. `mdcfb 65536 B`. */
  name: string;
  /** The figure. */
  value: number;
  /** Its unit, e.g. `MB/s` or `us/op`. */
  unit: string;
}

/** Run `fn` repeatedly for about `ms` milliseconds; returns ops per second. */
function opsPerSecond(fn: () => void, ms: number): number {
  // Warm-up: let the JIT optimise before timing.
  const warmEnd = performance.now() + Math.min(ms / 2, 200);
  while (performance.now() < warmEnd) fn();
  let ops = 0;
  let batch = 1;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < batch; i++) fn();
    ops += batch;
    batch *= 2;
    now = performance.now();
  }
  return ops / ((now - start) / 1000);
}

/** Like {@link opsPerSecond} for an async operation (awaited one at a time). */
async function asyncOpsPerSecond(
  fn: () => Promise<unknown>,
  ms: number,
): Promise<number> {
  const warmEnd = performance.now() + Math.min(ms / 2, 200);
  while (performance.now() < warmEnd) await fn();
  let ops = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    await fn();
    ops++;
    now = performance.now();
  }
  return ops / ((now - start) / 1000);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Measure the cipher hot path and print one line per figure
 * (`mdcfb 65536 B: 41.2 MB/s`).
 * @param opts `quick` shortens each measurement (~0.1 s instead of ~1 s)
 * @returns the figures, in print order
 * @example
 * ```ts ignore
 * import { benchCipher } from "./cipher.ts";
 * for (const r of await benchCipher({ quick: true })) console.log(r.name, r.value, r.unit);
 * ```
 */
export async function benchCipher(
  opts: { quick: boolean },
): Promise<Array<{ name: string; value: number; unit: string }>> {
  const ms = opts.quick ? 100 : 1000;
  const rows: BenchRow[] = [];
  const add = (name: string, value: number, unit: string) => {
    const v = round(value, value >= 100 ? 0 : 2);
    rows.push({ name, value: v, unit });
    console.log(`${name}: ${v} ${unit}`);
  };
  const key = crypto.getRandomValues(new Uint8Array(32));
  const iv = crypto.getRandomValues(new Uint8Array(32));
  const msg32 = crypto.getRandomValues(new Uint8Array(32));
  const tag = new Uint8Array(32);

  // MD-CFB encryption throughput, MB = 10^6 bytes.
  const m = new MdCfb(key);
  for (const size of [100, 1024, 65536]) {
    const p = crypto.getRandomValues(new Uint8Array(size));
    const ops = opsPerSecond(() => m.encrypt(iv, p), ms);
    add(`mdcfb ${size} B`, (ops * size) / 1e6, "MB/s");
  }
  m.wipe();

  // HMAC-SHA256 of one 32-byte block, the MD-CFB step.
  const h = new HmacSha256(key);
  add(
    "hmac-sha256 32 B (ours, macBlock32Into)",
    opsPerSecond(() => h.macBlock32Into(msg32, 0, tag, 0), ms),
    "ops/s",
  );
  add(
    "hmac-sha256 32 B (ours, mac)",
    opsPerSecond(() => h.mac(msg32), ms),
    "ops/s",
  );
  h.wipe();

  // SHA-256 of 64 KiB.
  const big = crypto.getRandomValues(new Uint8Array(65536));
  add(
    "sha256 65536 B (ours)",
    (opsPerSecond(() => sha256(big), ms) * big.length) / 1e6,
    "MB/s",
  );

  // The alternatives, for the record in lib/sha256.ts.
  add(
    "sha256 65536 B (node:crypto, OpenSSL)",
    (opsPerSecond(() => createHash("sha256").update(big).digest(), ms) *
      big.length) / 1e6,
    "MB/s",
  );
  add(
    "hmac-sha256 32 B (node:crypto createHmac)",
    opsPerSecond(() => createHmac("sha256", key).update(msg32).digest(), ms),
    "ops/s",
  );
  const wk = await crypto.subtle.importKey(
    "raw",
    key,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  add(
    "hmac-sha256 32 B (WebCrypto, awaited)",
    await asyncOpsPerSecond(() => crypto.subtle.sign("HMAC", wk, msg32), ms),
    "ops/s",
  );
  // MD-CFB built on WebCrypto HMAC, one await per block: what we avoid.
  const p1k = crypto.getRandomValues(new Uint8Array(1024));
  add(
    "mdcfb 1024 B (WebCrypto HMAC, awaited per block)",
    (await asyncOpsPerSecond(() => webMdcfb(wk, iv, p1k), ms) * 1024) / 1e6,
    "MB/s",
  );
  return rows;
}

/** MD-CFB encryption with one awaited WebCrypto HMAC per block. */
async function webMdcfb(
  key: CryptoKey,
  iv: Uint8Array<ArrayBuffer>,
  p: Uint8Array,
): Promise<Uint8Array> {
  const c = new Uint8Array(p.length);
  let prev = iv;
  for (let off = 0; off < p.length; off += 32) {
    const b = new Uint8Array(await crypto.subtle.sign("HMAC", key, prev));
    const n = Math.min(32, p.length - off);
    for (let i = 0; i < n; i++) c[off + i] = p[off + i]! ^ b[i]!;
    prev = c.slice(off, off + 32);
  }
  return c;
}

if (import.meta.main) {
  await benchCipher({ quick: Deno.args.includes("--quick") });
}
