/**
 * The layering of `lib/` (README.md "Code map"): every import under `lib/`
 * is read, and one that reaches up or sideways fails the test, naming the
 * file and the import. The allowed arrows are written once, here, as data.
 * @module
 */

import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const LIB = fileURLToPath(new URL("../lib/", import.meta.url));

/** What each layer may import, besides itself. Lowest first. */
export const LAYERS: Record<string, readonly string[]> = {
  util: [],
  crypto: ["util"],
  wire: ["util"],
  record: ["util", "crypto", "wire"],
  proto: ["util", "crypto", "wire", "record"],
  keystore: ["util", "crypto", "proto"],
  client: ["util", "crypto", "wire", "record", "proto"],
  server: ["util", "crypto", "wire", "record", "proto"],
  ui: ["util", "proto", "client"],
};

/**
 * Folders inside a layer held to fewer arrows, and the only packages lib/
 * may import: `lib/server/nats/` alone imports the NATS project's own
 * client, and program start never reaches it (see the graph test below).
 */
export const FOLDERS: Record<
  string,
  { layers: readonly string[]; packages: RegExp }
> = {
  "server/nats": {
    layers: ["util", "crypto", "proto"],
    packages: /^@nats-io\/(transport-node|kv|jetstream)$/,
  },
};

/** The folder of {@link FOLDERS} a file is in, if any. */
function folderOf(path: string): string | undefined {
  const rel = relative(LIB, path);
  return Object.keys(FOLDERS).find((f) => rel.startsWith(`${f}/`));
}

/** Built-in modules a layer may use (none of them reaches the network or disk by itself). */
const BUILTINS =
  /^node:(assert|buffer|path|url|util|readline|stream|fs|fs\/promises|os|process|tty|sqlite)(\/.*)?$/;

interface Import {
  file: string;
  specifier: string;
}

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* tsFiles(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

/** Static imports, re-exports and dynamic imports, outside comments. */
function importsOf(source: string): string[] {
  const code = source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)(["'])([^"'\n]+)\1/gm;
  for (const m of code.matchAll(re)) out.push(m[2]!);
  return out;
}

async function allImports(): Promise<Import[]> {
  const out: Import[] = [];
  for await (const file of tsFiles(LIB)) {
    const source = await Deno.readTextFile(file);
    for (const specifier of importsOf(source)) out.push({ file, specifier });
  }
  return out;
}

function layerOf(path: string): string | undefined {
  const rel = relative(LIB, path);
  if (rel.startsWith("..")) return undefined;
  return rel.split("/")[0];
}

/**
 * Why `imp` breaks the layering, or null when it is allowed.
 * @param imp one import
 * @returns the reason, for the failure message
 */
function violation(imp: Import): string | null {
  const from = layerOf(imp.file);
  if (from === undefined || !(from in LAYERS)) {
    return `file is in no layer (allowed: ${Object.keys(LAYERS).join(", ")})`;
  }
  const s = imp.specifier;
  if (s.startsWith("node:")) {
    return BUILTINS.test(s) ? null : `built-in ${s} is not allowed in lib/`;
  }
  const folder = folderOf(imp.file);
  if (s.startsWith("npm:") || s.startsWith("jsr:") || !s.startsWith(".")) {
    if (folder && FOLDERS[folder]!.packages.test(s)) return null;
    return `package imports belong in cmd/, not lib/`;
  }
  const target = normalize(join(dirname(imp.file), s));
  const to = layerOf(target);
  if (to === undefined) return `reaches outside lib/`;
  if (to === from) return null;
  if (folder && !FOLDERS[folder]!.layers.includes(to)) {
    return `lib/${folder}/ may not import layer ${to} (allowed: ${
      FOLDERS[folder]!.layers.join(", ")
    })`;
  }
  if (!LAYERS[from]!.includes(to)) {
    return `layer ${from} may not import layer ${to} (allowed: ${
      LAYERS[from]!.join(", ") || "none"
    })`;
  }
  if (!target.endsWith(`/lib/${to}/mod.ts`)) {
    return `another layer is imported through its mod.ts only`;
  }
  return null;
}

Deno.test("every import under lib/ follows the layer arrows and goes through the other layer's mod.ts", async () => {
  const imports = await allImports();
  assert.ok(imports.length > 50, "the test found the imports of lib/");
  const bad = imports
    .map((imp) => ({ imp, why: violation(imp) }))
    .filter((x) => x.why !== null)
    .map((x) =>
      `${relative(LIB, x.imp.file)}: import "${x.imp.specifier}": ${x.why}`
    );
  assert.deepEqual(bad, [], `layering broken:\n${bad.join("\n")}`);
});

Deno.test("every layer folder has a mod.ts that says what it owns and what it may import", async () => {
  for (const layer of Object.keys(LAYERS)) {
    const text = (await Deno.readTextFile(join(LIB, layer, "mod.ts")))
      .replace(/\s*\n\s*\*\s*/g, " ");
    assert.match(text, /@module/, `lib/${layer}/mod.ts has a module comment`);
    const allowed = LAYERS[layer]!;
    if (allowed.length > 0) {
      assert.match(
        text,
        new RegExp(`May import: ${allowed.join(", ")}\\.`),
        `lib/${layer}/mod.ts names what it may import, as this test does`,
      );
    }
  }
  const folders: string[] = [];
  for await (const e of Deno.readDir(LIB)) {
    assert.ok(e.isDirectory, `lib/${e.name}: lib/ holds layer folders only`);
    folders.push(e.name);
  }
  assert.deepEqual(folders.sort(), Object.keys(LAYERS).sort());
});

/** The subcommands main.ts loads when one is run. */
const COMMAND_FILES = [
  "cmd/serve.ts",
  "cmd/chat.ts",
  "cmd/keygen.ts",
  "cmd/demo.ts",
];

/**
 * Static imports and re-exports only (what loads when the importer loads):
 * not dynamic `import()`, not `import type`, outside comments.
 */
function staticImportsOf(source: string): string[] {
  const code = source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "")
    .replace(/^\s*(?:import|export)\s+type\b[^;]*;/gm, "");
  const out: string[] = [];
  const re = /(?:\bfrom\s*|^\s*import\s*)(["'])([^"'\n]+)\1/gm;
  for (const m of code.matchAll(re)) out.push(m[2]!);
  return out;
}

/** Every file a module's static imports load, with the imports that are not relative. */
async function staticClosure(
  entries: string[],
): Promise<{ seen: Set<string>; outside: string[]; root: string }> {
  const root = fileURLToPath(new URL("../", import.meta.url));
  const seen = new Set<string>();
  const outside: string[] = [];
  const visit = async (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const s of staticImportsOf(await Deno.readTextFile(file))) {
      if (!s.startsWith(".")) {
        outside.push(`${relative(root, file)}: "${s}"`);
        continue;
      }
      const target = normalize(join(dirname(file), s));
      if (target.endsWith(".ts")) await visit(target);
    }
  };
  for (const e of entries) await visit(join(root, e));
  return { seen, outside, root };
}

Deno.test("`im --version` and `im --help` load no subcommand: main.ts's static imports reach no cmd/ file and no layer but lib/util (issue 15: program start)", async () => {
  const { seen, outside, root } = await staticClosure(["main.ts"]);
  const loaded = [...seen].map((f) => relative(root, f)).sort();
  const beyond = loaded.filter((f) =>
    f !== "main.ts" && !f.startsWith("lib/util/")
  );
  assert.deepEqual(beyond, [], "main.ts loads at start:\n" + beyond.join("\n"));
  assert.deepEqual(outside, [], "main.ts loads packages at start");
});

Deno.test("program start never loads lib/server/nats/ or an npm package: main.ts's static imports, and those of each subcommand it loads, do not reach them (`im serve` without --cluster)", async () => {
  // main.ts loads the subcommand it runs with import(); each of them is
  // then a start of its own.
  const { seen, outside, root } = await staticClosure([
    "main.ts",
    ...COMMAND_FILES,
  ]);
  const nats = join(LIB, "server", "nats");
  const bad = [
    ...outside.filter((o) => !o.includes('"node:')),
    ...[...seen].filter((f) => f.startsWith(`${nats}/`)).map((f) =>
      relative(root, f)
    ),
  ];
  assert.ok(
    seen.has(join(LIB, "server", "mod.ts")),
    "the walk reached lib/server",
  );
  assert.deepEqual(bad, [], "loaded at start:\n" + bad.join("\n"));
});

Deno.test("the layer check itself: an upward, a sideways and a deep import are each caught", () => {
  const at = (layer: string) => join(LIB, layer, "x.ts");
  assert.match(
    violation({ file: at("record"), specifier: "../proto/mod.ts" }) ?? "",
    /may not import layer proto/,
  );
  assert.match(
    violation({ file: at("client"), specifier: "../server/mod.ts" }) ?? "",
    /may not import layer server/,
  );
  assert.match(
    violation({ file: at("client"), specifier: "../proto/login.ts" }) ?? "",
    /through its mod.ts/,
  );
  assert.match(
    violation({ file: at("util"), specifier: "../../cmd/flags.ts" }) ?? "",
    /outside lib/,
  );
  assert.equal(
    violation({ file: at("client"), specifier: "../proto/mod.ts" }),
    null,
  );
  const nats = join(LIB, "server", "nats", "x.ts");
  assert.equal(
    violation({ file: nats, specifier: "@nats-io/kv" }),
    null,
  );
  assert.match(
    violation({ file: at("server"), specifier: "@nats-io/kv" }) ?? "",
    /package imports belong in cmd/,
  );
  assert.match(
    violation({ file: nats, specifier: "../../wire/mod.ts" }) ?? "",
    /lib\/server\/nats\/ may not import layer wire/,
  );
  assert.equal(
    violation({ file: nats, specifier: "../../proto/mod.ts" }),
    null,
  );
  assert.deepEqual(
    staticImportsOf(
      'export * from "./a.ts";\nconst m = await import("./b.ts");',
    ),
    ["./a.ts"],
  );
  assert.deepEqual(
    importsOf('/** import { x } from "../ui/mod.ts"; */\nimport "./a.ts";'),
    ["./a.ts"],
  );
});
