import assert from "node:assert/strict";
import { runDemoScript } from "../lib/demo.ts";

Deno.test("im demo runs the scripted conversation, shows the same SAS on both sides and finds no message in clear on the wire", async () => {
  const lines: string[] = [];
  const code = await runDemoScript((l) => lines.push(l));
  const text = lines.join("\n");
  assert.equal(code, 0, text);
  const sas = [...text.matchAll(/compare the code ([0-9 ]{15})/g)].map((m) =>
    m[1]
  );
  assert.equal(sas.length, 2, text);
  assert.equal(sas[0], sas[1]);
  assert.match(text, /A: Hello B, this is A/);
  assert.match(text, /B: Loud and clear/);
  assert.match(text, /online: A \(BUSY\), B \(BUSY\)/);
  assert.match(text, /online: A \(IDLE\), B \(IDLE\)/);
  assert.match(text, /server link -> 0000/);
  assert.match(text, /peer link <- 0000/);
  assert.match(text, /no message appears in clear/);
});
