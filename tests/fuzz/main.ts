/**
 * `deno task fuzz`: property-based fuzzing of every decoder (decoders.ts),
 * at least 10,000 cases each.
 *
 * Usage: deno task fuzz [--runs N] [--seed S] [--only NAME]
 * Prints one line per decoder and exits 1 if any broke its contract, with
 * fast-check's counterexample and the seed to reproduce it.
 * @module
 */

import { parseArgs } from "node:util";
import { checkTarget, TARGETS } from "./decoders.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "10000" },
    seed: { type: "string" },
    only: { type: "string" },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(
    `im fuzz: error: --runs "${values.runs}" is not a positive integer`,
  );
  Deno.exit(2);
}
const seed = values.seed === undefined
  ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0
  : Number(values.seed);
const targets = TARGETS.filter((t) =>
  values.only === undefined || t.name === values.only
);
if (targets.length === 0) {
  console.error(
    `im fuzz: error: no decoder named "${values.only}"; have ${
      TARGETS.map((t) => t.name).join(", ")
    }`,
  );
  Deno.exit(2);
}
console.log(
  `fuzzing ${targets.length} decoders, ${runs} cases each, seed ${seed}`,
);
let failed = 0;
let total = 0;
for (const t of targets) {
  const t0 = performance.now();
  const r = checkTarget(t, runs, seed);
  total += r.numRuns;
  const ms = Math.round(performance.now() - t0);
  if (r.failed) {
    failed++;
    console.log(
      `FAIL ${t.name}: after ${r.numRuns} cases (${ms} ms)\n${r.report}`,
    );
  } else {
    console.log(`ok   ${t.name}: ${r.numRuns} cases (${ms} ms)`);
  }
}
console.log(`${total} cases in all`);
console.log(`${targets.length - failed} passed, ${failed} failed`);
Deno.exit(failed === 0 ? 0 : 1);
