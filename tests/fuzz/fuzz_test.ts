/**
 * The fixed-seed subset of the decoder fuzzing (see decoders.ts): 300 cases
 * per decoder in the normal suite. `deno task fuzz` runs >= 10,000 each.
 */

import assert from "node:assert/strict";
import {
  checkTarget,
  decoderTarget,
  fc,
  hostile,
  TARGETS,
} from "./decoders.ts";

/** Cases per decoder in the normal suite. */
const RUNS = 300;
/** Fixed, so a CI failure reproduces with `deno task fuzz --seed 20240604 --runs 300`. */
const SEED = 20240604;

for (const t of TARGETS) {
  Deno.test(`${t.name} returns a value or throws an ImError for ${RUNS} fuzzed inputs (seed ${SEED})`, () => {
    const r = checkTarget(t, RUNS, SEED);
    assert.ok(!r.failed, r.report);
    assert.equal(r.numRuns, RUNS);
  });
}

Deno.test("the fuzz targets cover every decoder of untrusted input", () => {
  assert.deepEqual(TARGETS.map((t) => t.name).sort(), [
    "FrameDecoder",
    "RecordOpener.open",
    "decodeClientAuth",
    "decodeClientHello",
    "decodeErrorFrame",
    "decodeMessage",
    "decodePeerCommit",
    "decodePeerHello",
    "decodePeerReply",
    "decodeServerHello",
    "decodeServerKey",
    "openTicket",
    "pemDecode",
  ]);
});

Deno.test("the fuzz harness catches a decoder that throws something other than an ImError", () => {
  const broken = decoderTarget(
    "broken",
    hostile(fc.constant(new Uint8Array([1, 2, 3]))),
    (p) => {
      if (p.length > 2) throw new RangeError("offset out of bounds");
      return p;
    },
  );
  const r = checkTarget(broken, 100, SEED);
  assert.ok(r.failed);
  assert.match(r.report, /RangeError: offset out of bounds, not an ImError/);
});
