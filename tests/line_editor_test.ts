import assert from "node:assert/strict";
import { type EditorAction, LineEditor } from "../lib/ui/line_editor.ts";

function editor(
  o: Partial<ConstructorParameters<typeof LineEditor>[0]> = {},
): LineEditor {
  return new LineEditor({ prompt: "A> ", maxBytes: 32 * 1024, ...o });
}

const submits = (acts: EditorAction[]) =>
  acts.filter((a) => a.kind === "submit").map((a) =>
    (a as { line: string }).line
  );

// What a terminal shows of a render: the text between the prompt and EL.
// deno-lint-ignore no-control-regex -- reading our own control sequences
const shown = (r: string) => /^\r(.*?)\x1b\[K/.exec(r)?.[1] ?? "";
// deno-lint-ignore no-control-regex -- reading our own control sequences
const cursorCol = (r: string) => Number(/\x1b\[(\d+)C$/.exec(r)?.[1] ?? 0);

Deno.test("LineEditor: a 50,000-character chunk is one insertion: the line is capped at the byte limit, said once, and a render is one row", () => {
  const ed = editor();
  const acts = ed.feed("x".repeat(50_000));
  assert.deepEqual(acts, [{ kind: "capped", maxBytes: 32 * 1024 }]);
  assert.equal(ed.line.length, 32 * 1024);
  const r = ed.render(80);
  // One row: the prompt, at most 76 cells of text, no line break.
  assert.ok(!r.includes("\n"));
  assert.equal(shown(r), `A> ${"x".repeat(76)}`);
  assert.equal(cursorCol(r), 79);
  // More typing at the limit adds nothing and does not repeat the notice.
  assert.deepEqual(ed.feed("yyy"), []);
  assert.equal(ed.line.length, 32 * 1024);
  assert.deepEqual(submits(ed.feed("\r")), ["x".repeat(32 * 1024)]);
  // A new line may be capped (and told) again.
  assert.deepEqual(ed.feed("z".repeat(40_000)).map((a) => a.kind), [
    "capped",
  ]);
});

Deno.test("LineEditor: the cap keeps whole code points and counts UTF-8 bytes", () => {
  const ed = editor({ maxBytes: 10 });
  ed.feed("ééééé€"); // 5 x 2 bytes, then 3 more do not fit
  assert.equal(ed.line, "ééééé");
  const ed2 = editor({ maxBytes: 7 });
  ed2.feed("ab👋cd"); // 2 + 4 + 1 = 7
  assert.equal(ed2.line, "ab👋c");
});

Deno.test("LineEditor: render() costs the row, not the line: a long line shows the part around the cursor", () => {
  const ed = editor();
  ed.feed("a".repeat(10_000) + "MIDDLE" + "b".repeat(10_000));
  ed.feed("\x01"); // Ctrl-A: to the start
  assert.equal(shown(ed.render(40)), `A> ${"a".repeat(36)}`);
  assert.equal(cursorCol(ed.render(40)), 3);
  ed.feed("\x05"); // Ctrl-E: to the end
  assert.equal(shown(ed.render(40)), `A> ${"b".repeat(36)}`);
  assert.equal(ed.cursor, 20_006);
});

Deno.test("LineEditor: Enter submits, CR LF is one Enter even across chunks, a line ending splits a paste", () => {
  const ed = editor();
  assert.deepEqual(submits(ed.feed("one\r\ntwo\nthree\r")), [
    "one",
    "two",
    "three",
  ]);
  assert.deepEqual(submits(ed.feed("\nfour\r")), ["four"]);
});

Deno.test("LineEditor: editing keys: left, right, home, end, backspace, delete, Ctrl-U, Ctrl-K, Ctrl-W", () => {
  const ed = editor();
  ed.feed("hello world");
  ed.feed("\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D"); // five times left
  ed.feed("big ");
  assert.equal(ed.line, "hello big world");
  ed.feed("\x1b[H"); // Home
  ed.feed("\x1b[3~"); // Delete
  assert.equal(ed.line, "ello big world");
  ed.feed("\x1b[F\x7f"); // End, Backspace
  assert.equal(ed.line, "ello big worl");
  ed.feed("\x17"); // Ctrl-W
  assert.equal(ed.line, "ello big ");
  ed.feed("\x01\x1b[C\x0b"); // Ctrl-A, right, Ctrl-K
  assert.equal(ed.line, "e");
  ed.feed("xyz\x1b[D\x15"); // Ctrl-U keeps what is after the cursor
  assert.equal(ed.line, "z");
});

Deno.test("LineEditor: an escape sequence or a code point cut by the end of a chunk is finished by the next one", () => {
  const ed = editor();
  ed.feed("ab");
  ed.feed("\x1b");
  ed.feed("[");
  ed.feed("D"); // left, in three chunks
  ed.feed("X");
  assert.equal(ed.line, "aXb");
});

Deno.test("LineEditor: left and right step over a whole code point and its combining marks", () => {
  const ed = editor();
  ed.feed("a👋e\u0301b");
  ed.feed("\x1b[D\x1b[D"); // before "é" (e + combining acute)
  ed.feed("|");
  assert.equal(ed.line, "a👋|e\u0301b");
  ed.feed("\x1b[D\x1b[D\x7f"); // before the emoji, then backspace
  assert.equal(ed.line, "👋|e\u0301b");
});

Deno.test("LineEditor: Up and Down walk the history and come back to the draft", () => {
  const ed = editor();
  ed.feed("first\rsecond\rfirst\rdraft");
  assert.deepEqual(ed.history, ["first", "second"]);
  ed.feed("\x1b[A");
  assert.equal(ed.line, "first");
  ed.feed("\x1b[A");
  assert.equal(ed.line, "second");
  ed.feed("\x1b[A"); // nothing older
  assert.equal(ed.line, "second");
  ed.feed("\x1b[B\x1b[B");
  assert.equal(ed.line, "draft");
});

Deno.test("LineEditor: Tab inserts the only completion, lists several it cannot extend", () => {
  const ed = editor({
    complete: (l) =>
      l === "!se"
        ? [["!session "], "!se"]
        : l === "!session "
        ? [["host", "bob", "bea"], ""]
        : l === "!session b"
        ? [["bob", "bea"], "b"]
        : [[], l],
  });
  assert.deepEqual(ed.feed("!se\t"), []);
  assert.equal(ed.line, "!session ");
  assert.deepEqual(ed.feed("\t"), [{
    kind: "candidates",
    items: ["host", "bob", "bea"],
  }]);
  assert.deepEqual(ed.feed("b\t"), [{
    kind: "candidates",
    items: ["bob", "bea"],
  }]);
  assert.equal(ed.line, "!session b");
});

Deno.test("LineEditor: Ctrl-C clears the line; a second Ctrl-C on the empty line quits", () => {
  const ed = editor();
  assert.deepEqual(ed.feed("half typed\x03"), [{
    kind: "interrupt",
    hadText: true,
  }]);
  assert.equal(ed.line, "");
  assert.deepEqual(ed.feed("\x03"), [{ kind: "quit", key: "ctrl-c" }]);
});

Deno.test("LineEditor: a Ctrl-C on an empty line does not quit unless the key before was Ctrl-C", () => {
  const ed = editor();
  assert.deepEqual(ed.feed("\x03"), [{ kind: "interrupt", hadText: false }]);
  ed.feed("a\x7f"); // typed and erased: the line is empty again
  assert.deepEqual(ed.feed("\x03"), [{ kind: "interrupt", hadText: false }]);
  assert.deepEqual(ed.feed("\x03"), [{ kind: "quit", key: "ctrl-c" }]);
});

Deno.test("LineEditor: Ctrl-D quits on an empty line only; on text it deletes under the cursor", () => {
  const ed = editor();
  ed.feed("ab\x01\x04");
  assert.equal(ed.line, "b");
  const acts = ed.feed("\x0b\x04ignored"); // Ctrl-K empties it
  assert.deepEqual(acts, [{ kind: "quit", key: "ctrl-d" }]);
  assert.equal(ed.line, "");
});

Deno.test("LineEditor: control characters and unknown escape sequences insert nothing", () => {
  const ed = editor();
  ed.feed("a\x00\x07\x1b[2J\x1b]0;x\x1b[99;99Xb\x9bc");
  assert.equal(ed.line.replace(/[^abc]/g, ""), "abc");
  // deno-lint-ignore no-control-regex -- checking for controls
  assert.doesNotMatch(ed.line, /[\x00-\x1f\x7f-\x9f]/);
});

Deno.test("LineEditor: invisible characters are shown escaped on the input row", () => {
  const ed = editor();
  ed.feed("a\u202eb");
  assert.equal(shown(ed.render(80)), "A> a\\u{202E}b");
  assert.equal(ed.line, "a\u202eb");
});

Deno.test("LineEditor: wide characters take two cells: the cursor column counts them", () => {
  const ed = editor();
  ed.feed("日本");
  assert.equal(cursorCol(ed.render(80)), 3 + 4);
});

Deno.test("LineEditor: echo() cuts a long submitted line to one row with an ellipsis", () => {
  const ed = editor();
  assert.equal(ed.echo("short", 80), "A> short");
  const row = ed.echo("y".repeat(1000), 20);
  assert.equal(row, `A> ${"y".repeat(15)}…`);
});

Deno.test("LineEditor: rejects a maxBytes that is not a positive integer", () => {
  for (const maxBytes of [0, -1, 1.5, NaN]) {
    assert.throws(() => editor({ maxBytes }), RangeError);
  }
});
