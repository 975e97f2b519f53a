// Hardened credential files: a fresh private directory, exclusive all-or-nothing writes,
// atomic in-place replacement, and a manifest so the post step removes exactly what idbot
// wrote and nothing else.
//
// Threat model. The credential directory is created by createPrivateDir (0700, owned by us,
// random name). Everything under it is checked with lstat and opened with O_EXCL|O_NOFOLLOW,
// so a file or symlink planted at one of our names (by a misconfigured step, a reused
// directory, a previous run) makes the write fail instead of writing through it, and the
// cleanup never follows a link to delete or touch something outside the directory.
// Symlinks ABOVE the directory (macOS /var -> /private/var, a symlinked RUNNER_TEMP, 8.3
// short names on Windows) are resolved once with realpath in createPrivateDir: whoever
// controls those ancestors controls the job anyway.
//
// Windows. Mode bits are not enforced there (only the read-only attribute exists, which we
// never set, so files stay deletable); protection comes from the ACL inherited from the
// runner's temp directory. O_NOFOLLOW does not exist, so an lstat check stands in for it
// before each exclusive create (CREATE_NEW also fails on an existing name, link or not).
// Renames and unlinks are retried briefly on EPERM/EACCES/EBUSY, which antivirus and
// indexers cause there.
import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import {
  type FileHandle,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  realpath,
  rename,
  rmdir,
  unlink,
} from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

export const MANIFEST_NAME = ".idbot-manifest.json";
export const MANIFEST_VERSION = 1;

export interface FileSpec {
  /** Relative path under the directory, "/"-separated, e.g. "identity/id_ed25519". */
  path: string;
  contents: string | Uint8Array;
  /** 0o600 (default) plus optional group/other read: 0o640, 0o604, 0o644. Ignored on Windows. */
  mode?: number;
}

export interface Manifest {
  version: typeof MANIFEST_VERSION;
  createdAt: string;
  updatedAt: string;
  /** Files idbot created, relative "/"-separated paths, in creation order. */
  files: string[];
  /** Directories idbot created (not ones that already existed), parents before children. */
  dirs: string[];
}

export interface CleanupResult {
  /** Relative paths removed: manifest files and dirs, temp files left by an interrupted replacement, the manifest. */
  removed: string[];
  /** Manifest entries that were already gone. */
  missing: string[];
  /** Manifest entries left alone: unsafe (absolute, "..", ...), reached through a symlink, or now a directory. */
  refused: string[];
  /** Everything still present under the directory afterwards (not in the manifest, non-empty dirs, undeletable files). */
  kept: string[];
  /** Whether the directory itself was removed (it was empty at the end). */
  dirRemoved: boolean;
}

/** A path idbot will not write, replace or remove: unsafe name, symlink, foreign or shared directory. */
export class UnsafePathError extends Error {
  override name = "UnsafePathError";
  readonly code = "ERR_IDBOT_UNSAFE_PATH";
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`unsafe path ${JSON.stringify(path)}: ${reason}`);
  }
}

/** The manifest is unreadable, tampered with in its structure, or missing where one is required. */
export class ManifestError extends Error {
  override name = "ManifestError";
  readonly code = "ERR_IDBOT_MANIFEST";
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`manifest ${path} ${reason}`);
  }
}

const IS_WINDOWS = process.platform === "win32";
const O_NOFOLLOW: number = constants.O_NOFOLLOW ?? 0;
const O_DIRECTORY: number = constants.O_DIRECTORY ?? 0;
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_NOFOLLOW;
const DEFAULT_MODE = 0o600;
const DIR_MODE = 0o700;
const MAX_MANIFEST_BYTES = 1 << 20;
const TEMP_NAME = /^(.+)\.tmp-[0-9a-f]{12}$/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;
const WINDOWS_FORBIDDEN = /[<>"|?*]/;

// ---------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------

/**
 * Creates a fresh private directory `<realpath(parent)>/<prefix><random>`, mode 0700, and
 * returns its canonical absolute path. `parent` must exist and be a directory; symlinks in
 * `parent` are resolved first (so the result never goes through a link). The new directory
 * is re-opened with O_NOFOLLOW|O_DIRECTORY, chmod'ed through the handle and verified to be
 * a real directory owned by us with no group/other bits (POSIX).
 */
export async function createPrivateDir(parent: string, prefix = "idbot-"): Promise<string> {
  if (!/^[A-Za-z0-9._-]{0,64}$/.test(prefix)) {
    throw new UnsafePathError(prefix, "prefix may only contain letters, digits, '.', '_', '-' (at most 64)");
  }
  const real = await realpath(resolve(parent));
  if (!(await lstat(real)).isDirectory()) throw new UnsafePathError(real, "parent is not a directory");
  const dir = await mkdtemp(join(real, prefix));
  try {
    await securePrivateDir(dir);
  } catch (err) {
    await rmdir(dir).catch(() => undefined);
    throw err;
  }
  return dir;
}

/**
 * Writes a batch of new files under `dir`, all or nothing, and records them in the manifest.
 *
 * - names are relative, "/"-separated, with no "", ".", ".." segment, no "\", ":", control
 *   or Windows-invalid character, no Windows device name; unique case-insensitively;
 * - `dir` and every existing directory on the way must be real directories (not symlinks),
 *   owned by us and not writable by group/others; missing ones are created 0700;
 * - files are opened O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW with their mode, chmod'ed through
 *   the handle (the umask cannot change it) and fsync'ed;
 * - on any failure (EEXIST for a planted file or symlink, ENOSPC, ...) every file and
 *   directory this call created is removed before the error is rethrown;
 * - the manifest is then updated atomically (temp file + rename).
 *
 * Returns relative path -> absolute path. Calls on the same directory are serialized
 * within this process; do not write one directory from two processes.
 */
export async function writeFilesExclusive(
  dir: string,
  files: readonly FileSpec[],
): Promise<Record<string, string>> {
  const root = resolve(dir);
  const plan = planBatch(files);
  return withDirLock(root, async () => {
    assertSafeDir(await lstat(root), root);
    if (plan.length === 0) return {};
    const previous = await readManifest(root);
    const createdFiles: string[] = [];
    const createdDirs: string[] = [];
    const checked = new Set<string>();
    try {
      for (const item of plan) {
        await prepareParents(root, item.segs, checked, createdDirs);
        const abs = join(root, ...item.segs);
        await writeNewFile(abs, item.data, item.mode ?? DEFAULT_MODE, () => createdFiles.push(abs));
      }
      await syncDirs([root, ...createdDirs.map((d) => dirname(join(root, d))), ...createdFiles.map(dirname)]);
      const now = new Date().toISOString();
      await writeManifest(root, {
        version: MANIFEST_VERSION,
        createdAt: previous?.createdAt ?? now,
        updatedAt: now,
        files: unique([...(previous?.files ?? []), ...plan.map((p) => p.rel)]),
        dirs: unique([...(previous?.dirs ?? []), ...createdDirs]),
      });
    } catch (err) {
      return rollback(root, createdFiles, createdDirs, err);
    }
    return Object.fromEntries(plan.map((p) => [p.rel, join(root, ...p.segs)]));
  });
}

/**
 * Replaces files idbot wrote earlier, each one atomically: the new content goes to
 * `<name>.tmp-<random>` (O_EXCL|O_NOFOLLOW, fsync'ed) and is renamed over the target, so a
 * reader sees the old or the new file, never a mix. Every target must be listed in the
 * manifest and be a regular file (not a symlink) under real directories. The mode is
 * `spec.mode` when given, else the target's (clamped to 0600 + group/other read).
 *
 * All temp files are written before the first rename, so a failure while writing leaves
 * every target untouched (temps removed). Each rename is atomic; the batch as a whole is not.
 */
export async function replaceFilesAtomic(
  dir: string,
  files: readonly FileSpec[],
): Promise<Record<string, string>> {
  const root = resolve(dir);
  const plan = planBatch(files);
  return withDirLock(root, async () => {
    assertSafeDir(await lstat(root), root);
    if (plan.length === 0) return {};
    const manifest = await readManifest(root);
    if (manifest === undefined) {
      throw new ManifestError(
        join(root, MANIFEST_NAME),
        "is missing: only files idbot wrote can be replaced",
      );
    }
    const listed = new Set(manifest.files);
    const jobs: { rel: string; target: string; data: Uint8Array; mode: number }[] = [];
    for (const item of plan) {
      if (!listed.has(item.rel)) {
        throw new UnsafePathError(
          item.rel,
          "is not listed in the manifest: only files idbot wrote can be replaced",
        );
      }
      await checkParents(root, item.segs);
      const target = join(root, ...item.segs);
      const st = await lstat(target);
      assertRegularFile(st, target);
      jobs.push({ rel: item.rel, target, data: item.data, mode: item.mode ?? preservedMode(st) });
    }

    const pending: { tmp: string; target: string }[] = [];
    try {
      for (const job of jobs) {
        const tmp = tempNameFor(job.target);
        await writeNewFile(tmp, job.data, job.mode, () => pending.push({ tmp, target: job.target }));
      }
      for (let next = pending[0]; next !== undefined; next = pending[0]) {
        assertRegularFile(await lstat(next.target), next.target); // again, right before the swap
        await retryOnWindows(() => rename(next.tmp, next.target));
        pending.shift();
      }
    } catch (err) {
      for (const p of pending) await unlink(p.tmp).catch(() => undefined);
      throw err;
    }
    await syncDirs(jobs.map((j) => dirname(j.target)));
    return Object.fromEntries(jobs.map((j) => [j.rel, j.target]));
  });
}

/**
 * Reads `dir/.idbot-manifest.json`. Undefined when it (or `dir`) does not exist; throws
 * ManifestError when it is a symlink, not a regular file, too large, not JSON, or not of
 * the expected shape/version. Entries are returned as stored: callers validate them.
 */
export async function readManifest(dir: string): Promise<Manifest | undefined> {
  const path = join(resolve(dir), MANIFEST_NAME);
  const st = await lstatOrUndefined(path);
  if (st === undefined) return undefined;
  if (!st.isFile())
    throw new ManifestError(path, st.isSymbolicLink() ? "is a symbolic link" : "is not a regular file");
  const fh = await open(path, constants.O_RDONLY | O_NOFOLLOW);
  let text: string;
  try {
    const fst = await fh.stat();
    if (!fst.isFile()) throw new ManifestError(path, "is not a regular file");
    if (fst.size > MAX_MANIFEST_BYTES)
      throw new ManifestError(path, `is larger than ${MAX_MANIFEST_BYTES} bytes`);
    text = await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
  return parseManifest(text, path);
}

/**
 * Removes what the manifest of `dir` lists: files, leftover temp files of interrupted
 * replacements, then listed directories (deepest first, only if empty), then the manifest,
 * then `dir` itself if nothing is left. Never follows a symlink: an entry that became a
 * symlink is unlinked itself (its target is untouched); an entry under a directory that
 * became a symlink is refused; entries escaping `dir` are refused. Missing entries are
 * tolerated; a missing `dir` gives an empty result. The manifest is kept when an entry
 * could not be deleted (e.g. a busy file on Windows), so a later cleanup can retry.
 * Throws when `dir` is a symlink, not a directory, owned by someone else (POSIX), or when
 * the manifest itself is corrupt (nothing is removed then).
 */
export async function cleanupDir(dir: string): Promise<CleanupResult> {
  const root = resolve(dir);
  return withDirLock(root, async () => {
    const result: CleanupResult = { removed: [], missing: [], refused: [], kept: [], dirRemoved: false };
    const st = await lstatOrUndefined(root);
    if (st === undefined) return result;
    assertOwnedDir(st, root);
    const manifest = await readManifest(root);
    if (manifest !== undefined) {
      let incomplete = false;
      const record = (rel: string, outcome: Outcome): void => {
        if (outcome === "failed") incomplete = true;
        else if (outcome !== "notEmpty") result[outcome].push(rel);
      };
      const files = unique(manifest.files);
      for (const rel of files) record(rel, await removeEntry(root, rel, "file"));
      if (!(await removeTempLeftovers(root, files, result.removed))) incomplete = true;
      const dirs = unique(manifest.dirs).sort((a, b) => b.split("/").length - a.split("/").length);
      for (const rel of dirs) record(rel, await removeEntry(root, rel, "dir"));
      if (!incomplete) {
        try {
          await retryOnWindows(() => unlink(join(root, MANIFEST_NAME)));
          result.removed.push(MANIFEST_NAME);
        } catch {
          // left in place; it shows up in `kept`
        }
      }
    }
    result.kept = await listTree(root);
    if (result.kept.length === 0) {
      try {
        await rmdir(root);
        result.dirRemoved = true;
      } catch {
        // something appeared meanwhile; leave the directory
      }
    }
    return result;
  });
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

interface PlannedFile {
  rel: string;
  segs: string[];
  data: Uint8Array;
  mode: number | undefined;
}

function planBatch(files: readonly FileSpec[]): PlannedFile[] {
  if (!Array.isArray(files)) throw new TypeError("files must be an array of { path, contents, mode? }");
  const seen = new Map<string, string>();
  const plan: PlannedFile[] = [];
  for (const spec of files) {
    const rel: unknown = spec?.path;
    if (typeof rel !== "string") throw new UnsafePathError(String(rel), "path must be a string");
    const problem = pathProblem(rel);
    if (problem !== undefined) throw new UnsafePathError(rel, problem);
    const key = rel.toLowerCase();
    const dup = seen.get(key);
    if (dup !== undefined) {
      throw new UnsafePathError(
        rel,
        `appears twice in the batch (as ${JSON.stringify(dup)}; names compare case-insensitively)`,
      );
    }
    seen.set(key, rel);
    const contents: unknown = spec.contents;
    if (typeof contents !== "string" && !(contents instanceof Uint8Array)) {
      throw new TypeError(`contents of ${JSON.stringify(rel)} must be a string or a Buffer`);
    }
    plan.push({
      rel,
      segs: rel.split("/"),
      data: typeof contents === "string" ? Buffer.from(contents, "utf8") : contents,
      mode: spec.mode === undefined ? undefined : checkMode(rel, spec.mode),
    });
  }
  for (const item of plan) {
    let prefix = "";
    for (const seg of item.segs.slice(0, -1)) {
      prefix = prefix === "" ? seg : `${prefix}/${seg}`;
      const clash = seen.get(prefix.toLowerCase());
      if (clash !== undefined) {
        throw new UnsafePathError(clash, `is both a file and the directory of ${JSON.stringify(item.rel)}`);
      }
    }
  }
  return plan;
}

/** Why `p` is not an acceptable relative name, or undefined when it is. */
function pathProblem(p: string): string | undefined {
  if (p.length === 0) return "empty path";
  if (p.length > 1024) return "longer than 1024 characters";
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return "contains a control character (NUL, newline, ...)";
  }
  if (p.includes("\\")) return 'contains "\\": use "/" as the separator';
  if (p.includes(":")) return 'contains ":" (drive letters and Windows streams are not allowed)';
  if (p.startsWith("/")) return "absolute paths are not allowed, names are relative to the directory";
  for (const seg of p.split("/")) {
    if (seg === "") return "empty segment (leading, trailing or double slash)";
    if (seg === "." || seg === "..") return `"${seg}" segments are not allowed`;
    if (Buffer.byteLength(seg) > 200)
      return "a segment is longer than 200 bytes (room is kept for the temp suffix)";
    if (seg.endsWith(".") || seg.endsWith(" "))
      return "a segment ends with a dot or a space (Windows drops them)";
    if (WINDOWS_FORBIDDEN.test(seg)) return 'contains one of < > " | ? * (invalid on Windows)';
    if (WINDOWS_DEVICE.test(seg)) return `"${seg}" is a reserved device name on Windows`;
  }
  if (p === MANIFEST_NAME) return "reserved for the manifest";
  return undefined;
}

function checkMode(rel: string, mode: unknown): number {
  if (
    typeof mode === "number" &&
    Number.isInteger(mode) &&
    (mode & 0o600) === 0o600 &&
    (mode & ~0o644) === 0
  ) {
    return mode;
  }
  const shown = typeof mode === "number" ? `0o${mode.toString(8)}` : String(mode);
  throw new RangeError(
    `mode ${shown} for ${JSON.stringify(rel)} is not allowed: use 0o600, optionally with group/other read (0o640, 0o604, 0o644)`,
  );
}

/** Real directory, owned by us, not writable by group/others (the last two on POSIX only). */
function assertSafeDir(st: Stats, abs: string): void {
  assertOwnedDir(st, abs);
  if (!IS_WINDOWS && (st.mode & 0o022) !== 0) {
    throw new UnsafePathError(
      abs,
      `is writable by group or others (mode 0o${(st.mode & 0o7777).toString(8)})`,
    );
  }
}

function assertOwnedDir(st: Stats, abs: string): void {
  if (st.isSymbolicLink())
    throw new UnsafePathError(abs, "is a symbolic link (or junction), not following it");
  if (!st.isDirectory()) throw new UnsafePathError(abs, "is not a directory");
  const uid = IS_WINDOWS ? undefined : process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new UnsafePathError(abs, `is owned by uid ${st.uid}, not by this process (uid ${uid})`);
  }
}

function assertRegularFile(st: Stats, abs: string): void {
  if (st.isSymbolicLink()) throw new UnsafePathError(abs, "is a symbolic link, refusing to replace it");
  if (!st.isFile()) throw new UnsafePathError(abs, "is not a regular file");
}

function parseManifest(text: string, path: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ManifestError(path, "is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ManifestError(path, "is not a JSON object");
  }
  const m = value as Record<string, unknown>;
  if (m["version"] !== MANIFEST_VERSION) {
    throw new ManifestError(path, `has unsupported version ${JSON.stringify(m["version"])}`);
  }
  const { createdAt, updatedAt, files, dirs } = m;
  if (typeof createdAt !== "string") throw new ManifestError(path, "has no createdAt");
  if (!isStringArray(files) || !isStringArray(dirs)) {
    throw new ManifestError(path, "must list files and dirs as arrays of strings");
  }
  return {
    version: MANIFEST_VERSION,
    createdAt,
    updatedAt: typeof updatedAt === "string" ? updatedAt : createdAt,
    files: [...files],
    dirs: [...dirs],
  };
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

// ---------------------------------------------------------------------------------------
// File system helpers
// ---------------------------------------------------------------------------------------

/** Creates missing parent directories of `segs` under root (0700), checks existing ones. */
async function prepareParents(
  root: string,
  segs: string[],
  checked: Set<string>,
  created: string[],
): Promise<void> {
  let rel = "";
  for (const seg of segs.slice(0, -1)) {
    rel = rel === "" ? seg : `${rel}/${seg}`;
    if (checked.has(rel)) continue;
    const abs = join(root, ...rel.split("/"));
    let st = await lstatOrUndefined(abs);
    if (st === undefined) {
      try {
        await mkdir(abs, { mode: DIR_MODE });
        created.push(rel);
        await securePrivateDir(abs);
        checked.add(rel);
        continue;
      } catch (err) {
        if (errorCode(err) !== "EEXIST") throw err;
        st = await lstat(abs);
      }
    }
    assertSafeDir(st, abs);
    checked.add(rel);
  }
}

/** Every parent directory of `segs` under root exists and is a safe real directory. */
async function checkParents(root: string, segs: string[]): Promise<void> {
  let abs = root;
  for (const seg of segs.slice(0, -1)) {
    abs = join(abs, seg);
    assertSafeDir(await lstat(abs), abs);
  }
}

/** chmod 0700 through a no-follow handle and verify: real directory, ours, private. */
async function securePrivateDir(abs: string): Promise<void> {
  if (IS_WINDOWS) {
    assertOwnedDir(await lstat(abs), abs);
    return;
  }
  let fh: FileHandle;
  try {
    fh = await open(abs, constants.O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    const code = errorCode(err);
    if (code === "ELOOP" || code === "ENOTDIR" || code === "EMLINK") {
      throw new UnsafePathError(abs, "is not a real directory (symbolic link?)");
    }
    throw err;
  }
  try {
    await fh.chmod(DIR_MODE);
    const st = await fh.stat();
    assertOwnedDir(st, abs);
    if ((st.mode & 0o077) !== 0)
      throw new UnsafePathError(abs, `is not private (mode 0o${(st.mode & 0o7777).toString(8)})`);
  } finally {
    await fh.close();
  }
}

/** Exclusive create + write + chmod + fsync. `onCreated` runs as soon as the file exists. */
async function writeNewFile(
  abs: string,
  data: Uint8Array,
  mode: number,
  onCreated: () => void,
): Promise<void> {
  if (O_NOFOLLOW === 0 && (await lstatOrUndefined(abs)) !== undefined) {
    throw Object.assign(new Error(`EEXIST: file already exists, open '${abs}'`), {
      code: "EEXIST",
      path: abs,
    });
  }
  const fh = await open(abs, CREATE_FLAGS, mode);
  onCreated();
  try {
    await fh.writeFile(data);
    if (!IS_WINDOWS) await fh.chmod(mode);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  await fh.close();
}

async function writeManifest(root: string, manifest: Manifest): Promise<void> {
  const target = join(root, MANIFEST_NAME);
  const tmp = tempNameFor(target);
  let created = false;
  try {
    await writeNewFile(tmp, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), 0o600, () => {
      created = true;
    });
    await retryOnWindows(() => rename(tmp, target));
  } catch (err) {
    if (created) await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDirs([root]);
}

/** Undoes a failed writeFilesExclusive, then rethrows (mentioning anything it could not remove). */
async function rollback(root: string, files: string[], dirs: string[], cause: unknown): Promise<never> {
  const left: string[] = [];
  for (const abs of [...files].reverse()) {
    await retryOnWindows(() => unlink(abs)).catch((err: unknown) => {
      if (errorCode(err) !== "ENOENT") left.push(abs);
    });
  }
  for (const rel of [...dirs].reverse()) {
    const abs = join(root, ...rel.split("/"));
    await rmdir(abs).catch((err: unknown) => {
      if (errorCode(err) !== "ENOENT") left.push(abs);
    });
  }
  if (left.length > 0) {
    const message = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`${message}; rollback could not remove ${left.join(", ")}`, { cause });
  }
  throw cause;
}

type Outcome = "removed" | "missing" | "refused" | "notEmpty" | "failed";

async function removeEntry(root: string, rel: string, kind: "file" | "dir"): Promise<Outcome> {
  if (pathProblem(rel) !== undefined) return "refused";
  const segs = rel.split("/");
  let abs = root;
  for (const seg of segs.slice(0, -1)) {
    abs = join(abs, seg);
    const st = await lstatOrUndefined(abs);
    if (st === undefined) return "missing";
    if (st.isSymbolicLink() || !st.isDirectory()) return "refused";
  }
  abs = join(abs, segs[segs.length - 1]!);
  const st = await lstatOrUndefined(abs);
  if (st === undefined) return "missing";
  try {
    if (st.isDirectory()) {
      if (kind === "file") return "refused";
      await rmdir(abs);
    } else {
      // Our file, or a link planted in its place: unlink removes the link, never its target.
      await retryOnWindows(() => unlink(abs));
    }
    return "removed";
  } catch (err) {
    const code = errorCode(err);
    if (code === "ENOENT") return "missing";
    if (code === "ENOTEMPTY" || code === "EEXIST") return "notEmpty";
    return "failed";
  }
}

/** Removes `<listed file>.tmp-<12 hex>` siblings (crash leftovers). False when one could not be removed. */
async function removeTempLeftovers(root: string, files: string[], removed: string[]): Promise<boolean> {
  const byDir = new Map<string, Set<string>>([["", new Set([MANIFEST_NAME])]]);
  for (const rel of files) {
    if (pathProblem(rel) !== undefined) continue;
    const cut = rel.lastIndexOf("/");
    const parent = cut < 0 ? "" : rel.slice(0, cut);
    const names = byDir.get(parent) ?? new Set<string>();
    names.add(rel.slice(cut + 1));
    byDir.set(parent, names);
  }
  let ok = true;
  for (const [parent, names] of byDir) {
    const segs = parent === "" ? [] : parent.split("/");
    let abs = root;
    let safe = true;
    for (const seg of segs) {
      abs = join(abs, seg);
      const st = await lstatOrUndefined(abs);
      if (st === undefined || st.isSymbolicLink() || !st.isDirectory()) safe = false;
      if (!safe) break;
    }
    if (!safe) continue;
    const entries = await readdir(abs, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const base = TEMP_NAME.exec(entry.name)?.[1];
      if (base === undefined || !names.has(base) || entry.isDirectory()) continue;
      try {
        await retryOnWindows(() => unlink(join(abs, entry.name)));
        removed.push(parent === "" ? entry.name : `${parent}/${entry.name}`);
      } catch (err) {
        if (errorCode(err) !== "ENOENT") ok = false;
      }
    }
  }
  return ok;
}

/** Every entry under root, relative and "/"-separated, sorted; symlinks are listed, not followed. */
async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (abs: string, rel: string, depth: number): Promise<void> => {
    const entries = await readdir(abs, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const r = rel === "" ? entry.name : `${rel}/${entry.name}`;
      out.push(r);
      if (entry.isDirectory() && depth < 32) await walk(join(abs, entry.name), r, depth + 1);
    }
  };
  await walk(root, "", 0);
  return out.sort();
}

/** fsync directories so new names survive a crash (POSIX; best effort). */
async function syncDirs(dirs: string[]): Promise<void> {
  if (IS_WINDOWS) return;
  for (const d of unique(dirs)) {
    const fh = await open(d, constants.O_RDONLY | O_DIRECTORY).catch(() => undefined);
    if (fh === undefined) continue;
    await fh.sync().catch(() => undefined);
    await fh.close().catch(() => undefined);
  }
}

function preservedMode(st: Stats): number {
  return IS_WINDOWS ? DEFAULT_MODE : (st.mode & 0o044) | 0o600;
}

function tempNameFor(target: string): string {
  return `${target}.tmp-${randomBytes(6).toString("hex")}`;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = errorCode(err);
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw err;
  }
}

async function retryOnWindows<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const code = errorCode(err);
      if (!IS_WINDOWS || attempt >= 10 || (code !== "EPERM" && code !== "EACCES" && code !== "EBUSY"))
        throw err;
      await delay(20 * attempt); // up to ~0.9 s in all
    }
  }
}

function errorCode(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string"
    ? err.code
    : undefined;
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}

/** Serializes operations on one directory within this process (manifest read-modify-write). */
const dirLocks = new Map<string, Promise<void>>();

async function withDirLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = dirLocks.get(key) ?? Promise.resolve();
  const run = previous.then(fn);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  dirLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (dirLocks.get(key) === tail) dirLocks.delete(key);
  }
}

/** Writes one standalone file (a daemon's state, a key in a storage directory) atomically:
 *  a temp file created exclusively beside it with the final mode, fsynced, then renamed
 *  over the target. The target, if present, must be a regular file, never a symlink. */
export async function writeFileAtomic(
  path: string,
  contents: string | Uint8Array,
  mode = DEFAULT_MODE,
): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isFile()) throw new UnsafePathError(path, "exists and is not a regular file (a symlink?)");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const tmp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
  const fh = await open(tmp, CREATE_FLAGS, mode);
  try {
    await fh.writeFile(contents);
    if (!IS_WINDOWS) await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
