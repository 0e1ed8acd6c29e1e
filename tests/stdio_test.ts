/**
 * lib/ui/stdio.ts: stdin and stdout on Deno's handles for a script's
 * terminal (issue 15), over stand-ins for `Deno.stdin` and `Deno.stdout`
 * that the tests drive: what `process.stdin` and `process.stdout` did for
 * the piped terminal, it does (chunks, end, pause and resume, errors,
 * whole writes, a broken output).
 * @module
 */

import assert from "node:assert/strict";
import { createTerminal, DenoInput, DenoOutput } from "../lib/ui/mod.ts";
import type { UiEvent } from "../lib/client/mod.ts";

const enc = new TextEncoder();

/** A reader whose reads the test answers one by one. */
class FakeReader {
  #waiting: Array<(chunk: Uint8Array | null | Error) => void> = [];
  #ready: Array<Uint8Array | null | Error> = [];
  reads = 0;

  read(p: Uint8Array): Promise<number | null> {
    this.reads++;
    return new Promise((resolve, reject) => {
      const take = (c: Uint8Array | null | Error) => {
        if (c instanceof Error) return reject(c);
        if (c === null) return resolve(null);
        p.set(c);
        resolve(c.length);
      };
      const r = this.#ready.shift();
      if (r !== undefined) take(r);
      else this.#waiting.push(take);
    });
  }

  /** Answer the next read (now, or when it comes). */
  give(c: string | null | Error): void {
    const v = typeof c === "string" ? enc.encode(c) : c;
    const w = this.#waiting.shift();
    if (w) w(v);
    else this.#ready.push(v);
  }
}

/** A turn of the event loop, for reads already answered to arrive. */
const turn = () => new Promise((r) => setTimeout(r, 0));

Deno.test("DenoInput: data chunk by chunk once a data listener is added, then end at EOF", async () => {
  const src = new FakeReader();
  const input = new DenoInput(src);
  assert.equal(src.reads, 0, "nothing is read before anyone listens");
  const got: string[] = [];
  const ended = Promise.withResolvers<void>();
  input.on("data", (c: Uint8Array) => got.push(new TextDecoder().decode(c)));
  input.on("end", () => ended.resolve());
  assert.equal(input.isPaused(), false);
  src.give("a\nb");
  src.give("\n");
  src.give(null);
  await ended.promise;
  assert.deepEqual(got, ["a\nb", "\n"]);
});

Deno.test("DenoInput: a chunk read while paused waits for resume(), and nothing more is read meanwhile", async () => {
  const src = new FakeReader();
  const input = new DenoInput(src);
  const got: string[] = [];
  input.on("data", (c: Uint8Array) => got.push(new TextDecoder().decode(c)));
  input.pause();
  src.give("held");
  await turn();
  assert.deepEqual(got, []);
  const readsWhilePaused = src.reads;
  await turn();
  assert.equal(src.reads, readsWhilePaused, "no read while paused");
  input.resume();
  assert.deepEqual(got, ["held"]);
  src.give("next");
  await turn();
  assert.deepEqual(got, ["held", "next"]);
  input.pause();
  src.give(null);
});

Deno.test("DenoInput: a failed read is one error event, and reading stops", async () => {
  const src = new FakeReader();
  const input = new DenoInput(src);
  const errors: unknown[] = [];
  const failed = Promise.withResolvers<void>();
  input.on("error", (e: unknown) => {
    errors.push(e);
    failed.resolve();
  });
  input.on("data", () => {});
  src.give(new Error("EIO"));
  await failed.promise;
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as Error).message, "EIO");
  const reads = src.reads;
  input.resume();
  await turn();
  assert.equal(src.reads, reads, "no read after the error");
});

Deno.test("DenoOutput: a write goes out whole, however few bytes each system call takes", () => {
  const written: number[] = [];
  const out = new DenoOutput({
    writeSync(p: Uint8Array) {
      const n = Math.min(3, p.length);
      written.push(...p.subarray(0, n));
      return n;
    },
  });
  assert.equal(out.write("hello, world\n"), true);
  out.flush();
  assert.equal(
    new TextDecoder().decode(new Uint8Array(written)),
    "hello, world\n",
  );
  assert.equal(out.destroyed, false);
});

// Issue 15: one system call per event cost a burst 15% of the CPU.
Deno.test("DenoOutput: the writes of one turn of the event loop go out together, in order, in one system call at its end", async () => {
  const calls: string[] = [];
  const out = new DenoOutput({
    writeSync(p: Uint8Array) {
      calls.push(new TextDecoder().decode(p));
      return p.length;
    },
  });
  for (let i = 0; i < 100; i++) out.write(`event ${i}\n`);
  await Promise.resolve();
  assert.deepEqual(calls, [], "not before the turn ends");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(calls.length, 1);
  assert.equal(
    calls[0],
    Array.from({ length: 100 }, (_, i) => `event ${i}\n`).join(""),
  );
  out.write("later\n");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(calls.slice(1), ["later\n"]);
});

Deno.test("DenoOutput: a failed write (the reader went away) is one error event; later writes do nothing", async () => {
  let calls = 0;
  const out = new DenoOutput({
    writeSync() {
      calls++;
      throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
    },
  });
  const errors: unknown[] = [];
  out.on("error", (e: unknown) => errors.push(e));
  assert.equal(out.write("a\n"), true, "queued");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(out.write("b\n"), false);
  out.flush();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof Deno.errors.BrokenPipe);
  assert.equal(calls, 1);
  assert.equal(out.destroyed, true);
});

Deno.test("the piped terminal over DenoInput and DenoOutput: lines in order, events out, pause above the high mark, end at EOF", async () => {
  const src = new FakeReader();
  const chunks: string[] = [];
  const input = new DenoInput(src);
  const output = new DenoOutput({
    writeSync(p: Uint8Array) {
      chunks.push(new TextDecoder().decode(p));
      return p.length;
    },
  });
  const term = createTerminal({
    input,
    output,
    interactive: false,
    json: true,
    color: false,
    self: "A",
    names: () => [],
  });
  const many = Array.from({ length: 600 }, (_, i) => `line ${i}\n`).join("");
  src.give(many);
  await turn();
  assert.equal(input.isPaused(), true, "paused with 600 lines queued");
  src.give("last\n");
  src.give(null);
  const got: string[] = [];
  for await (const line of term.lines()) got.push(line);
  assert.equal(got.length, 601);
  assert.equal(got[0], "line 0");
  assert.equal(got[599], "line 599");
  assert.equal(got[600], "last");
  const ev: UiEvent = { kind: "system", text: "hello", at: 0 };
  term.print(ev);
  term.close();
  assert.deepEqual(chunks.map((c) => JSON.parse(c).text), ["hello"]);
});
