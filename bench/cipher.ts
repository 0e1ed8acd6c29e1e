/**
 * Throughput of the synchronous hot path: MD-CFB at 100 B, 1 KiB and 64 KiB,
 * seal+open of a 100-byte record, HMAC-SHA256 of 32 bytes, SHA-256 of
 * 64 KiB, plus the alternatives that `lib/crypto/sha256.ts` explains it does not
 * use (node:crypto HMAC and WebCrypto HMAC, per 32-byte call).
 *
 * Run alone: `deno run bench/cipher.ts [--quick]` (no permissions are
 * needed; no limits or ratios then: `deno task bench` measures those).
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
import { HmacSha256, MdCfb, sha256 } from "../lib/crypto/mod.ts";
import { sha256Compress, sha256Schedule } from "../lib/crypto/sha256.ts";
import { RecordOpener, RecordSealer, RecordType } from "../lib/record/mod.ts";
import { wasmSha256Compressor } from "./_wasm_sha256.ts";
import { type Figure, opsPerSecond, Report } from "./_stats.ts";
import type { Limits } from "./limits.ts";

/** Options of {@link benchCipher}. */
export interface CipherBenchOptions {
  /** Shorten each measurement (~0.1 s instead of ~1 s). */
  quick: boolean;
  /** Where figures go (default: a report printing to stdout). */
  report?: Report;
  /** The machine's limits, for ratios. */
  limits?: Limits;
}

/**
 * SHA-256 compressions of sealing one record with a body of `n` bytes
 * (lib/record/record.ts): the IV is HMAC of 8 bytes (2), MD-CFB is 2 per 32-byte
 * block, the tag is HMAC of the 17-byte header and the body.
 */
function sealCompressions(n: number): number {
  const hmac = (len: number) => Math.floor((len + 8) / 64) + 1 + 1;
  return hmac(8) + 2 * Math.ceil(n / 32) + hmac(17 + n);
}

/**
 * Measure the cipher hot path and print one line per figure
 * (`mdcfb 65536 B: 41.2 MB/s`), each with its limit when `limits` has
 * OpenSSL's figures. Synchronous figures are per second of CPU time, as
 * `openssl speed` counts them: MD-CFB at 100 B, 1 KiB and 64 KiB; seal+open of a
 * 100-byte record; HMAC-SHA256 of 32 bytes and SHA-256 of 64 KiB as
 * `lib/crypto/sha256.ts` computes them; and, for the record, the alternatives it
 * does not use (node:crypto and WebCrypto).
 * @param opts quick mode, report, limits
 * @returns the figures of this section, in print order
 * @example
 * ```ts ignore
 * import { benchCipher } from "./cipher.ts";
 * for (const r of await benchCipher({ quick: true })) console.log(r.name, r.value, r.unit);
 * ```
 */
export async function benchCipher(opts: CipherBenchOptions): Promise<Figure[]> {
  const ms = opts.quick ? 100 : 1000;
  const report = opts.report ?? new Report(console.log);
  const first = report.figures.length;
  const sec = "cipher";
  const ossl = opts.limits?.openssl ?? null;
  // OpenSSL SHA-256 compressions per second (64-byte blocks).
  const compressPerSec = ossl ? ossl.sha256BytesPerSec / 64 : NaN;
  const key = crypto.getRandomValues(new Uint8Array(32));
  const iv = crypto.getRandomValues(new Uint8Array(32));
  const msg32 = crypto.getRandomValues(new Uint8Array(32));
  const tag = new Uint8Array(32);

  // MD-CFB encryption throughput, MB = 10^6 bytes. Limit: two SHA-256
  // compressions per 32-byte block at OpenSSL's rate, i.e. its SHA-256 / 4.
  const m = new MdCfb(key);
  for (const size of [100, 1024, 65536]) {
    const p = crypto.getRandomValues(new Uint8Array(size));
    const ops = opsPerSecond(() => m.encrypt(iv, p), ms);
    report.add(sec, `mdcfb ${size} B`, (ops * size) / 1e6, "MB/s", {
      limit: ossl ? ossl.sha256BytesPerSec / 4 / 1e6 : undefined,
      limitSource: "openssl sha256 / 4 (2 compressions per 32 B)",
      note: "encrypt, per CPU second like openssl speed",
    });
  }
  const p64 = crypto.getRandomValues(new Uint8Array(65536));
  const c64 = m.encrypt(iv, p64);
  report.add(
    sec,
    "mdcfb decrypt 65536 B",
    (opsPerSecond(() => m.decrypt(iv, c64), ms) * 65536) / 1e6,
    "MB/s",
    {
      limit: ossl ? ossl.sha256BytesPerSec / 4 / 1e6 : undefined,
      limitSource: "openssl sha256 / 4",
    },
  );
  m.wipe();

  // One 100-byte record sealed and opened (lib/record/record.ts), fresh sequence
  // numbers each time, as a channel does.
  const keys = {
    enc: crypto.getRandomValues(new Uint8Array(32)),
    iv: crypto.getRandomValues(new Uint8Array(32)),
    mac: crypto.getRandomValues(new Uint8Array(32)),
  };
  const sealer = new RecordSealer(keys);
  const opener = new RecordOpener(keys);
  const body = crypto.getRandomValues(new Uint8Array(100));
  const now = Date.now();
  const pairs = opsPerSecond(
    () => opener.open(sealer.seal(RecordType.DATA, body, now), now),
    ms,
  );
  const compressions = 2 * sealCompressions(100);
  report.add(sec, "record seal+open 100 B", 1e6 / pairs, "us", {
    limit: ossl ? (compressions / compressPerSec) * 1e6 : undefined,
    limitSource: `${compressions} compressions at openssl sha256 speed`,
  });
  const sealer2 = new RecordSealer(keys);
  report.add(
    sec,
    "record seal 100 B",
    1e6 / opsPerSecond(() => sealer2.seal(RecordType.DATA, body, now), ms),
    "us",
    {
      limit: ossl ? (compressions / 2 / compressPerSec) * 1e6 : undefined,
      limitSource: `${compressions / 2} compressions at openssl sha256 speed`,
    },
  );
  // Open alone: records sealed beforehand, opened in order (a batch more
  // than the timed loop can use is made; the opener restarts if it runs out).
  const batch = Array.from(
    { length: opts.quick ? 20_000 : 200_000 },
    () => sealer2.seal(RecordType.DATA, body, now),
  );
  let opener2 = new RecordOpener(keys), next = 0;
  const openUs = 1e6 / opsPerSecond(() => {
    if (next === batch.length) {
      opener2 = new RecordOpener(keys);
      next = 0;
    }
    opener2.open(batch[next++]!, now);
  }, ms);
  report.add(sec, "record open 100 B", openUs, "us", {
    limit: ossl ? (compressions / 2 / compressPerSec) * 1e6 : undefined,
    limitSource: `${compressions / 2} compressions at openssl sha256 speed`,
  });
  // The floor in JavaScript: the same compressions at our own compression
  // speed (one HMAC of 32 bytes is exactly two), measured here, so that what
  // the record layer adds to its compressions shows.
  const h32 = new HmacSha256(key);
  const ourCompressUs = 1e6 /
    (2 * opsPerSecond(() => h32.macBlock32Into(msg32, 0, tag, 0), ms));
  h32.wipe();
  report.add(
    sec,
    "record seal+open 100 B vs our SHA-256",
    report.get("record seal+open 100 B")!.value,
    "us",
    {
      limit: compressions * ourCompressUs,
      limitSource: `${compressions} compressions at ${
        ourCompressUs.toFixed(3)
      } us, ours (hmac-sha256 32 B / 2)`,
    },
  );
  // Would another SHA-256 on this runtime lower that floor? Our
  // compression alone (no HMAC around it); the same 64 rounds compiled as
  // WebAssembly (bench/_wasm_sha256.ts), called the same way; and
  // WebCrypto's native SHA-256 (SHA-NI where the CPU has it) of 55 bytes,
  // one compression, which can only be awaited.
  const st = new Int32Array(8).fill(0x5a5a5a5a);
  sha256Schedule.fill(0x3c3c3c3c);
  const jsUs = 1e6 / opsPerSecond(() => sha256Compress(st, 0, st, 0), ms);
  const wasm = wasmSha256Compressor();
  wasm.block.fill(0x3c3c3c3c);
  const wasmUs = 1e6 / opsPerSecond(() => wasm.compress(), ms);
  report.add(sec, "sha256 compression (ours, JavaScript)", jsUs, "us");
  report.add(
    sec,
    "sha256 compression (the same rounds in WebAssembly)",
    wasmUs,
    "us",
    { limit: jsUs, limitSource: "ours, JavaScript, measured above" },
  );
  const b55 = new Uint8Array(55);
  report.add(
    sec,
    "sha256 55 B, one compression (WebCrypto, awaited)",
    1e6 /
      await asyncOpsPerSecond(() => crypto.subtle.digest("SHA-256", b55), ms),
    "us",
    { limit: jsUs, limitSource: "ours, JavaScript, measured above" },
  );
  // Native SHA-256 (OpenSSL's, SHA-NI where the CPU has it) called
  // synchronously through Deno's FFI: one SHA256_Transform per compression.
  const ffiUs = nativeCompressUs(ms);
  if (typeof ffiUs === "number") {
    report.add(
      sec,
      "sha256 compression (OpenSSL through Deno.dlopen)",
      ffiUs,
      "us",
      { limit: jsUs, limitSource: "ours, JavaScript, measured above" },
    );
  } else report.note(`sha256 through Deno.dlopen not measured: ${ffiUs.why}`);
  report.add(
    sec,
    "record seal+open 100 B vs WebAssembly SHA-256",
    report.get("record seal+open 100 B")!.value,
    "us",
    {
      limit: compressions * wasmUs,
      limitSource: `${compressions} compressions at ${
        wasmUs.toFixed(3)
      } us (WebAssembly), nothing else`,
    },
  );
  sealer.wipe();
  sealer2.wipe();
  opener.wipe();
  opener2.wipe();

  // HMAC-SHA256 of one 32-byte block, the MD-CFB step.
  const h = new HmacSha256(key);
  const hmacLimit = {
    limit: ossl?.hmac32PerSec,
    limitSource: "openssl speed -hmac sha256 -bytes 32",
  };
  report.add(
    sec,
    "hmac-sha256 32 B (ours, macBlock32Into)",
    opsPerSecond(() => h.macBlock32Into(msg32, 0, tag, 0), ms),
    "ops/s",
    hmacLimit,
  );
  report.add(
    sec,
    "hmac-sha256 32 B (ours, mac)",
    opsPerSecond(() => h.mac(msg32), ms),
    "ops/s",
    hmacLimit,
  );
  const k1 = crypto.getRandomValues(new Uint8Array(1024));
  report.add(
    sec,
    "hmac-sha256 1024 B (ours, mac)",
    (opsPerSecond(() => h.mac(k1), ms) * 1024) / 1e6,
    "MB/s",
    {
      limit: ossl ? ossl.sha256BytesPerSec / 1e6 : undefined,
      limitSource: "openssl sha256 16384 B",
    },
  );
  h.wipe();

  // SHA-256 of 64 KiB.
  const big = crypto.getRandomValues(new Uint8Array(65536));
  report.add(
    sec,
    "sha256 65536 B (ours)",
    (opsPerSecond(() => sha256(big), ms) * big.length) / 1e6,
    "MB/s",
    {
      limit: ossl ? ossl.sha256BytesPerSec / 1e6 : undefined,
      limitSource: "openssl sha256 16384 B",
    },
  );

  // The same against OpenSSL without SHA-NI: the best software can do on
  // CPUs without those instructions (or from JavaScript, on any CPU).
  const noNi = ossl?.sha256NoShaNiBytesPerSec;
  if (noNi !== undefined && Number.isFinite(noNi)) {
    report.add(
      sec,
      "sha256 65536 B (ours) vs openssl without SHA-NI",
      report.get("sha256 65536 B (ours)")!.value,
      "MB/s",
      {
        limit: noNi / 1e6,
        limitSource: "openssl sha256, SHA-NI masked off",
      },
    );
    report.add(
      sec,
      "mdcfb 65536 B vs openssl without SHA-NI",
      report.get("mdcfb 65536 B")!.value,
      "MB/s",
      {
        limit: noNi / 4 / 1e6,
        limitSource: "openssl sha256 / 4, SHA-NI masked off",
      },
    );
  }

  // The alternatives, for the record in lib/crypto/sha256.ts.
  report.add(
    sec,
    "sha256 65536 B (node:crypto, OpenSSL)",
    (opsPerSecond(() => createHash("sha256").update(big).digest(), ms) *
      big.length) / 1e6,
    "MB/s",
  );
  report.add(
    sec,
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
  report.add(
    sec,
    "hmac-sha256 32 B (WebCrypto, awaited)",
    await asyncOpsPerSecond(() => crypto.subtle.sign("HMAC", wk, msg32), ms),
    "ops/s",
  );
  // MD-CFB built on WebCrypto HMAC, one await per block: what we avoid.
  const p1k = crypto.getRandomValues(new Uint8Array(1024));
  report.add(
    sec,
    "mdcfb 1024 B (WebCrypto HMAC, awaited per block)",
    (await asyncOpsPerSecond(() => webMdcfb(wk, iv, p1k), ms) * 1024) / 1e6,
    "MB/s",
  );
  return report.figures.slice(first);
}

/**
 * Microseconds per SHA-256 compression through OpenSSL's SHA256_Transform
 * called by Deno's FFI (needs --allow-ffi and libcrypto.so.3), or why not.
 */
function nativeCompressUs(ms: number): number | { why: string } {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { why: "no --allow-ffi" };
  }
  let lib;
  try {
    lib = Deno.dlopen("libcrypto.so.3", {
      SHA256_Init: { parameters: ["buffer"], result: "i32" },
      SHA256_Transform: { parameters: ["buffer", "buffer"], result: "void" },
    });
  } catch (e) {
    return { why: `libcrypto.so.3 not loaded (${(e as Error).message})` };
  }
  try {
    // SHA256_CTX is 112 bytes; the transform reads and writes its state.
    const ctx = new Uint8Array(112);
    const block = new Uint8Array(64).fill(0x3c);
    lib.symbols.SHA256_Init(ctx);
    const t = lib.symbols.SHA256_Transform;
    return 1e6 / opsPerSecond(() => t(ctx, block), ms);
  } finally {
    lib.close();
  }
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
