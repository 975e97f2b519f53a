// Address rules shared by client and server: plain HTTP is only ever allowed on loopback.
import { isIP } from "node:net";

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(h);
  return false;
}

/** Parses "HOST:PORT", "[v6]:PORT" or ":PORT" (all interfaces). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen.trim());
  if (!m) throw new Error(`--listen "${listen}" is not HOST:PORT (for example 127.0.0.1:8443)`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--listen port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Canonical form of a service URL: no trailing slash, so it doubles as an audience. */
export function normalizeServiceUrl(url: string): string {
  return url.trim().replace(/\/+$/, "");
}
