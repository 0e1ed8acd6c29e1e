/**
 * Hints that name flags live in cmd/ only: no string literal under lib/
 * names a `--flag` (comments may, e.g. `--json`), and cmd/hints.ts gives
 * the CLI the same `im: hint:` lines the lib used to.
 * @module
 */

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import {
  AuthError,
  type ImError,
  KeyError,
  NetError,
  ProtocolError,
  UsageError,
} from "../lib/util/mod.ts";
import { type KeyFix, KeyStoreError } from "../lib/keystore/mod.ts";
import { checkUsername } from "../lib/proto/mod.ts";
import { cliHint, CODE_HINTS, withCliHint } from "../cmd/hints.ts";
import { asUsageError, flagValue } from "../cmd/flags.ts";
import { main } from "../main.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const LIB = join(ROOT, "lib");

/** A `--flag` as a user types it; not the dashes of `-----BEGIN` or `a--b`. */
const FLAG = /(?<![A-Za-z0-9-])--[a-z][a-z-]+/;

// ---------------------------------------------------------------------------
// A small TypeScript lexer: string literals, outside comments and regexes

interface Literal {
  /** 1-based line where the literal (or template chunk) starts. */
  line: number;
  /** Its text as written, escapes unresolved. */
  text: string;
}

/** After these, a `/` starts a regex literal rather than a division. */
const REGEX_AFTER_PUNCT = new Set("(,=:[!&|?{};+-*%<>~^".split(""));
const REGEX_AFTER_WORD = new Set([
  "return",
  "typeof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "instanceof",
  "yield",
  "await",
]);

/**
 * The string literals of a TypeScript source: quoted strings and the text
 * chunks of template literals (their `${}` expressions are lexed as code),
 * skipping comments and regex literals.
 * @param src the source
 * @returns every literal with its line
 */
function stringLiterals(src: string): Literal[] {
  const out: Literal[] = [];
  let i = 0;
  let line = 1;
  let last = ""; // last significant character outside literals
  let lastWord = "";
  let depth = 0; // brace depth
  const templates: number[] = []; // brace depth at each open `${`

  const advance = (to: number) => {
    for (; i < to && i < src.length; i++) if (src[i] === "\n") line++;
  };
  const quoted = (q: string) => {
    const start = line;
    let text = "";
    i++;
    while (i < src.length && src[i] !== q && src[i] !== "\n") {
      const step = src[i] === "\\" ? 2 : 1;
      text += src.slice(i, i + step);
      advance(i + step);
    }
    i++;
    out.push({ line: start, text });
    last = q;
  };
  const templateChunk = () => {
    const start = line;
    let text = "";
    while (i < src.length) {
      if (src[i] === "\\") {
        text += src.slice(i, i + 2);
        advance(i + 2);
      } else if (src[i] === "`") {
        i++;
        last = "`";
        break;
      } else if (src[i] === "$" && src[i + 1] === "{") {
        i += 2;
        templates.push(depth++);
        last = "{";
        break;
      } else {
        text += src[i];
        advance(i + 1);
      }
    }
    out.push({ line: start, text });
  };
  const regex = () => {
    let inClass = false;
    i++;
    while (i < src.length && src[i] !== "\n") {
      const c = src[i]!;
      if (c === "\\") i += 2;
      else if (c === "[") (inClass = true), i++;
      else if (c === "]") (inClass = false), i++;
      else if (c === "/" && !inClass) break;
      else i++;
    }
    i++;
    while (/[a-z]/.test(src[i] ?? "")) i++;
    last = "/";
  };

  while (i < src.length) {
    const c = src[i]!;
    const next = src[i + 1];
    if (/\s/.test(c)) {
      advance(i + 1);
    } else if (c === "/" && next === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = src.indexOf("*/", i + 2);
      advance(end < 0 ? src.length : end + 2);
    } else if (c === '"' || c === "'") {
      quoted(c);
    } else if (c === "`") {
      i++;
      templateChunk();
    } else if (c === "{") {
      depth++;
      last = c;
      i++;
    } else if (c === "}") {
      depth--;
      i++;
      if (templates.at(-1) === depth) {
        templates.pop();
        templateChunk();
      } else {
        last = c;
      }
    } else if (
      c === "/" &&
      (last === "" || REGEX_AFTER_PUNCT.has(last) ||
        (last === "w" && REGEX_AFTER_WORD.has(lastWord)))
    ) {
      regex();
    } else if (/[A-Za-z0-9_$]/.test(c)) {
      const m = /^[A-Za-z0-9_$]+/.exec(src.slice(i, i + 64))!;
      lastWord = m[0];
      last = "w";
      i += m[0].length;
    } else {
      last = c;
      i++;
    }
  }
  return out;
}

/**
 * Where a source's string literals name a flag.
 * @param src the source
 * @returns `line: "literal"` for each
 */
function flagLiterals(src: string): string[] {
  return stringLiterals(src)
    .filter((l) => FLAG.test(l.text))
    .map((l) => `${l.line}: ${JSON.stringify(l.text)}`);
}

async function* tsFiles(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* tsFiles(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

Deno.test("no string literal under lib/ names a command-line flag (hints that name flags live in cmd/hints.ts)", async () => {
  const bad: string[] = [];
  let files = 0;
  for await (const file of tsFiles(LIB)) {
    files++;
    const rel = relative(ROOT, file);
    for (const hit of flagLiterals(await Deno.readTextFile(file))) {
      bad.push(`${rel}:${hit}`);
    }
  }
  assert.ok(files > 30, `the scan found lib/ (${files} files)`);
  assert.deepEqual(bad, [], `flags named in lib/:\n${bad.join("\n")}`);
});

Deno.test("the flag scan finds a flag in a quoted string, a template chunk and a string inside ${}, each with its line", () => {
  const src = [
    'const a = "use --force";',
    "const b = `run ${x} --dir ${dir}`;",
    "const c = `${f('--user')}`;",
    "const d = 'check --server';",
  ].join("\n");
  assert.deepEqual(flagLiterals(src), [
    '1: "use --force"',
    '2: " --dir "',
    '3: "--user"',
    '4: "check --server"',
  ]);
});

Deno.test("the flag scan ignores comments, regexes, dashes that are no flag, and flags outside strings", () => {
  const src = [
    "// `--json` output, see --log json",
    "/** Stable code; tests and `--json` output match on it. */",
    "/* a --block",
    "   comment --over lines */",
    "const re = /--[a-z]+/g;",
    "const m = x.replace(/'--x'/, '');",
    'const pem = "-----BEGIN PUBLIC KEY-----";',
    'const k = "kebab--case and -n and -RSAPublicKey_in";',
    "let n = 4; n--; const q = n / 2 / 1;",
    "const url = 'http://host/path'; // --not-a-string",
    'const s = "a \\" --quoted-on";',
  ].join("\n");
  // The one escaped quote does not end the string: its flag is found.
  assert.deepEqual(flagLiterals(src), ['11: "a \\\\\\" --quoted-on"']);
});

Deno.test("the flag scan reads a template that spans lines and nests braces in ${}", () => {
  const src = [
    "const t = `line one",
    "${ {a: 1}.a } then --two`;",
    'const u = "--three";',
  ].join("\n");
  const hits = flagLiterals(src);
  assert.deepEqual(hits, ['2: " then --two"', '3: "--three"']);
});

// ---------------------------------------------------------------------------
// cmd/hints.ts

Deno.test("cliHint() gives the flag-naming hints of the login, listen and key errors, as the CLI printed them before they left lib/", () => {
  const cases: [ImError, string][] = [
    [
      new NetError("connect-failed", "Cannot connect: connection refused"),
      "is the server running? start it with: im serve",
    ],
    [
      new NetError("login-timeout", "Server did not answer"),
      "is the server running and reachable? check --server",
    ],
    [
      new NetError("server-closed", "Server closed the connection"),
      "is it an im server? check --server",
    ],
    [
      new NetError("port-in-use", "Cannot listen"),
      "stop the other server or choose another --port",
    ],
    [
      new AuthError("login-failed", "Server refused the login", "lib words"),
      "check --user and that your private key is the one enrolled on the server",
    ],
    [
      new AuthError("server-key-mismatch", "WARNING", "lib words"),
      "if the server key really changed, get its public key from the operator and pin it with im keygen --pin",
    ],
    [
      new KeyError("bad-key-size", "Cannot use", "lib words"),
      'generate a new key with "im keygen --bits 3072"',
    ],
    [
      new KeyError("not-rsa", "Cannot use", "lib words"),
      'generate an RSA key with "im keygen"',
    ],
  ];
  for (const [e, hint] of cases) assert.equal(cliHint(e), hint, e.code);
  assert.equal(CODE_HINTS.length, cases.length, "every row is tested");
});

Deno.test("cliHint() matches class and code: the server's login-timeout frame (a ProtocolError) gets no --server hint", () => {
  assert.equal(
    cliHint(new ProtocolError("login-timeout", "Server closed the login")),
    undefined,
  );
  assert.equal(cliHint(new AuthError("port-in-use", "x")), undefined);
  assert.equal(cliHint(new NetError("login-failed", "x")), undefined);
});

Deno.test("cliHint() keeps the error's own hint when it has none of its own, and none when neither has one", () => {
  assert.equal(
    cliHint(new KeyError("bad-pem", "x", "convert it with openssl")),
    "convert it with openssl",
  );
  assert.equal(cliHint(new NetError("closed", "x")), undefined);
});

const FIX_HINTS: [KeyFix, string | undefined][] = [
  [{ kind: "provision-server", dir: "k" }, 'run "im keygen --dir k" first'],
  [
    { kind: "provision-user", dir: "k", user: "G" },
    'run "im keygen --dir k --user G" first',
  ],
  [
    { kind: "pin-server", dir: "k", user: "G" },
    `get the server's public.pem from its operator, compare its fingerprint, and run "im keygen --dir k --pin FILE --user G"`,
  ],
  [
    { kind: "replace-pair", publicPath: "k/p.pem" },
    'delete "k/p.pem" to have it rewritten, or use --force to replace the key pair',
  ],
  [
    { kind: "remake-pair", publicPath: "k/p.pem" },
    'delete "k/p.pem", or use --force to make a new key pair',
  ],
  [
    { kind: "replace-enrolled", user: "G" },
    'use --force to replace the enrolled key of "G"',
  ],
  [
    { kind: "repin-current", user: "G" },
    'use --force to pin the current server key for "G"',
  ],
  [
    { kind: "repin-given" },
    "if the server key really changed, use --force to pin the new one",
  ],
  [{ kind: "other-dir" }, "choose another directory with --dir"],
  [
    { kind: "writable-dir" },
    "check that the key directory is writable, or use --dir",
  ],
  [
    { kind: "grant-access" },
    '"deno task im" may only use keys/ in the checkout: put the file there, or run main.ts with deno run --allow-net --allow-read=DIR --allow-write=DIR --allow-env=IM_KEYS,NO_COLOR,IM_DEBUG (README, "Deploying")',
  ],
  // The lib's own words name no flag; they stand.
  [{ kind: "dir-permissions" }, undefined],
  [{ kind: "give-public-key" }, undefined],
  [{ kind: "chmod", path: "k/private.pem", mode: 0o600 }, undefined],
];

Deno.test("cliHint() words every keystore fix: with its flag where a flag does it, else in the lib's words", () => {
  for (const [fix, cli] of FIX_HINTS) {
    const e = new KeyStoreError("key-missing", "x", "k/f.pem", fix);
    assert.ok(e.hint, `${fix.kind}: the lib has words for it`);
    assert.doesNotMatch(e.hint, FLAG, `${fix.kind}: the lib names no flag`);
    assert.doesNotMatch(e.hint, /im keygen/, `${fix.kind}: nor the command`);
    // As im keygen words them; im serve and im chat name --keys instead.
    assert.equal(cliHint(e, "--dir"), cli ?? e.hint, fix.kind);
    assert.equal(
      cliHint(e),
      cli?.replace(/--dir$/, "--keys") ?? e.hint,
      `${fix.kind} (serve, chat)`,
    );
  }
  assert.equal(
    cliHint(
      new KeyStoreError("key-permissions", "x", "k/p", {
        kind: "chmod",
        path: "k/p",
        mode: 0o600,
      }),
    ),
    'run "chmod 600 k/p"',
  );
});

Deno.test("a KeyStoreError without a fix falls back to its code's row, then to its own hint", () => {
  assert.equal(cliHint(new KeyStoreError("bad-pem", "x", "k/p")), undefined);
  assert.equal(
    cliHint(new KeyStoreError("not-rsa", "x", "k/p")),
    'generate an RSA key with "im keygen"',
  );
});

Deno.test("withCliHint() returns a copy with the CLI's hint: same class, code, message and fields; the original untouched", () => {
  const fix: KeyFix = { kind: "provision-user", dir: "k", user: "G" };
  const e = new KeyStoreError("key-missing", "Cannot read", "k/u.pem", fix);
  const libHint = e.hint;
  const c = withCliHint(e);
  assert.notEqual(c, e);
  assert.ok(c instanceof KeyStoreError && c instanceof KeyError);
  assert.equal(c.name, "KeyStoreError");
  assert.equal(c.code, "key-missing");
  assert.equal(c.message, "Cannot read");
  assert.equal(c.path, "k/u.pem");
  assert.deepEqual(c.fix, fix);
  assert.equal(c.hint, 'run "im keygen --dir k --user G" first');
  assert.equal(c.stack, e.stack);
  assert.equal(e.hint, libHint, "the original keeps the lib's hint");
});

Deno.test("withCliHint() returns the error itself when the hint is unchanged, and anything that is no ImError as it is", () => {
  const same = new KeyError("bad-pem", "x", "h");
  assert.equal(withCliHint(same), same);
  const plain = new Error("boom");
  assert.equal(withCliHint(plain), plain);
  assert.equal(withCliHint("text"), "text");
  assert.equal(withCliHint(undefined), undefined);
});

// ---------------------------------------------------------------------------
// Usage errors from flag values

Deno.test("asUsageError() makes a lib bad-username or bad-bits a UsageError with the same code, message and hint", () => {
  for (
    const e of [
      new AuthError("bad-username", 'Invalid username "../x"'),
      new KeyError("bad-bits", 'Invalid RSA key size "1"', "h"),
    ]
  ) {
    const u = asUsageError(e);
    assert.ok(u instanceof UsageError, e.code);
    assert.equal(u.code, e.code);
    assert.equal(u.message, e.message);
    assert.equal(u.hint, e.hint);
  }
});

Deno.test("asUsageError() leaves other errors alone: a refused login, a key error, a usage error, a plain Error", () => {
  const usage = new UsageError("bad-flag", "x");
  for (
    const e of [
      new AuthError("login-failed", "x"),
      new KeyError("key-missing", "x"),
      new NetError("bad-username-ish", "x"),
      usage,
      new Error("bad-username"),
      "bad-bits",
    ]
  ) {
    assert.equal(asUsageError(e), e);
  }
});

Deno.test("flagValue() turns a username check's failure into a UsageError and passes a good name through", () => {
  assert.equal(flagValue(() => checkUsername("alice")), "alice");
  assert.throws(
    () => flagValue(() => checkUsername("../etc")),
    (e) => e instanceof UsageError && e.code === "bad-username",
  );
  assert.throws(
    () =>
      flagValue(() => {
        throw new KeyError("key-missing", "x");
      }),
    (e) => e instanceof KeyError && !(e instanceof UsageError),
  );
});

// ---------------------------------------------------------------------------
// What the user sees

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

Deno.test("im chat with no keys prints the error and the keygen hint naming the key directory and the user, exit 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-hints-" });
  try {
    const r = await runMain([
      "chat",
      "--user",
      "G",
      "--server",
      "127.0.0.1:1",
      "--keys",
      dir,
    ]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
    assert.match(r.stderr[0]!, /^im: error: Cannot read private key ".*G/);
    assert.equal(
      r.stderr[1],
      `im: hint: run "im keygen --dir ${dir} --user G" first`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("im chat and im keygen with a bad username exit 2 with one error line and no hint", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-hints-" });
  try {
    for (
      const args of [
        ["chat", "--user", "../etc", "--keys", dir],
        ["keygen", "--dir", dir, "--user", "a b", "--bits", "2048"],
        ["keygen", "--dir", dir, "--users", "A,,B", "--bits", "2048"],
      ]
    ) {
      const r = await runMain(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.stderr.length, 1, r.stderr.join("\n"));
      assert.match(r.stderr[0]!, /^im: error: Invalid username "/);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
