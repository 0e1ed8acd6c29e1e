/**
 * `im serve --cluster ... --nats-nkey-file F` (PROTOCOL.md 11.1): NATS nkey
 * authentication. The seed file is checked as a private key is (0600, a
 * folder group and others cannot write, a user seed with a good checksum),
 * each failure one line (exit 1) before anything starts; with
 * `--nats-user`/`--nats-pass-file` a usage line (exit 2). Against a real
 * nats-server whose configuration (tests/_nats.ts) knows one nkey user,
 * made here with the NATS project's nkeys: that seed joins, another seed is
 * refused in one line (exit 1).
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { nkeys } from "@nats-io/transport-node";
import { main } from "../main.ts";
import { clusterFlags } from "../cmd/serve.ts";
import { loadNkeySeed } from "../lib/keystore/mod.ts";
import { ClusterNode } from "../lib/server/nats/mod.ts";
import { freePort } from "./_helpers.ts";
import { withNats } from "./_nats.ts";
import { runIm, ServerProc } from "./e2e/harness.ts";

const posix = Deno.build.os !== "windows";

/** Run main() with stderr captured. */
async function runMain(
  args: string[],
): Promise<{ code: number; stderr: string[] }> {
  const stderr: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => stderr.push(a.join(" "));
  try {
    return { code: await main(args), stderr };
  } finally {
    console.error = orig;
  }
}

/** A temp dir with a key directory (server key, cluster key, no users). */
async function withKeys(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-serve-nkey-" });
  try {
    const keygen = await runMain([
      "keygen",
      "--dir",
      join(dir, "keys"),
      "--users",
      "",
      "--bits",
      "2048",
    ]);
    assert.equal(keygen.code, 0, keygen.stderr.join("\n"));
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A new nkey user: its seed (text) and public key. */
function nkeyUser(): { seed: string; publicKey: string } {
  const kp = nkeys.createUser();
  return {
    seed: new TextDecoder().decode(kp.getSeed()),
    publicKey: kp.getPublicKey(),
  };
}

const serveArgs = (dir: string, ...args: string[]) => [
  "serve",
  "--keys",
  join(dir, "keys"),
  "--port",
  "0",
  ...args,
];

Deno.test("clusterFlags: --nats-nkey-file alone, never with --nats-user or --nats-pass-file (one usage line), only with --cluster", () => {
  assert.deepEqual(
    clusterFlags({
      cluster: "nats://h:1",
      node: "n1",
      "nats-nkey-file": "/run/im.nk",
    }),
    {
      servers: ["nats://h:1"],
      node: "n1",
      nkeyFile: "/run/im.nk",
      replicas: 1,
    },
  );
  const usage = (
    v: Parameters<typeof clusterFlags>[0],
    line: string,
  ) =>
    assert.throws(() => clusterFlags(v), (e: Error) => {
      assert.equal(e.message, line);
      return (e as { code?: string }).code === "bad-flag";
    });
  const both =
    "--nats-nkey-file and --nats-user with --nats-pass-file do not go together: NATS takes one of them";
  usage({
    cluster: "nats://h:1",
    "nats-nkey-file": "k",
    "nats-user": "im",
    "nats-pass-file": "p",
  }, both);
  usage(
    { cluster: "nats://h:1", "nats-nkey-file": "k", "nats-user": "im" },
    both,
  );
  usage(
    { cluster: "nats://h:1", "nats-nkey-file": "k", "nats-pass-file": "p" },
    both,
  );
  usage({ "nats-nkey-file": "k" }, "--nats-nkey-file needs --cluster URL");
  usage(
    { cluster: "nats://h:1", "nats-nkey-file": "" },
    'Invalid --nats-nkey-file "": expected a file',
  );
});

Deno.test("im serve --nats-nkey-file: a missing, too open, malformed or corrupted seed, or one in a folder others can write, is one error line (exit 1) before anything starts", async () => {
  await withKeys(async (dir) => {
    const url = `nats://127.0.0.1:${freePort()}`;
    const { seed } = nkeyUser();
    const file = join(dir, "im.nk");
    const run = async (want: RegExp) => {
      const r = await runMain(
        serveArgs(dir, "--cluster", url, "--nats-nkey-file", file),
      );
      assert.equal(r.code, 1, r.stderr.join("\n"));
      assert.match(r.stderr[0] ?? "", want);
      assert.ok(r.stderr.length <= 2, r.stderr.join("\n"));
      if (r.stderr[1] !== undefined) assert.match(r.stderr[1], /^im: hint: /);
      return r;
    };
    await run(
      /^im: error: Cannot read NATS nkey seed ".*im\.nk": no such file or directory$/,
    );
    await Deno.writeTextFile(file, "hello\n", { mode: 0o600 });
    await run(
      /^im: error: Cannot use NATS nkey seed ".*im\.nk": expected a user seed \(SU and 56 base32 characters\) on the first line$/,
    );
    // Well formed, but one character changed: the checksum fails.
    const flipped = seed.slice(0, 10) + (seed[10] === "A" ? "B" : "A") +
      seed.slice(11);
    await Deno.writeTextFile(file, `${flipped}\n`, { mode: 0o600 });
    await run(
      /^im: error: Cannot use NATS nkey seed ".*im\.nk": invalid checksum$/,
    );
    // An account's seed is not a user's.
    const account = new TextDecoder().decode(nkeys.createAccount().getSeed());
    await Deno.writeTextFile(file, `${account}\n`, { mode: 0o600 });
    await run(/^im: error: Cannot use NATS nkey seed ".*im\.nk": /);
    if (posix) {
      await Deno.writeTextFile(file, `${seed}\n`);
      await Deno.chmod(file, 0o644);
      const r = await run(
        /^im: error: Refusing to use NATS nkey seed ".*im\.nk": mode 0644 lets group or others read it$/,
      );
      assert.match(r.stderr[1] ?? "", /chmod 600/);
      await Deno.chmod(file, 0o600);
      const open = join(dir, "open");
      await Deno.mkdir(open);
      await Deno.chmod(open, 0o777);
      const there = join(open, "im.nk");
      await Deno.writeTextFile(there, `${seed}\n`, { mode: 0o600 });
      const w = await runMain(
        serveArgs(dir, "--cluster", url, "--nats-nkey-file", there),
      );
      assert.equal(w.code, 1);
      assert.match(w.stderr[0] ?? "", /lets group or others write to it/);
    }
    // Both kinds of credentials: a usage line (exit 2).
    const both = await runMain(serveArgs(
      dir,
      "--cluster",
      url,
      "--nats-nkey-file",
      file,
      "--nats-user",
      "im",
      "--nats-pass-file",
      file,
    ));
    assert.equal(both.code, 2);
    assert.deepEqual(both.stderr, [
      "im: error: --nats-nkey-file and --nats-user with --nats-pass-file do not go together: NATS takes one of them",
    ]);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      posix ? ["im.nk", "keys", "open"] : ["im.nk", "keys"],
      "no data directory was made",
    );
  });
});

Deno.test("NATS nkey authentication on a real nats-server: the user's seed joins (ClusterNode and im serve); another seed is refused in one line (exit 1)", async () => {
  const user = nkeyUser();
  const config =
    `authorization {\n  users = [\n    { nkey: "${user.publicKey}" }\n  ]\n}\n`;
  await withNats(async (nats) => {
    await withKeys(async (dir) => {
      const right = join(dir, "right.nk");
      const wrong = join(dir, "wrong.nk");
      await Deno.writeTextFile(right, `${user.seed}\n`, { mode: 0o600 });
      await Deno.writeTextFile(wrong, `${nkeyUser().seed}\n`, { mode: 0o600 });
      // Without credentials NATS refuses: the configuration is in force.
      const none = await runIm(serveArgs(dir, "--cluster", nats.url));
      assert.equal(none.code, 1);
      assert.match(none.stderr[0] ?? "", /^im: error: Cannot join the cluster/);
      // In a process of its own: the refused connection's reset comes late.
      const r = await runIm(
        serveArgs(dir, "--cluster", nats.url, "--nats-nkey-file", wrong),
      );
      assert.equal(r.code, 1, r.stderr.join("\n"));
      assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
      assert.match(
        r.stderr[0]!,
        /^im: error: Cannot join the cluster at nats:\/\/127\.0\.0\.1:\d+: Authorization Violation$/,
      );
      assert.match(
        r.stderr[1]!,
        /^im: hint: check --cluster, the NATS credentials/,
      );
      const node = await ClusterNode.join({
        servers: [nats.url],
        node: "n1",
        clusterKey: new Uint8Array(32).fill(4),
        nkeySeed: await loadNkeySeed(right),
      });
      assert.equal(node.partial, false);
      await node.close();
      const s = new ServerProc(join(dir, "keys"), [
        "--port",
        "0",
        "--cluster",
        nats.url,
        "--node",
        "n2",
        "--nats-nkey-file",
        right,
      ]);
      try {
        await s.ready(30_000);
        await s.waitForLog(/ cluster .*nodes=n2( |$)/, 30_000);
      } finally {
        s.signal("SIGTERM");
        const st = await s.wait();
        assert.equal(st.code, 0, s.dump());
      }
    });
  }, { config });
});
