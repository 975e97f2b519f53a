// Verifies a JWT with a second, independent implementation: Debian's PyJWT (python3-jwt) with
// python3-cryptography, run by /usr/bin/python3 (not a pyenv python that may be first on PATH).
// The JWKS is fetched over HTTP(S) by jwt.PyJWKClient, as a relying party would.
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { promisify } from "node:util";
import { aptInstall, cannotInstall } from "./debian.ts";

const execFileP = promisify(execFile);
const PYTHON = "/usr/bin/python3";

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

// PyJWT imports cryptography lazily; has_crypto tells whether ES256/RS256 are available.
const PROBE =
  "import jwt, cryptography; from jwt.algorithms import has_crypto; assert has_crypto; print(jwt.__version__)";

async function probe(): Promise<boolean> {
  if (!(await exists(PYTHON, constants.X_OK))) return false;
  try {
    await execFileP(PYTHON, ["-I", "-c", PROBE], { timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

let ensured: Promise<{ python: string } | { skip: string }> | undefined;

async function install(): Promise<{ python: string } | { skip: string }> {
  if (await probe()) return { python: PYTHON };
  let reason = await cannotInstall("PyJWT", "python3-jwt");
  if (!reason) {
    try {
      await aptInstall(["python3", "python3-jwt", "python3-cryptography"]);
    } catch (err) {
      reason = `installing python3-jwt failed: ${(err as Error).message}`;
    }
    if (await probe()) return { python: PYTHON };
    reason ??= "python3-jwt was installed but `import jwt` with cryptography still fails";
  }
  if (process.env.CI === "true") throw new Error(`PyJWT is required under CI: ${reason}`);
  return { skip: reason };
}

/**
 * Makes sure /usr/bin/python3 can `import jwt` with cryptography, installing Debian's python3-jwt
 * and python3-cryptography when root. When impossible: throws under CI=true, else returns { skip }.
 */
export function ensurePyJwt(): Promise<{ python: string } | { skip: string }> {
  ensured ??= install().catch((err: unknown) => {
    ensured = undefined;
    throw err;
  });
  return ensured;
}

// Reads its inputs from the environment (the token never appears in argv), prints one JSON line.
const SCRIPT = `
import json, os, sys
try:
    import jwt
    opts = json.loads(os.environ["IDBOT_PYJWT_OPTS"])
    token = os.environ["IDBOT_PYJWT_TOKEN"]
    client = jwt.PyJWKClient(opts["jwksUrl"])
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=opts["algorithms"],
        audience=opts["audience"],
        issuer=opts["issuer"],
        options={"require": ["exp", "iss", "aud"]},
    )
    print(json.dumps({"ok": True, "claims": claims}))
except Exception as e:
    print(json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}))
`;

export interface VerifyWithPyJwtOptions {
  token: string;
  /** Fetched by jwt.PyJWKClient. Plain http on loopback is fine. */
  jwksUrl: string;
  audience: string;
  issuer: string;
  /** Default ["ES256", "RS256"]. */
  algorithms?: string[];
  /** For an https jwksUrl with a private CA: becomes SSL_CERT_FILE for Python's default context. */
  caFile?: string;
}

/**
 * Verifies `token` with PyJWT: signature against the JWKS key whose kid matches the header
 * (PyJWT 2.6 ignores JWKS keys without a kid), exp (required), nbf/iat when present, aud and iss.
 * Returns the claims, or the Python exception as "Type: message" (e.g. "InvalidAudienceError: ...").
 */
export async function verifyWithPyJwt(
  opts: VerifyWithPyJwtOptions,
): Promise<{ ok: true; claims: Record<string, unknown> } | { ok: false; error: string }> {
  const found = await ensurePyJwt();
  if ("skip" in found) throw new Error(found.skip);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    LANG: "C.UTF-8",
    NO_PROXY: "127.0.0.1,localhost,::1",
    no_proxy: "127.0.0.1,localhost,::1",
    IDBOT_PYJWT_TOKEN: opts.token,
    IDBOT_PYJWT_OPTS: JSON.stringify({
      jwksUrl: opts.jwksUrl,
      audience: opts.audience,
      issuer: opts.issuer,
      algorithms: opts.algorithms ?? ["ES256", "RS256"],
    }),
  };
  for (const k of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]) {
    const v = process.env[k];
    if (v) env[k] = v;
  }
  if (opts.caFile) env.SSL_CERT_FILE = opts.caFile;
  let stdout: string;
  try {
    // -I: isolated mode, so no user site-packages or PYTHON* variables change what is imported.
    const r = await execFileP(found.python, ["-I", "-c", SCRIPT], { env, timeout: 30_000 });
    stdout = String(r.stdout);
  } catch (err) {
    const e = err as Error & { stderr?: string };
    return { ok: false, error: `python failed: ${e.stderr?.trim() || e.message}` };
  }
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    const parsed = JSON.parse(line) as
      | { ok: true; claims: Record<string, unknown> }
      | { ok: false; error: string };
    return parsed;
  } catch {
    return { ok: false, error: `unparseable PyJWT output: ${stdout}` };
  }
}
