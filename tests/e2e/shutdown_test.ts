/**
 * README's first command, the way a person runs it (issue 11 item 3):
 * `npx --yes deno@2.9.6 task im serve` (and `deno task im serve`) in a
 * process group of its own, then SIGINT to the whole group, as Ctrl-C on a
 * terminal sends it. The task runner forwards the SIGINT to the server,
 * which so gets it twice (npx may add a third); the server must still tell
 * its clients that it is shutting down, and log `stopped`, rather than die
 * at the second signal with the clients seeing `connection lost`.
 *
 * The command runs in a temporary copy of the project (deno.json, main.ts,
 * cmd/, lib/) whose `keys/` is a copy of the test keys: the task's
 * permissions name `keys` relative to the project.
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { copyKeys, ROOT, sharedKeys, withProcs } from "./harness.ts";

const keys = await sharedKeys();

/** Copy what `deno task im` runs into a fresh directory, keys included. */
async function projectCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "im-e2e-readme-" });
  const copy = async (rel: string) => {
    const info = await Deno.stat(join(ROOT, rel));
    if (info.isDirectory) {
      await Deno.mkdir(join(dir, rel), { recursive: true });
      for await (const e of Deno.readDir(join(ROOT, rel))) {
        await copy(join(rel, e.name));
      }
    } else {
      await Deno.copyFile(join(ROOT, rel), join(dir, rel));
    }
  };
  for (const rel of ["deno.json", "deno.lock", "main.ts", "cmd", "lib"]) {
    await copy(rel);
  }
  const k = await copyKeys(keys);
  await Deno.rename(k, join(dir, "keys"));
  await Deno.remove(dirname(k)); // the empty folder the copy was made in
  return dir;
}

/** Lines of a stream, with waiting for one that matches. */
class Lines {
  readonly lines: string[] = [];
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      let buf = "";
      for await (const s of stream.pipeThrough(new TextDecoderStream())) {
        buf += s;
        let i: number;
        while ((i = buf.indexOf("\n")) !== -1) {
          this.lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      }
      if (buf !== "") this.lines.push(buf);
    })().catch(() => {});
  }
  async find(re: RegExp, ms: number, what: string): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const l of this.lines) {
        const m = re.exec(l);
        if (m) return m;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}; output:\n${this.lines.join("\n")}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function onPath(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

async function readmeShutdown(command: string[]): Promise<void> {
  const dir = await projectCopy();
  const [cmd, ...args] = command;
  // detached: a new session, so the command leads a process group of its
  // own, as a shell's foreground job does.
  const child = new Deno.Command(cmd!, {
    args: [...args, "--port", "0", "--heartbeat", "1000"],
    cwd: dir,
    detached: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const group = child.pid;
  const killGroup = (sig: Deno.Signal) => {
    try {
      Deno.kill(-group, sig);
    } catch {
      // The group is gone.
    }
  };
  const out = new Lines(child.stdout);
  const err = new Lines(child.stderr);
  try {
    await withProcs(keys, async (p) => {
      const m = await err.find(
        / listening addr=127\.0\.0\.1:(\d+)/,
        60_000,
        `the server's listening line under "${command.join(" ")}"`,
      );
      const addr = `127.0.0.1:${m[1]}`;
      const clients = await Promise.all(
        ["A", "B"].map((u) => p.chat(null, u, { server: addr })),
      );
      killGroup("SIGINT"); // Ctrl-C on the terminal
      for (const c of clients) {
        const ev = await c.waitFor(
          (e) => e.type === "error" && e.code === "server-gone",
          10_000,
        );
        assert.match(ev.text ?? "", /The server is shutting down/);
        assert.doesNotMatch(ev.text ?? "", /connection lost/);
      }
      // Every process that holds the output (task runner, server) is gone
      // once both streams end; the server got to its last log line.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ended = await Promise.race([
        Promise.all([out.done, err.done]).then(() => true),
        new Promise<false>((r) => timer = setTimeout(() => r(false), 15_000)),
      ]);
      clearTimeout(timer);
      assert.ok(
        ended,
        `still running 15 s after SIGINT:\n${err.lines.join("\n")}`,
      );
      assert.ok(
        err.lines.some((l) => / stopped reason=shutdown/.test(l)),
        `no "stopped" line:\n${err.lines.join("\n")}`,
      );
    });
  } finally {
    killGroup("SIGKILL");
    await child.status;
    await Promise.all([out.done, err.done]);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("README's `deno task im serve`: SIGINT to its process group stops the server cleanly, clients are told it is shutting down (issue 11 item 3)", async () => {
  await readmeShutdown([Deno.execPath(), "task", "im", "serve"]);
});

Deno.test("README's first command `npx --yes deno@2.9.6 task im serve`: SIGINT to its process group stops the server cleanly, clients are told it is shutting down (issue 11 item 3)", async () => {
  if (!(await onPath("npx"))) {
    throw new Error(
      "This test runs README's first command, which needs npx (Node.js and npm); none found on PATH",
    );
  }
  await readmeShutdown(["npx", "--yes", "deno@2.9.6", "task", "im", "serve"]);
});
