import assert from "node:assert/strict";
import * as fs from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, sep } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { Worker } from "node:worker_threads";
import {
  cleanupDir,
  createPrivateDir,
  type FileSpec,
  MANIFEST_NAME,
  ManifestError,
  readManifest,
  replaceFilesAtomic,
  UnsafePathError,
  writeFilesExclusive,
} from "../src/client/files.ts";

const IS_WINDOWS = process.platform === "win32";
const POSIX_ONLY = IS_WINDOWS ? "mode bits and ownership are not enforced on Windows" : false;

let base = "";
before(() => {
  base = fs.realpathSync(fs.mkdtempSync(join(tmpdir(), "idbot-files-test-")));
});
after(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

let counter = 0;
/** A fresh credential directory made by the code under test. */
const freshDir = (): Promise<string> => createPrivateDir(base, "t-");
/** A plain directory outside any credential directory, with a victim file in it. */
function outsideDir(): { dir: string; victim: string } {
  const dir = join(base, `outside-${++counter}`);
  fs.mkdirSync(dir);
  const victim = join(dir, "victim");
  fs.writeFileSync(victim, "precious");
  return { dir, victim };
}
const modeOf = (p: string): number => fs.lstatSync(p).mode & 0o777;
/** Every entry under dir (relative, "/"-separated, sorted), not following symlinks. */
function tree(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const r = rel === "" ? entry.name : `${rel}/${entry.name}`;
    out.push(r);
    if (entry.isDirectory()) out.push(...tree(join(dir, entry.name), r));
  }
  return out.sort();
}
/** Symlinks need a privilege on Windows: skip the test when it is missing. */
function symlinkOrSkip(t: TestContext, target: string, path: string, type?: "dir" | "file"): boolean {
  try {
    fs.symlinkSync(target, path, type);
    return true;
  } catch (err) {
    if (IS_WINDOWS && (err as NodeJS.ErrnoException).code === "EPERM") {
      t.skip("creating symlinks needs a privilege on this Windows runner");
      return false;
    }
    throw err;
  }
}
const isUnsafe =
  (fragment: string) =>
  (err: unknown): boolean => {
    assert.ok(err instanceof UnsafePathError, `expected UnsafePathError, got ${String(err)}`);
    assert.match(err.message, new RegExp(fragment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    return true;
  };
const hasCode =
  (code: string) =>
  (err: unknown): boolean => {
    assert.equal((err as NodeJS.ErrnoException).code, code, String(err));
    return true;
  };

describe("createPrivateDir", () => {
  it("creates a 0700 real directory with the prefix, inside the parent", { skip: POSIX_ONLY }, async () => {
    const dir = await createPrivateDir(base);
    const st = fs.lstatSync(dir);
    assert.ok(st.isDirectory() && !st.isSymbolicLink());
    assert.equal(st.mode & 0o777, 0o700);
    assert.equal(st.uid, process.getuid?.());
    assert.ok(dir.startsWith(join(base, "idbot-")), dir);
  });

  it("applies 0700 even under a permissive umask", { skip: POSIX_ONLY }, async () => {
    const old = process.umask(0);
    try {
      assert.equal(modeOf(await createPrivateDir(base, "umask-")), 0o700);
    } finally {
      process.umask(old);
    }
  });

  it("gives distinct directories in one parent", async () => {
    const dirs = await Promise.all(Array.from({ length: 10 }, () => createPrivateDir(base, "same-")));
    assert.equal(new Set(dirs).size, 10);
    for (const d of dirs) assert.ok(fs.lstatSync(d).isDirectory());
  });

  it("rejects a missing parent", async () => {
    await assert.rejects(createPrivateDir(join(base, "does-not-exist")), hasCode("ENOENT"));
  });

  it("rejects a parent that is a file", async () => {
    const file = join(base, `plain-file-${++counter}`);
    fs.writeFileSync(file, "x");
    await assert.rejects(createPrivateDir(file), isUnsafe("parent is not a directory"));
  });

  it("resolves a symlinked parent and returns a path that does not go through the link", async (t) => {
    const real = join(base, `real-parent-${++counter}`);
    fs.mkdirSync(real);
    const link = join(base, `link-parent-${counter}`);
    if (!symlinkOrSkip(t, real, link, "dir")) return;
    const dir = await createPrivateDir(link, "via-link-");
    assert.ok(dir.startsWith(real + sep), dir);
    assert.ok(fs.lstatSync(dir).isDirectory());
  });

  it("rejects prefixes with separators or odd characters", async () => {
    for (const prefix of ["../x", "a/b", "a\\b", "a\0b", "x".repeat(65)]) {
      await assert.rejects(createPrivateDir(base, prefix), UnsafePathError, prefix);
    }
    assert.deepEqual(
      fs.readdirSync(base).filter((n) => n.startsWith("x")),
      [],
    );
  });
});

describe("writeFilesExclusive", () => {
  it("writes contents with 0600 by default, 0644 on request, subdirectories 0700", async () => {
    const dir = await freshDir();
    const out = await writeFilesExclusive(dir, [
      { path: "identity/id_ed25519", contents: "PRIVATE" },
      { path: "identity/id_ed25519-cert.pub", contents: Buffer.from("CERT"), mode: 0o644 },
      { path: "kubernetes/deep/kubeconfig", contents: "apiVersion: v1\n", mode: 0o640 },
      { path: "token", contents: new Uint8Array([1, 2, 3]) },
    ]);
    assert.deepEqual(out, {
      "identity/id_ed25519": join(dir, "identity", "id_ed25519"),
      "identity/id_ed25519-cert.pub": join(dir, "identity", "id_ed25519-cert.pub"),
      "kubernetes/deep/kubeconfig": join(dir, "kubernetes", "deep", "kubeconfig"),
      token: join(dir, "token"),
    });
    assert.equal(fs.readFileSync(out["identity/id_ed25519"]!, "utf8"), "PRIVATE");
    assert.equal(fs.readFileSync(out["identity/id_ed25519-cert.pub"]!, "utf8"), "CERT");
    assert.deepEqual([...fs.readFileSync(out["token"]!)], [1, 2, 3]);
    if (IS_WINDOWS) return;
    assert.equal(modeOf(dir), 0o700);
    assert.equal(modeOf(out["identity/id_ed25519"]!), 0o600);
    assert.equal(modeOf(out["token"]!), 0o600);
    assert.equal(modeOf(out["identity/id_ed25519-cert.pub"]!), 0o644);
    assert.equal(modeOf(out["kubernetes/deep/kubeconfig"]!), 0o640);
    for (const d of ["identity", "kubernetes", "kubernetes/deep"])
      assert.equal(modeOf(join(dir, d)), 0o700, d);
    assert.equal(modeOf(join(dir, MANIFEST_NAME)), 0o600);
  });

  it("sets exact modes whatever the umask", { skip: POSIX_ONLY }, async () => {
    const dir = await freshDir();
    const old = process.umask(0o077);
    let out: Record<string, string>;
    try {
      out = await writeFilesExclusive(dir, [{ path: "sub/ca.pem", contents: "CA", mode: 0o644 }]);
    } finally {
      process.umask(old);
    }
    assert.equal(modeOf(out["sub/ca.pem"]!), 0o644);
    process.umask(0);
    try {
      out = await writeFilesExclusive(dir, [{ path: "sub2/key", contents: "K" }]);
    } finally {
      process.umask(old);
    }
    assert.equal(modeOf(out["sub2/key"]!), 0o600);
    assert.equal(modeOf(join(dir, "sub2")), 0o700);
  });

  it("rejects modes other than 0600 plus group/other read, before writing anything", async () => {
    const dir = await freshDir();
    for (const mode of [0o666, 0o755, 0o700, 0o400, 0o000, 0o4600, 0o622, -1, 1.5, Number.NaN]) {
      await assert.rejects(
        writeFilesExclusive(dir, [
          { path: "a", contents: "a" },
          { path: "b", contents: "b", mode },
        ]),
        RangeError,
        String(mode),
      );
    }
    assert.deepEqual(tree(dir), []);
  });

  it("writes a manifest listing every file and created subdirectory", async () => {
    const dir = await freshDir();
    const before = Date.now();
    await writeFilesExclusive(dir, [
      { path: "identity/key", contents: "k" },
      { path: "identity/key.pub", contents: "p", mode: 0o644 },
      { path: "tls/deep/ca.pem", contents: "c", mode: 0o644 },
      { path: "top", contents: "t" },
    ]);
    const raw = JSON.parse(fs.readFileSync(join(dir, MANIFEST_NAME), "utf8"));
    assert.equal(raw.version, 1);
    assert.deepEqual(raw.files, ["identity/key", "identity/key.pub", "tls/deep/ca.pem", "top"]);
    assert.deepEqual(raw.dirs, ["identity", "tls", "tls/deep"]);
    assert.ok(Date.parse(raw.createdAt) >= before - 1000 && Date.parse(raw.createdAt) <= Date.now());
    assert.equal(raw.updatedAt, raw.createdAt);
    const m = await readManifest(dir);
    assert.deepEqual(m, raw);
    assert.deepEqual(tree(dir), [
      MANIFEST_NAME,
      "identity",
      "identity/key",
      "identity/key.pub",
      "tls",
      "tls/deep",
      "tls/deep/ca.pem",
      "top",
    ]);
  });

  it("merges later batches into the manifest, keeping createdAt and listing only dirs it created", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "identity/key", contents: "k" }]);
    const first = await readManifest(dir);
    fs.mkdirSync(join(dir, "preexisting"), { mode: 0o700 });
    await new Promise((r) => setTimeout(r, 5));
    await writeFilesExclusive(dir, [
      { path: "identity/key.pub", contents: "p" },
      { path: "preexisting/file", contents: "f" },
      { path: "kube/config", contents: "c" },
    ]);
    const second = await readManifest(dir);
    assert.equal(second?.createdAt, first?.createdAt);
    assert.ok(second!.updatedAt > first!.updatedAt);
    assert.deepEqual(second?.files, ["identity/key", "identity/key.pub", "preexisting/file", "kube/config"]);
    assert.deepEqual(second?.dirs, ["identity", "kube"]);
  });

  it("serializes concurrent batches on one directory (no lost manifest update)", async () => {
    const dir = await freshDir();
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        writeFilesExclusive(dir, [{ path: `f${i}/x`, contents: String(i) }]),
      ),
    );
    const m = await readManifest(dir);
    assert.equal(m?.files.length, 20);
    assert.equal(m?.dirs.length, 20);
  });

  it("an empty batch writes nothing", async () => {
    const dir = await freshDir();
    assert.deepEqual(await writeFilesExclusive(dir, []), {});
    assert.deepEqual(tree(dir), []);
  });

  it("fails on a symlink planted at a file name: outside file untouched, nothing of the batch left", async (t) => {
    const dir = await freshDir();
    const { victim } = outsideDir();
    fs.mkdirSync(join(dir, "identity"), { mode: 0o700 });
    if (!symlinkOrSkip(t, victim, join(dir, "identity", "id_ed25519"), "file")) return;
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "kubernetes/kubeconfig", contents: "KUBE" },
        { path: "first", contents: "FIRST" },
        { path: "identity/id_ed25519", contents: "ATTACKER-GETS-THIS?" },
        { path: "never", contents: "N" },
      ]),
      hasCode("EEXIST"),
    );
    assert.equal(fs.readFileSync(victim, "utf8"), "precious");
    // only what was there before: the pre-existing dir and the planted link
    assert.deepEqual(tree(dir), ["identity", "identity/id_ed25519"]);
    assert.ok(fs.lstatSync(join(dir, "identity", "id_ed25519")).isSymbolicLink());
  });

  it("fails on a dangling symlink planted at a file name without creating its target", async (t) => {
    const dir = await freshDir();
    const { dir: out } = outsideDir();
    const target = join(out, "created-through-link");
    if (!symlinkOrSkip(t, target, join(dir, "key"), "file")) return;
    await assert.rejects(writeFilesExclusive(dir, [{ path: "key", contents: "K" }]), hasCode("EEXIST"));
    assert.equal(fs.existsSync(target), false);
    assert.deepEqual(tree(dir), ["key"]);
  });

  it("refuses a symlink planted as a subdirectory and writes nothing through it", async (t) => {
    const dir = await freshDir();
    const { dir: out } = outsideDir();
    if (!symlinkOrSkip(t, out, join(dir, "identity"), "dir")) return;
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "a/first", contents: "1" },
        { path: "identity/id_ed25519", contents: "K" },
      ]),
      isUnsafe("symbolic link"),
    );
    assert.deepEqual(fs.readdirSync(out), ["victim"]);
    assert.deepEqual(tree(dir), ["identity"]);
  });

  it("refuses a symlink planted deeper in the path", async (t) => {
    const dir = await freshDir();
    const { dir: out } = outsideDir();
    fs.mkdirSync(join(dir, "kubernetes"), { mode: 0o700 });
    if (!symlinkOrSkip(t, out, join(dir, "kubernetes", "nested"), "dir")) return;
    await assert.rejects(
      writeFilesExclusive(dir, [{ path: "kubernetes/nested/config", contents: "C" }]),
      isUnsafe("symbolic link"),
    );
    assert.deepEqual(fs.readdirSync(out), ["victim"]);
  });

  it("refuses a file standing where a subdirectory is needed", async () => {
    const dir = await freshDir();
    fs.writeFileSync(join(dir, "identity"), "not a dir");
    await assert.rejects(
      writeFilesExclusive(dir, [{ path: "identity/key", contents: "K" }]),
      isUnsafe("is not a directory"),
    );
  });

  it("refuses an existing subdirectory writable by others", { skip: POSIX_ONLY }, async () => {
    const dir = await freshDir();
    fs.mkdirSync(join(dir, "shared"));
    fs.chmodSync(join(dir, "shared"), 0o777);
    await assert.rejects(
      writeFilesExclusive(dir, [{ path: "shared/key", contents: "K" }]),
      isUnsafe("writable by group or others"),
    );
    assert.deepEqual(tree(dir), ["shared"]);
  });

  it("does not overwrite an existing regular file (EEXIST) and rolls back the rest of the batch", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "identity/key", contents: "ORIGINAL" }]);
    const manifestBefore = fs.readFileSync(join(dir, MANIFEST_NAME), "utf8");
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "identity/key.pub", contents: "new pub" },
        { path: "other/x", contents: "x" },
        { path: "identity/key", contents: "REPLACED?" },
      ]),
      hasCode("EEXIST"),
    );
    assert.equal(fs.readFileSync(join(dir, "identity", "key"), "utf8"), "ORIGINAL");
    assert.equal(fs.readFileSync(join(dir, MANIFEST_NAME), "utf8"), manifestBefore);
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "identity", "identity/key"]);
  });

  it("removes a file that failed after it was opened (write error)", async () => {
    const dir = await freshDir();
    // passes the Buffer check but makes the write itself throw, after the exclusive open
    const poisoned = Object.setPrototypeOf({}, Buffer.prototype) as Buffer;
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "ok/one", contents: "1" },
        { path: "ok/two", contents: poisoned },
      ]),
    );
    assert.deepEqual(tree(dir), []);
  });

  it("rejects unsafe names with an error naming the path, creating nothing", async () => {
    const dir = await freshDir();
    const cases: [string, string][] = [
      ["../x", '".." segments'],
      ["a/../../x", '".." segments'],
      ["..", '".." segments'],
      ["/abs", "absolute"],
      ["/etc/passwd", "absolute"],
      ["C:/Windows/x", ":"],
      ["C:x", ":"],
      ["file:stream", ":"],
      ["a\\b", '"\\"'],
      ["..\\x", '"\\"'],
      ["a//b", "empty segment"],
      ["a/", "empty segment"],
      ["", "empty path"],
      [".", '"." segments'],
      ["./a", '"." segments'],
      ["a/./b", '"." segments'],
      ["a\0b", "control character"],
      ["a\nb", "control character"],
      ["trailing.", "ends with a dot"],
      ["trailing ", "ends with a dot or a space"],
      ["a*b", "invalid on Windows"],
      ["con", "reserved device name"],
      ["sub/NUL.txt", "reserved device name"],
      [MANIFEST_NAME, "reserved for the manifest"],
      ["x".repeat(201), "200 bytes"],
      ["é".repeat(101), "200 bytes"],
    ];
    for (const [path, fragment] of cases) {
      await assert.rejects(
        writeFilesExclusive(dir, [
          { path: "fine", contents: "f" },
          { path, contents: "x" },
        ]),
        (err: unknown) => {
          isUnsafe(fragment)(err);
          assert.ok((err as UnsafePathError).message.includes(JSON.stringify(path)), (err as Error).message);
          assert.equal((err as UnsafePathError).path, path);
          return true;
        },
        JSON.stringify(path),
      );
    }
    assert.deepEqual(tree(dir), []);
  });

  it("accepts ordinary names: dotfiles, dashes, unicode, nested", async () => {
    const dir = await freshDir();
    const out = await writeFilesExclusive(dir, [
      { path: ".ssh-config", contents: "a" },
      { path: "a-b_c.d/e.pem", contents: "b" },
      { path: "clé/ключ", contents: "c" },
      { path: "x.tmp", contents: "d" },
      { path: `sub/${MANIFEST_NAME}`, contents: "e" },
    ]);
    assert.equal(Object.keys(out).length, 5);
  });

  it("rejects duplicates (case-insensitively) and a name used as both file and directory", async () => {
    const dir = await freshDir();
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "a", contents: "1" },
        { path: "a", contents: "2" },
      ]),
      isUnsafe("appears twice"),
    );
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "Key", contents: "1" },
        { path: "key", contents: "2" },
      ]),
      isUnsafe("appears twice"),
    );
    await assert.rejects(
      writeFilesExclusive(dir, [
        { path: "a/b", contents: "1" },
        { path: "a", contents: "2" },
      ]),
      isUnsafe("both a file and the directory"),
    );
    assert.deepEqual(tree(dir), []);
  });

  it("rejects non-string paths and contents", async () => {
    const dir = await freshDir();
    await assert.rejects(
      writeFilesExclusive(dir, [{ path: 42, contents: "x" } as unknown as FileSpec]),
      UnsafePathError,
    );
    await assert.rejects(
      writeFilesExclusive(dir, [{ path: "x", contents: 42 } as unknown as FileSpec]),
      TypeError,
    );
    await assert.rejects(writeFilesExclusive(dir, "x" as unknown as FileSpec[]), TypeError);
  });

  it("refuses a directory that is a symlink, missing, or shared", async (t) => {
    const dir = await freshDir();
    await assert.rejects(
      writeFilesExclusive(join(dir, "missing"), [{ path: "a", contents: "a" }]),
      hasCode("ENOENT"),
    );
    if (!IS_WINDOWS) {
      const shared = join(base, `shared-${++counter}`);
      fs.mkdirSync(shared);
      fs.chmodSync(shared, 0o1777);
      await assert.rejects(
        writeFilesExclusive(shared, [{ path: "a", contents: "a" }]),
        isUnsafe("writable by group or others"),
      );
      assert.deepEqual(fs.readdirSync(shared), []);
    }
    const link = join(base, `dir-link-${++counter}`);
    if (!symlinkOrSkip(t, dir, link, "dir")) return;
    await assert.rejects(
      writeFilesExclusive(link, [{ path: "a", contents: "a" }]),
      isUnsafe("symbolic link"),
    );
    assert.deepEqual(tree(dir), []);
  });
});

describe("replaceFilesAtomic", () => {
  it("replaces contents, preserves modes, leaves no temp file", async () => {
    const dir = await freshDir();
    const out = await writeFilesExclusive(dir, [
      { path: "identity/key", contents: "old key" },
      { path: "identity/key-cert.pub", contents: "old cert", mode: 0o644 },
    ]);
    const again = await replaceFilesAtomic(dir, [
      { path: "identity/key", contents: "new key" },
      { path: "identity/key-cert.pub", contents: Buffer.from("new cert") },
    ]);
    assert.deepEqual(again, out);
    assert.equal(fs.readFileSync(out["identity/key"]!, "utf8"), "new key");
    assert.equal(fs.readFileSync(out["identity/key-cert.pub"]!, "utf8"), "new cert");
    if (!IS_WINDOWS) {
      assert.equal(modeOf(out["identity/key"]!), 0o600);
      assert.equal(modeOf(out["identity/key-cert.pub"]!), 0o644);
    }
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "identity", "identity/key", "identity/key-cert.pub"]);
  });

  it("applies an explicit mode, and clamps a loosened existing mode", { skip: POSIX_ONLY }, async () => {
    const dir = await freshDir();
    const out = await writeFilesExclusive(dir, [
      { path: "a", contents: "a" },
      { path: "b", contents: "b" },
    ]);
    fs.chmodSync(out["b"]!, 0o666);
    await replaceFilesAtomic(dir, [
      { path: "a", contents: "A", mode: 0o644 },
      { path: "b", contents: "B" },
    ]);
    assert.equal(modeOf(out["a"]!), 0o644);
    assert.equal(modeOf(out["b"]!), 0o644);
  });

  it("concurrent readers never see a partial file across 200 replacements", async () => {
    const dir = await freshDir();
    const size = 256 * 1024;
    const A = Buffer.alloc(size, 0x41);
    const B = Buffer.alloc(size, 0x42);
    const out = await writeFilesExclusive(dir, [{ path: "tls/cert.pem", contents: A, mode: 0o644 }]);
    const target = out["tls/cert.pem"]!;
    const stop = new SharedArrayBuffer(4);
    // a reader on another thread (truly parallel) ...
    const worker = new Worker(
      `
      const { readFileSync } = require("node:fs");
      const { workerData, parentPort } = require("node:worker_threads");
      const flag = new Int32Array(workerData.stop);
      const A = Buffer.alloc(workerData.size, 0x41), B = Buffer.alloc(workerData.size, 0x42);
      let reads = 0, bad = 0, transient = 0;
      while (Atomics.load(flag, 0) === 0) {
        let data;
        try { data = readFileSync(workerData.target); }
        catch (e) { if (process.platform === "win32" && ["ENOENT", "EPERM", "EACCES", "EBUSY"].includes(e.code)) { transient++; continue; } throw e; }
        reads++;
        if (!data.equals(A) && !data.equals(B)) bad++;
        // Windows cannot replace a file while it is open: leave the writer gaps there
        if (process.platform === "win32") Atomics.wait(flag, 0, 0, 2);
      }
      parentPort.postMessage({ reads, bad, transient });
      `,
      { eval: true, workerData: { target, size, stop } },
    );
    const workerDone = new Promise<{ reads: number; bad: number }>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    workerDone.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile
    // ... and readers on this thread's I/O pool
    let running = true;
    let asyncReads = 0;
    let asyncBad = 0;
    const asyncReader = async (): Promise<void> => {
      while (running) {
        const data = await readFile(target).catch((err: NodeJS.ErrnoException) => {
          if (IS_WINDOWS) return undefined;
          throw err;
        });
        if (data === undefined) continue;
        asyncReads++;
        if (!data.equals(A) && !data.equals(B)) asyncBad++;
        if (IS_WINDOWS) await new Promise((r) => setTimeout(r, 2));
      }
    };
    const readers = [asyncReader(), asyncReader()];
    try {
      for (let i = 0; i < 200; i++) {
        await replaceFilesAtomic(dir, [{ path: "tls/cert.pem", contents: i % 2 === 0 ? B : A }]);
      }
    } finally {
      running = false;
      Atomics.store(new Int32Array(stop), 0, 1);
    }
    await Promise.all(readers);
    const result = await workerDone;
    assert.equal(result.bad, 0, `worker saw ${result.bad} partial reads out of ${result.reads}`);
    assert.equal(asyncBad, 0, `async readers saw ${asyncBad} partial reads out of ${asyncReads}`);
    assert.ok(result.reads > 0 && asyncReads > 0, `reads: worker ${result.reads}, async ${asyncReads}`);
    assert.ok(fs.readFileSync(target).equals(A)); // 200 swaps: the last one wrote A
    if (!IS_WINDOWS) assert.equal(modeOf(target), 0o644);
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "tls", "tls/cert.pem"]);
  });

  it("refuses a symlink at the target: link and its target untouched", async (t) => {
    const dir = await freshDir();
    const { victim } = outsideDir();
    const out = await writeFilesExclusive(dir, [{ path: "key", contents: "K" }]);
    fs.unlinkSync(out["key"]!);
    if (!symlinkOrSkip(t, victim, out["key"]!, "file")) return;
    await assert.rejects(
      replaceFilesAtomic(dir, [{ path: "key", contents: "EVIL" }]),
      isUnsafe("symbolic link"),
    );
    assert.equal(fs.readFileSync(victim, "utf8"), "precious");
    assert.ok(fs.lstatSync(out["key"]!).isSymbolicLink());
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "key"]);
  });

  it("refuses a target under a directory replaced by a symlink", async (t) => {
    const dir = await freshDir();
    const { dir: out } = outsideDir();
    await writeFilesExclusive(dir, [{ path: "kube/victim", contents: "K" }]);
    fs.rmSync(join(dir, "kube"), { recursive: true });
    if (!symlinkOrSkip(t, out, join(dir, "kube"), "dir")) return;
    await assert.rejects(
      replaceFilesAtomic(dir, [{ path: "kube/victim", contents: "EVIL" }]),
      isUnsafe("symbolic link"),
    );
    assert.deepEqual(fs.readdirSync(out), ["victim"]);
    assert.equal(fs.readFileSync(join(out, "victim"), "utf8"), "precious");
  });

  it("refuses files not in the manifest, missing targets, directories, and a dir without manifest", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [
      { path: "a", contents: "a" },
      { path: "gone", contents: "g" },
      { path: "becomes-dir", contents: "d" },
    ]);
    fs.writeFileSync(join(dir, "unlisted"), "u");
    await assert.rejects(
      replaceFilesAtomic(dir, [{ path: "unlisted", contents: "x" }]),
      isUnsafe("not listed"),
    );
    fs.unlinkSync(join(dir, "gone"));
    await assert.rejects(replaceFilesAtomic(dir, [{ path: "gone", contents: "x" }]), hasCode("ENOENT"));
    fs.unlinkSync(join(dir, "becomes-dir"));
    fs.mkdirSync(join(dir, "becomes-dir"));
    await assert.rejects(
      replaceFilesAtomic(dir, [{ path: "becomes-dir", contents: "x" }]),
      isUnsafe("not a regular file"),
    );
    await assert.rejects(replaceFilesAtomic(dir, [{ path: "../a", contents: "x" }]), isUnsafe('".."'));
    // a valid first file is not replaced when a later one is refused
    await assert.rejects(
      replaceFilesAtomic(dir, [
        { path: "a", contents: "NEW" },
        { path: "unlisted", contents: "x" },
      ]),
      isUnsafe("not listed"),
    );
    assert.equal(fs.readFileSync(join(dir, "a"), "utf8"), "a");
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "a", "becomes-dir", "unlisted"]);

    const bare = await freshDir();
    fs.writeFileSync(join(bare, "a"), "a");
    await assert.rejects(replaceFilesAtomic(bare, [{ path: "a", contents: "x" }]), ManifestError);
    assert.equal(fs.readFileSync(join(bare, "a"), "utf8"), "a");
  });

  it("removes its temp files when a write fails, leaving every target unchanged", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [
      { path: "one", contents: "1" },
      { path: "two", contents: "2" },
    ]);
    const poisoned = Object.setPrototypeOf({}, Buffer.prototype) as Buffer;
    await assert.rejects(
      replaceFilesAtomic(dir, [
        { path: "one", contents: "NEW" },
        { path: "two", contents: poisoned },
      ]),
    );
    assert.equal(fs.readFileSync(join(dir, "one"), "utf8"), "1");
    assert.equal(fs.readFileSync(join(dir, "two"), "utf8"), "2");
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "one", "two"]);
  });
});

describe("cleanupDir", () => {
  it("removes exactly the manifest entries, keeps an unrelated file and the non-empty dir", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [
      { path: "identity/key", contents: "k" },
      { path: "identity/key.pub", contents: "p" },
      { path: "kube/config", contents: "c" },
      { path: "token", contents: "t" },
    ]);
    fs.writeFileSync(join(dir, "user-notes.txt"), "mine");
    fs.writeFileSync(join(dir, "identity", "known_hosts"), "mine too");
    const result = await cleanupDir(dir);
    assert.deepEqual(result.removed.sort(), [
      MANIFEST_NAME,
      "identity/key",
      "identity/key.pub",
      "kube",
      "kube/config",
      "token",
    ]);
    assert.deepEqual(result.missing, []);
    assert.deepEqual(result.refused, []);
    assert.deepEqual(result.kept, ["identity", "identity/known_hosts", "user-notes.txt"]);
    assert.equal(result.dirRemoved, false);
    assert.deepEqual(tree(dir), ["identity", "identity/known_hosts", "user-notes.txt"]);
    assert.equal(fs.readFileSync(join(dir, "user-notes.txt"), "utf8"), "mine");
  });

  it("removes the directory itself when nothing else is left", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [
      { path: "a/b/c", contents: "c" },
      { path: "d", contents: "d" },
    ]);
    const result = await cleanupDir(dir);
    assert.deepEqual(result.removed.sort(), [MANIFEST_NAME, "a", "a/b", "a/b/c", "d"]);
    assert.equal(result.dirRemoved, true);
    assert.equal(fs.existsSync(dir), false);
  });

  it("tolerates entries that are already deleted", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [
      { path: "x/one", contents: "1" },
      { path: "two", contents: "2" },
      { path: "gone/three", contents: "3" },
    ]);
    fs.unlinkSync(join(dir, "two"));
    fs.rmSync(join(dir, "gone"), { recursive: true });
    const result = await cleanupDir(dir);
    assert.deepEqual(result.missing.sort(), ["gone", "gone/three", "two"]);
    assert.deepEqual(result.removed.sort(), [MANIFEST_NAME, "x", "x/one"]);
    assert.equal(result.dirRemoved, true);
  });

  it("is idempotent and never throws for a missing directory", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "a", contents: "a" }]);
    await cleanupDir(dir);
    const empty = { removed: [], missing: [], refused: [], kept: [], dirRemoved: false };
    assert.deepEqual(await cleanupDir(dir), empty);
    assert.deepEqual(await cleanupDir(join(base, "never-existed", "deeper")), empty);
    const file = join(base, `a-file-${++counter}`);
    fs.writeFileSync(file, "x");
    assert.deepEqual(await cleanupDir(join(file, "sub")), empty); // ENOTDIR counts as missing
  });

  it("unlinks an entry replaced by a symlink without touching the outside file", async (t) => {
    const dir = await freshDir();
    const { victim } = outsideDir();
    await writeFilesExclusive(dir, [{ path: "identity/key", contents: "k" }]);
    fs.unlinkSync(join(dir, "identity", "key"));
    if (!symlinkOrSkip(t, victim, join(dir, "identity", "key"), "file")) return;
    const result = await cleanupDir(dir);
    assert.ok(result.removed.includes("identity/key"));
    assert.equal(fs.readFileSync(victim, "utf8"), "precious");
    assert.equal(result.dirRemoved, true);
  });

  it("refuses entries under a subdirectory replaced by a symlink; the outside files stay", async (t) => {
    const dir = await freshDir();
    const { dir: out, victim } = outsideDir();
    fs.writeFileSync(join(out, "config"), "outside config");
    await writeFilesExclusive(dir, [
      { path: "kube/config", contents: "c" },
      { path: "kube/victim", contents: "v" },
    ]);
    fs.rmSync(join(dir, "kube"), { recursive: true });
    if (!symlinkOrSkip(t, out, join(dir, "kube"), "dir")) return;
    fs.writeFileSync(join(out, "config.tmp-0123456789ab"), "looks like a temp leftover");
    const result = await cleanupDir(dir);
    assert.deepEqual(result.refused.sort(), ["kube/config", "kube/victim"]);
    assert.deepEqual(result.removed.sort(), [MANIFEST_NAME, "kube"]); // the link itself
    assert.equal(fs.readFileSync(victim, "utf8"), "precious");
    assert.equal(fs.readFileSync(join(out, "config"), "utf8"), "outside config");
    assert.ok(fs.existsSync(join(out, "config.tmp-0123456789ab")));
    assert.equal(fs.existsSync(dir), false);
  });

  it("refuses tampered manifest entries that escape the directory and leaves them alone", async () => {
    const dir = await freshDir();
    const { victim } = outsideDir();
    const relVictim = `../${victim
      .slice(base.length + 1)
      .split(sep)
      .join("/")}`;
    fs.writeFileSync(join(dir, "ours"), "o");
    const tampered = {
      version: 1,
      createdAt: new Date().toISOString(),
      files: ["../../etc/passwd", relVictim, victim, `ours/../${relVictim}`, "ours", "..\\x", "C:/x"],
      dirs: ["..", "/", ".", ""],
    };
    fs.writeFileSync(join(dir, MANIFEST_NAME), JSON.stringify(tampered), { mode: 0o600 });
    const result = await cleanupDir(dir);
    assert.deepEqual(
      result.refused.sort(),
      [...tampered.files.filter((f) => f !== "ours"), ...tampered.dirs].sort(),
    );
    assert.deepEqual(result.removed.sort(), [MANIFEST_NAME, "ours"]);
    assert.equal(fs.readFileSync(victim, "utf8"), "precious");
    assert.ok(fs.existsSync(base));
  });

  it("refuses to remove a directory entry that replaced a listed file", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "key", contents: "k" }]);
    fs.unlinkSync(join(dir, "key"));
    fs.mkdirSync(join(dir, "key"));
    fs.writeFileSync(join(dir, "key", "inner"), "i");
    const result = await cleanupDir(dir);
    assert.deepEqual(result.refused, ["key"]);
    assert.deepEqual(result.kept, ["key", "key/inner"]);
    assert.equal(fs.readFileSync(join(dir, "key", "inner"), "utf8"), "i");
  });

  it("removes temp files left by an interrupted replacement, and only those", async () => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "sub/key", contents: "k" }]);
    fs.writeFileSync(join(dir, "sub", "key.tmp-0123456789ab"), "half");
    fs.writeFileSync(join(dir, `${MANIFEST_NAME}.tmp-abcdefabcdef`), "half");
    fs.writeFileSync(join(dir, "sub", "key.tmp-short"), "not ours");
    fs.writeFileSync(join(dir, "sub", "other.tmp-0123456789ab"), "not ours");
    const result = await cleanupDir(dir);
    assert.deepEqual(result.removed.sort(), [
      MANIFEST_NAME,
      `${MANIFEST_NAME}.tmp-abcdefabcdef`,
      "sub/key",
      "sub/key.tmp-0123456789ab",
    ]);
    assert.deepEqual(result.kept, ["sub", "sub/key.tmp-short", "sub/other.tmp-0123456789ab"]);
  });

  it("without a manifest removes nothing, lists what is there, and removes an empty directory", async () => {
    const dir = await freshDir();
    fs.mkdirSync(join(dir, "d"));
    fs.writeFileSync(join(dir, "d", "f"), "f");
    const result = await cleanupDir(dir);
    assert.deepEqual(result, {
      removed: [],
      missing: [],
      refused: [],
      kept: ["d", "d/f"],
      dirRemoved: false,
    });
    assert.equal(fs.readFileSync(join(dir, "d", "f"), "utf8"), "f");

    const empty = await freshDir();
    assert.equal((await cleanupDir(empty)).dirRemoved, true);
    assert.equal(fs.existsSync(empty), false);
  });

  it("throws on a corrupt or symlinked manifest and removes nothing", async (t) => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "a", contents: "a" }]);
    const manifest = join(dir, MANIFEST_NAME);
    const good = fs.readFileSync(manifest, "utf8");
    for (const bad of [
      "{not json",
      "[]",
      '{"version":2,"createdAt":"x","files":[],"dirs":[]}',
      '{"version":1}',
    ]) {
      fs.writeFileSync(manifest, bad);
      await assert.rejects(cleanupDir(dir), ManifestError, bad);
      await assert.rejects(readManifest(dir), ManifestError, bad);
    }
    assert.ok(fs.existsSync(join(dir, "a")));
    fs.unlinkSync(manifest);
    const { dir: out } = outsideDir();
    const fake = join(out, "fake-manifest.json");
    fs.writeFileSync(fake, good);
    if (!symlinkOrSkip(t, fake, manifest, "file")) return;
    await assert.rejects(
      cleanupDir(dir),
      (err: unknown) => err instanceof ManifestError && /symbolic link/.test(err.message),
    );
    assert.ok(fs.existsSync(join(dir, "a")));
    assert.ok(fs.existsSync(fake));
  });

  it("refuses a directory that is a symlink or a file", async (t) => {
    const dir = await freshDir();
    await writeFilesExclusive(dir, [{ path: "a", contents: "a" }]);
    const file = join(base, `plain-${++counter}`);
    fs.writeFileSync(file, "x");
    await assert.rejects(cleanupDir(file), isUnsafe("is not a directory"));
    const link = join(base, `cleanup-link-${++counter}`);
    if (!symlinkOrSkip(t, dir, link, "dir")) return;
    await assert.rejects(cleanupDir(link), isUnsafe("symbolic link"));
    assert.deepEqual(tree(dir), [MANIFEST_NAME, "a"]);
  });
});

describe("readManifest", () => {
  it("returns undefined when the manifest or the directory is missing", async () => {
    const dir = await freshDir();
    assert.equal(await readManifest(dir), undefined);
    assert.equal(await readManifest(join(dir, "nope")), undefined);
  });

  it("rejects an oversized manifest", async () => {
    const dir = await freshDir();
    fs.writeFileSync(join(dir, MANIFEST_NAME), " ".repeat((1 << 20) + 1));
    await assert.rejects(readManifest(dir), ManifestError);
  });
});
