import assert from "node:assert/strict";
import { runDemoScript } from "../cmd/demo_script.ts";

Deno.test("im demo runs the scripted conversation, shows the same SAS on both sides, mails B while B is away, and finds no message in clear on the wire", async () => {
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
  assert.match(text, /A \| .*mail to B stored by the server/);
  assert.match(text, /B \| .*\[mail\] A \(written [^)]*\): B, this mail waits/);
  assert.match(text, /A \| .*mail to B delivered/);
  assert.match(text, /B \| .*\[#team\] A created the room: A, B/);
  assert.match(text, /B \| .*\[#team\] A: Welcome to the team room, B\./);
  assert.match(text, /A \| .*\[#team\] B: Thanks A; one copy/);
  assert.match(text, /server link -> 0000/);
  assert.match(text, /peer link <- 0000/);
  assert.match(text, /no message appears in clear/);
});

Deno.test("rule 2.8: a whole conversation (server, two clients, a peer session) runs with no permission to write any file", async () => {
  // Without --allow-write, any attempt to put a session key, derived key or
  // ticket on disk would fail the demo with NotCapable.
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-read",
      new URL("../main.ts", import.meta.url).pathname,
      "demo",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  assert.match(out, /no message appears in clear/);
});
