import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { ask } from "../lib/ui/ask.ts";

function rig(choices: string[] = []) {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.setEncoding("utf8");
  output.on("data", (s: string) => text += s);
  const q = ask({
    input,
    output,
    prompt: "Username: ",
    choices: () => choices,
  });
  const done = () => {
    q.close();
    input.destroy();
    output.destroy();
  };
  return { input, q, printed: () => text, done };
}

Deno.test("ask() shows the prompt and answers the typed line on Enter", async () => {
  const r = rig();
  r.input.write("bob\r");
  assert.equal(await r.q.answer, "bob");
  r.done();
  assert.ok(r.printed().startsWith("\rUsername: "));
  assert.ok(r.printed().includes("Username: bob\n"));
});

Deno.test("ask() completes with Tab and lists the choices it cannot narrow", async () => {
  const r = rig(["carol", "cat", "dave"]);
  r.input.write("\t");
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(r.printed().includes("carol  cat  dave\n"), r.printed());
  r.input.write("ca\t"); // common prefix "ca": the list again
  r.input.write("r\t\r"); // "car" -> carol
  assert.equal(await r.q.answer, "carol");
  r.done();
});

for (
  const [what, keys] of [["Ctrl-C", "bo\x03"], ["Ctrl-D", "\x04"]] as const
) {
  Deno.test(`ask() answers null at ${what}`, async () => {
    const r = rig();
    r.input.write(keys);
    assert.equal(await r.q.answer, null);
    r.done();
  });
}

Deno.test("ask() answers null at end of input and at close()", async () => {
  const r = rig();
  r.input.end("half");
  assert.equal(await r.q.answer, null);
  r.done();
  const r2 = rig();
  r2.q.close();
  assert.equal(await r2.q.answer, null);
  r2.done();
});

Deno.test("ask() removes controls from the answer and the choices shown", async () => {
  const r = rig(["ok\x1b[2J"]);
  r.input.write("\t");
  await new Promise((resolve) => setTimeout(resolve, 5));
  r.input.write("a\x00b\x1b[31mc\r");
  const answer = await r.q.answer;
  r.done();
  // deno-lint-ignore no-control-regex -- looking for controls
  assert.doesNotMatch(answer ?? "", /[\x00-\x1f]/);
  assert.ok(!r.printed().includes("\x1b[2J"));
});
