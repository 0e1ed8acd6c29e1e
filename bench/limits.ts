/**
 * The machine's limits, measured in the same run as our figures: OpenSSL
 * (`openssl speed`) for the crypto, bare Deno loopback TCP for latency and
 * message rate, and a description of the machine itself.
 *
 * @example
 * ```ts ignore
 * import { measureLimits } from "./limits.ts";
 * const limits = await measureLimits(report, { quick: true });
 * console.log(limits.openssl?.sha256BytesPerSec);
 * ```
 * @module
 */

import { percentile, procText, type Report } from "./_stats.ts";

/** What `openssl speed` measured. */
export interface OpensslFigures {
  /** `openssl version`. */
  version: string;
  /** SHA-256 throughput at 16 KiB blocks, bytes per second. */
  sha256BytesPerSec: number;
  /**
   * The same with the SHA-NI instructions masked off (`OPENSSL_ia32cap`):
   * OpenSSL's best vector code, what software without SHA-NI can hope for.
   * NaN when it could not be measured.
   */
  sha256NoShaNiBytesPerSec: number;
  /** HMAC-SHA256 of 32-byte messages, operations per second. */
  hmac32PerSec: number;
  /** RSA private operations per second (`sign/s`), by modulus size. */
  rsaPrivatePerSec: Record<number, number>;
  /** RSA public operations per second (`verify/s`), by modulus size. */
  rsaPublicPerSec: Record<number, number>;
  /** X25519 key agreements per second (`ecdhx25519`). */
  x25519PerSec: number;
}

/** The limits later sections compare against. */
export interface Limits {
  /** Null when openssl is missing or failed. */
  openssl: OpensslFigures | null;
  /** Bare loopback TCP echo round trip, ms (p50 and p99). */
  echoRttP50Ms: number;
  echoRttP99Ms: number;
  /** Bare TCP, one write per message of {@link BARE_MESSAGE_BYTES}: messages per second, one pair and 50 pairs. */
  bareMsgsPerSec1: number;
  bareMsgsPerSec50: number;
  /** CPU cores. */
  cores: number;
}

/** Size of one message in the bare TCP rate test: about one sealed chat record with its frame header. */
export const BARE_MESSAGE_BYTES = 200;

/** A short description of the machine. */
export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  deno: string;
  v8: string;
  typescript: string;
  os: string;
  openssl: string;
}

/**
 * Describe the machine: CPU model and cores from `/proc/cpuinfo`, memory,
 * the Deno, V8 and TypeScript versions, the kernel.
 * @param openssl the `openssl version` line, or a note that it is missing
 * @returns the description
 * @example
 * ```ts ignore
 * import { describeMachine } from "./limits.ts";
 * console.log((await describeMachine("OpenSSL 3.0")).cpu);
 * ```
 */
export async function describeMachine(openssl: string): Promise<Machine> {
  const cpuinfo = await procText("/proc/cpuinfo") ?? "";
  const cpu = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ??
    "unknown";
  const mem = /^MemTotal:\s+(\d+) kB/m.exec(
    await procText("/proc/meminfo") ?? "",
  );
  const version = await procText("/proc/version") ?? Deno.build.os;
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memoryGiB: mem ? Math.round(Number(mem[1]) / 1024 / 1024) : NaN,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    os: version.split(" ").slice(0, 3).join(" "),
    openssl,
  };
}

async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      env,
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/**
 * Run `openssl speed` in machine-readable mode and parse it: SHA-256 at
 * 16 KiB, HMAC-SHA256 of 32 bytes, RSA 2048 and 3072 sign and verify,
 * X25519.
 * (Plain `openssl speed hmac` measures HMAC-MD5, so we ask for
 * `-hmac sha256` instead.)
 * @param seconds seconds per algorithm
 * @returns the figures, or null when openssl is missing or fails
 * @example
 * ```ts ignore
 * import { opensslSpeed } from "./limits.ts";
 * console.log(await opensslSpeed(1));
 * ```
 */
export async function opensslSpeed(
  seconds: number,
): Promise<OpensslFigures | null> {
  const version = await run("openssl", ["version"]);
  if (version === null) return null;
  const s = String(seconds);
  const sha = await run("openssl", [
    "speed",
    "-mr",
    "-seconds",
    s,
    "-bytes",
    "16384",
    "sha256",
  ]);
  // Bit 29 of the second capability word is SHA-NI (OpenSSL's
  // OPENSSL_ia32cap(3)); masking it selects the AVX2/AVX-512 code.
  const shaNoNi = await run("openssl", [
    "speed",
    "-mr",
    "-seconds",
    s,
    "-bytes",
    "16384",
    "sha256",
  ], { OPENSSL_ia32cap: ":~0x20000000" });
  const hmac = await run("openssl", [
    "speed",
    "-mr",
    "-seconds",
    s,
    "-bytes",
    "32",
    "-hmac",
    "sha256",
  ]);
  const rsa = await run("openssl", [
    "speed",
    "-mr",
    "-seconds",
    s,
    "rsa2048",
    "rsa3072",
    "ecdhx25519",
  ]);
  if (sha === null || hmac === null || rsa === null) return null;
  // `+F:<idx>:<name>:<bytes per second>` for digests and MACs.
  const shaRate = Number(/^\+F:\d+:sha256:([\d.]+)/m.exec(sha)?.[1]);
  const shaNoNiRate = Number(
    /^\+F:\d+:sha256:([\d.]+)/m.exec(shaNoNi ?? "")?.[1],
  );
  const hmacRate = Number(/^\+F:\d+:hmac\(sha256\):([\d.]+)/m.exec(hmac)?.[1]);
  // `+F2:<idx>:<bits>:<sign/s>:<verify/s>` for RSA.
  const rsaPrivatePerSec: Record<number, number> = {};
  const rsaPublicPerSec: Record<number, number> = {};
  for (const m of rsa.matchAll(/^\+F2:\d+:(\d+):([\d.]+):([\d.]+)/gm)) {
    rsaPrivatePerSec[Number(m[1])] = Number(m[2]);
    rsaPublicPerSec[Number(m[1])] = Number(m[3]);
  }
  // `+F5:<idx>:<bits>:<ops/s>:<s/op>` for ECDH.
  const x25519PerSec = Number(/^\+F5:\d+:\d+:([\d.]+)/m.exec(rsa)?.[1]);
  if (!(shaRate > 0) || !(hmacRate > 0) || !rsaPrivatePerSec[3072]) {
    return null;
  }
  return {
    version: version.trim(),
    sha256BytesPerSec: shaRate,
    sha256NoShaNiBytesPerSec: shaNoNiRate,
    hmac32PerSec: hmacRate / 32,
    rsaPrivatePerSec,
    rsaPublicPerSec,
    x25519PerSec,
  };
}

async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

/**
 * Bare loopback TCP echo (Deno.listen/connect, TCP_NODELAY on both ends, both
 * in this process): the round trip of a 100-byte message, the latency floor
 * for anything we send over loopback.
 * @param n round trips to time
 * @returns the round-trip times in ms
 * @example
 * ```ts ignore
 * import { tcpEchoRtts } from "./limits.ts";
 * console.log(await tcpEchoRtts(100));
 * ```
 */
export async function tcpEchoRtts(n: number): Promise<number[]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const server = await listener.accept();
  client.setNoDelay(true);
  server.setNoDelay(true);
  const echo = (async () => {
    const buf = new Uint8Array(4096);
    for (;;) {
      let k: number | null;
      try {
        k = await server.read(buf);
      } catch {
        return;
      }
      if (k === null) return;
      let off = 0;
      while (off < k) off += await server.write(buf.subarray(off, k));
    }
  })();
  const msg = new Uint8Array(100).fill(7);
  const back = new Uint8Array(100);
  const rtts: number[] = [];
  for (let i = 0; i < n + 20; i++) {
    const t = performance.now();
    await client.write(msg);
    await readFull(client, back);
    if (i >= 20) rtts.push(performance.now() - t);
  }
  client.close();
  await echo;
  server.close();
  listener.close();
  return rtts;
}

/**
 * Bare TCP message rate: `pairs` connections, each writer awaiting one
 * write of {@link BARE_MESSAGE_BYTES} per message (what our transport does
 * per record), the readers counting bytes. The floor for our message rate.
 * @param pairs connections at once
 * @param total messages over all pairs
 * @returns messages per second, all pairs together
 * @example
 * ```ts ignore
 * import { tcpMessageRate } from "./limits.ts";
 * console.log(await tcpMessageRate(1, 20_000));
 * ```
 */
export async function tcpMessageRate(
  pairs: number,
  total: number,
): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns: Array<[Deno.TcpConn, Deno.TcpConn]> = [];
  for (let i = 0; i < pairs; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    const s = await listener.accept();
    c.setNoDelay(true);
    s.setNoDelay(true);
    conns.push([c, s]);
  }
  listener.close();
  const per = Math.ceil(total / pairs);
  const bytes = per * BARE_MESSAGE_BYTES;
  const start = performance.now();
  await Promise.all(conns.map(async ([c, s]) => {
    const reader = (async () => {
      const buf = new Uint8Array(64 * 1024);
      let got = 0;
      while (got < bytes) {
        const k = await s.read(buf);
        if (k === null) break;
        got += k;
      }
    })();
    const msg = new Uint8Array(BARE_MESSAGE_BYTES).fill(1);
    for (let i = 0; i < per; i++) {
      let off = 0;
      while (off < msg.length) off += await c.write(msg.subarray(off));
    }
    await reader;
  }));
  const secs = (performance.now() - start) / 1000;
  for (const [c, s] of conns) {
    c.close();
    s.close();
  }
  return (per * pairs) / secs;
}

/**
 * Measure every limit and print it.
 * @param report where figures go
 * @param opts `quick` for fewer samples
 * @returns the limits
 * @example
 * ```ts ignore
 * import { measureLimits } from "./limits.ts";
 * const limits = await measureLimits(report, { quick: true });
 * ```
 */
export async function measureLimits(
  report: Report,
  opts: { quick: boolean },
): Promise<Limits> {
  const sec = "limits";
  const openssl = await opensslSpeed(1);
  if (openssl === null) {
    report.note(
      "openssl is missing or failed: crypto limits skipped, ratios left out",
    );
  } else {
    report.add(
      sec,
      "openssl sha256 16384 B",
      openssl.sha256BytesPerSec / 1e6,
      "MB/s",
    );
    report.add(
      sec,
      "openssl sha256 16384 B, SHA-NI off",
      openssl.sha256NoShaNiBytesPerSec / 1e6,
      "MB/s",
      { note: "OPENSSL_ia32cap masks the SHA extension: AVX2 code" },
    );
    report.add(sec, "openssl hmac-sha256 32 B", openssl.hmac32PerSec, "ops/s");
    for (const bits of [2048, 3072]) {
      report.add(
        sec,
        `openssl rsa${bits} private op`,
        1000 / (openssl.rsaPrivatePerSec[bits] ?? NaN),
        "ms",
      );
      report.add(
        sec,
        `openssl rsa${bits} public op`,
        1000 / (openssl.rsaPublicPerSec[bits] ?? NaN),
        "ms",
      );
    }
    report.add(sec, "openssl x25519 derive", 1e6 / openssl.x25519PerSec, "us");
  }
  const rtts = await tcpEchoRtts(opts.quick ? 500 : 5000);
  const echoRttP50Ms = percentile(rtts, 50);
  const echoRttP99Ms = percentile(rtts, 99);
  report.add(sec, "tcp echo rtt p50", echoRttP50Ms * 1000, "us", {
    note: `${rtts.length} round trips of 100 B`,
  });
  report.add(sec, "tcp echo rtt p99", echoRttP99Ms * 1000, "us");
  const total = opts.quick ? 20_000 : 100_000;
  const bareMsgsPerSec1 = await tcpMessageRate(1, total);
  report.add(sec, "tcp one-way msgs/s, 1 pair", bareMsgsPerSec1, "msg/s", {
    note: `one awaited write of ${BARE_MESSAGE_BYTES} B per message`,
  });
  const bareMsgsPerSec50 = await tcpMessageRate(50, total);
  report.add(sec, "tcp one-way msgs/s, 50 pairs", bareMsgsPerSec50, "msg/s");
  return {
    openssl,
    echoRttP50Ms,
    echoRttP99Ms,
    bareMsgsPerSec1,
    bareMsgsPerSec50,
    cores: navigator.hardwareConcurrency,
  };
}
