/**
 * `im serve`'s cluster flags (PROTOCOL.md 11.1): `--cluster URL[,URL]`,
 * `--node NAME`, `--nats-user U`, `--nats-pass-file F`. Each bad value is
 * one usage line (exit 2) before anything starts; a missing cluster key is
 * one line whose hint is `im keygen`; a NATS that cannot be reached, or that
 * refuses the credentials, is one error line and a hint (exit 1) and
 * leaves no data directory. The right credentials join (a real
 * nats-server with a user and password). `--cluster-replicas N` (1..5):
 * a bad value one usage line; more than one on a single nats-server is
 * refused by JetStream (one line, exit 1); a stream or bucket already
 * there keeps its count, and a node wanting another logs
 * `cluster-replicas-differ` for it (PROTOCOL.md 11.1, 11.6). That the
 * nodes make them with N replicas on a NATS cluster of three is in
 * tests/e2e/cluster_faults_test.ts.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../main.ts";
import { clusterFlags } from "../cmd/serve.ts";
import { dropReset } from "../cmd/serve_cluster.ts";
import { ClusterNode } from "../lib/server/nats/mod.ts";
import { UsageError } from "../lib/util/mod.ts";
import { natsServerBinary, withNats } from "./_nats.ts";
import { freePort } from "./_helpers.ts";
import { runIm } from "./e2e/harness.ts";

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

/** A key directory with a server key, the cluster key and no users. */
async function withKeys(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-serve-cluster-" });
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

const serve = (dir: string, ...args: string[]) =>
  runMain(["serve", "--keys", join(dir, "keys"), "--port", "0", ...args]);

Deno.test("clusterFlags: the URLs, the node (default n- and 6 hex digits), the credentials; none without --cluster", () => {
  assert.equal(clusterFlags({}), undefined);
  const c = clusterFlags({ cluster: "nats://127.0.0.1:4222" });
  assert.match(c!.node, /^n-[0-9a-f]{6}$/);
  assert.deepEqual(
    clusterFlags({
      cluster: "nats://a:4222, tls://b.example:4443,nats://[::1]:4222",
      node: "east_1",
      "nats-user": "im",
      "nats-pass-file": "/run/pass",
    }),
    {
      servers: ["nats://a:4222", "tls://b.example:4443", "nats://[::1]:4222"],
      node: "east_1",
      replicas: 1,
      user: "im",
      passFile: "/run/pass",
    },
  );
  for (const n of [1, 2, 3, 4, 5]) {
    assert.equal(
      clusterFlags({ cluster: "nats://h:1", "cluster-replicas": String(n) })!
        .replicas,
      n,
    );
  }
  assert.equal(
    clusterFlags({ cluster: "nats://h:1" }, () => "abcdef")!.node,
    "n-abcdef",
  );
});

Deno.test("im serve refuses each bad cluster flag with one usage line (exit 2), before anything starts", async () => {
  await withKeys(async (dir) => {
    const cases: Array<[string[], string]> = [
      [
        ["--cluster", "127.0.0.1:4222"],
        'Invalid --cluster "127.0.0.1:4222": expected nats://host:port or tls://host:port, comma-separated',
      ],
      [
        ["--cluster", "http://h:80"],
        'Invalid --cluster "http://h:80": expected nats://host:port or tls://host:port, comma-separated',
      ],
      [
        ["--cluster", "nats://h:0"],
        'Invalid --cluster "nats://h:0": expected nats://host:port or tls://host:port, comma-separated',
      ],
      [
        ["--cluster", "nats://h:4222,"],
        'Invalid --cluster "": expected nats://host:port or tls://host:port, comma-separated',
      ],
      [
        ["--cluster", "nats://h:1,nats://h:1"],
        "Invalid --cluster: a URL given twice",
      ],
      [
        ["--cluster", "nats://h:1", "--node", "a.b"],
        'Invalid --node "a.b": expected 1-32 characters of A-Z a-z 0-9 _ -',
      ],
      [
        ["--cluster", "nats://h:1", "--node", "x".repeat(33)],
        `Invalid --node "${
          "x".repeat(33)
        }": expected 1-32 characters of A-Z a-z 0-9 _ -`,
      ],
      [["--node", "n1"], "--node needs --cluster URL"],
      [["--nats-user", "im"], "--nats-user needs --cluster URL"],
      [["--cluster-replicas", "3"], "--cluster-replicas needs --cluster URL"],
      ...["0", "6", "3.5", "x", "", "03", "+3", " 3", "1e0"].map((
        r,
      ): [string[], string] => [
        ["--cluster", "nats://h:1", "--cluster-replicas", r],
        `Invalid --cluster-replicas "${r}": expected an integer from 1 to 5`,
      ]),
      [
        ["--cluster", "nats://h:1", "--nats-user", "im"],
        "--nats-user and --nats-pass-file go together",
      ],
      [
        ["--cluster", "nats://h:1", "--nats-pass-file", "p"],
        "--nats-user and --nats-pass-file go together",
      ],
      [[
        "--cluster",
        "nats://h:1",
        "--nats-user",
        "a b",
        "--nats-pass-file",
        "p",
      ], "Invalid --nats-user: expected 1-256 printable characters, no spaces"],
      [[
        "--cluster",
        "nats://h:1",
        "--nats-user",
        "im",
        "--nats-pass-file",
        join(dir, "nope"),
      ], `Cannot read --nats-pass-file "${join(dir, "nope")}": no such file`],
    ];
    for (const [args, line] of cases) {
      const r = await serve(dir, ...args);
      assert.equal(r.code, 2, args.join(" "));
      assert.deepEqual(r.stderr, [`im: error: ${line}`], args.join(" "));
    }
    await Deno.writeTextFile(join(dir, "empty"), "\nsecond line\n");
    const empty = await serve(
      dir,
      "--cluster",
      "nats://h:1",
      "--nats-user",
      "im",
      "--nats-pass-file",
      join(dir, "empty"),
    );
    assert.equal(empty.code, 2);
    assert.deepEqual(empty.stderr, [
      `im: error: Invalid --nats-pass-file "${
        join(dir, "empty")
      }": its first line is empty`,
    ]);
    assert.throws(() => clusterFlags({ cluster: "" }), UsageError);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["empty", "keys"],
      "no data directory was made",
    );
  });
});

Deno.test("im serve --cluster without server/cluster.key: one line whose hint is im keygen (exit 1)", async () => {
  await withKeys(async (dir) => {
    await Deno.remove(join(dir, "keys", "server", "cluster.key"));
    const r = await serve(dir, "--cluster", `nats://127.0.0.1:${freePort()}`);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
    assert.match(
      r.stderr[0]!,
      /^im: error: Cannot read cluster key ".*cluster\.key": no such file/,
    );
    assert.match(r.stderr[1]!, /^im: hint: run "im keygen --dir .*" first$/);
  });
});

Deno.test("im serve --cluster with no NATS there: one error line and a hint (exit 1), no data directory", async () => {
  await withKeys(async (dir) => {
    const url = `nats://127.0.0.1:${freePort()}`;
    const r = await serve(dir, "--cluster", url, "--node", "n1");
    assert.equal(r.code, 1);
    assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
    assert.match(
      r.stderr[0]!,
      new RegExp(`^im: error: Cannot join the cluster at ${url}: `),
    );
    assert.match(
      r.stderr[1]!,
      /^im: hint: check --cluster, the NATS credentials/,
    );
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["keys"],
    );
  });
});

Deno.test("NATS credentials: a wrong password is refused in one line (exit 1); the right one joins", async () => {
  await withKeys(async (dir) => {
    const port = freePort();
    const child = new Deno.Command(natsServerBinary(), {
      args: [
        "-a",
        "127.0.0.1",
        "-p",
        String(port),
        "-js",
        "-sd",
        join(dir, "js"),
        "--user",
        "im",
        "--pass",
        "s3cret",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const url = `nats://127.0.0.1:${port}`;
      const until = Date.now() + 10_000;
      for (;;) {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          break;
        } catch (e) {
          if (Date.now() > until) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      await Deno.writeTextFile(join(dir, "wrong"), "nope\n");
      await Deno.writeTextFile(join(dir, "right"), "s3cret\n");
      // In a process of its own: the NATS client's socket, reset by the
      // server after the refusal, may still report it once the process
      // would have exited.
      const r = await runIm([
        "serve",
        "--keys",
        join(dir, "keys"),
        "--port",
        "0",
        "--cluster",
        url,
        "--nats-user",
        "im",
        "--nats-pass-file",
        join(dir, "wrong"),
      ]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
      assert.match(
        r.stderr[0]!,
        /^im: error: Cannot join the cluster at .*: .*[Aa]uthoriz/,
      );
      const key = new Uint8Array(32).fill(3);
      const node = await ClusterNode.join({
        servers: [url],
        node: "n1",
        clusterKey: key,
        user: "im",
        pass: "s3cret",
      });
      assert.equal(node.partial, false);
      await node.close();
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  });
});

Deno.test("im serve --cluster-replicas 3 on a single nats-server (no NATS cluster): JetStream refuses the replicas, one error line (exit 1)", async () => {
  await withKeys(async (dir) => {
    await withNats(async (nats) => {
      const r = await runIm([
        "serve",
        "--keys",
        join(dir, "keys"),
        "--port",
        "0",
        "--cluster",
        nats.url,
        "--cluster-replicas",
        "3",
      ]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
      assert.match(
        r.stderr[0]!,
        new RegExp(
          `^im: error: Cannot join the cluster at ${nats.url}: .*replicas`,
        ),
      );
    });
  });
});

Deno.test("--cluster-replicas: streams and buckets already there keep their replica count; a node wanting another logs cluster-replicas-differ for each and works", async () => {
  await withNats(async (nats) => {
    const key = new Uint8Array(32).fill(5);
    const first = await ClusterNode.join({
      servers: [nats.url],
      node: "n1",
      clusterKey: key,
    });
    const logs: Array<[string, Record<string, unknown>]> = [];
    const second = await ClusterNode.join({
      servers: [nats.url],
      node: "n2",
      clusterKey: key,
      replicas: 3,
      log: (event, fields = {}) => logs.push([event, fields]),
    });
    try {
      const differ = logs.filter(([e]) => e === "cluster-replicas-differ")
        .map(([, f]) => f);
      // A single nats-server takes only 1: made with 3, it would refuse.
      for (
        const stream of ["IM_MAIL_im", "KV_im_im_prekeys", "KV_im_im_presence"]
      ) {
        assert.deepEqual(
          differ.filter((f) => f.stream === stream),
          [{ stream, replicas: 1, wanted: 3 }],
          JSON.stringify(differ),
        );
      }
      assert.ok(differ.every((f) => f.replicas === 1 && f.wanted === 3));
      const seq = await second.store.append("B", new Uint8Array([1]));
      assert.equal((await first.store.read("B"))[0]?.seq, seq);
    } finally {
      await second.close();
      await first.close();
    }
  });
});

Deno.test("dropReset drops only the NATS client's socket errors that reach nobody (ECONNRESET, ERR_STREAM_WRITE_AFTER_END), not other uncaught errors", () => {
  const verdict = (error: unknown) => {
    const ev = new ErrorEvent("error", { error, cancelable: true });
    dropReset(ev);
    return ev.defaultPrevented;
  };
  const coded = (code: string) => Object.assign(new Error(code), { code });
  assert.equal(verdict(coded("ECONNRESET")), true);
  assert.equal(verdict(coded("ERR_STREAM_WRITE_AFTER_END")), true);
  assert.equal(verdict(coded("EPIPE")), false);
  assert.equal(verdict(new TypeError("a bug")), false);
  assert.equal(verdict(null), false);
});
