/**
 * The V8 flags `im` runs with (README "Deploying"; BENCHMARKS.md issue 15,
 * "Push mode and V8's young generation"): deno.json's `im`, `install` and
 * `compile` tasks cap V8's young generation at 1 MiB a semi-space, so a
 * server's young generation does not grow to 32 MiB in a login ramp and
 * stay committed. A process started with the task's flags is measured
 * through an allocation burst against one started without them.
 */

import assert from "node:assert/strict";
import { join } from "node:path";

const CONFIG = new URL("../../deno.json", import.meta.url);

function tasks(): Record<string, string> {
  const config = JSON.parse(Deno.readTextFileSync(CONFIG)) as {
    tasks: Record<string, string>;
  };
  return config.tasks;
}

/** The `--v8-flags=` option of a task's command line, if any. */
function v8Option(task: string): string | undefined {
  return /(?:^|\s)(--v8-flags=\S+)/.exec(task)?.[1];
}

/** Allocates short-lived objects, then prints the young generation's size. */
const BURST = `
import v8 from "node:v8";
const keep = [];
for (let i = 0; i < 2e6; i++) {
  keep.push({ a: i, b: [i] });
  if (keep.length > 50000) keep.length = 0;
}
const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
console.log(ns.space_size);
`;

async function youngGenerationAfterBurst(
  dir: string,
  v8: string[],
): Promise<number> {
  const script = join(dir, "burst.js");
  await Deno.writeTextFile(script, BURST);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...v8, script],
    // Our environment's DENO_V8_FLAGS would add flags to both runs.
    clearEnv: true,
    env: { HOME: Deno.env.get("HOME") ?? "/tmp" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

Deno.test("im's tasks run with V8's young generation capped at 1 MiB: im, install and compile alike, and V8 keeps to it through an allocation burst that grows it past 8 MiB without the flag", async () => {
  const t = tasks();
  const im = v8Option(t.im!);
  assert.equal(im, "--v8-flags=--max-semi-space-size=1");
  assert.equal(v8Option(t.install!), im, "deno task install runs im as im");
  assert.equal(v8Option(t.compile!), im, "deno task compile builds it in");
  const dir = await Deno.makeTempDir({ prefix: "im-v8-flags-" });
  try {
    const capped = await youngGenerationAfterBurst(dir, [im]);
    const free = await youngGenerationAfterBurst(dir, []);
    const MiB = 1 << 20;
    // Two 1 MiB semi-spaces (2 MiB, 1.25-1.75 MiB seen); 32 MiB without.
    assert.ok(capped <= 4 * MiB, `capped: ${capped} B`);
    assert.ok(free > 8 * MiB, `without the flag: ${free} B`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
