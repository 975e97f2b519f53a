// A systemd unit for the renewal daemon, sandboxed: the daemon may write only its storage
// and output directories, gains no privileges and sees no home directories.

export interface UnitOptions {
  /** Absolute path of node and of the idbot script. */
  node: string;
  script: string;
  configFile: string;
  user: string;
  group: string;
  /** Storage and output directories: the only writable paths. */
  writablePaths: string[];
}

const NAME = /^[a-z_][a-z0-9_-]*[$]?$/i;

/** systemd quoting for a path in ExecStart/ReadWritePaths ("..." with \ and " escaped). */
function quote(s: string): string {
  if (/[\n\0]/.test(s)) throw new Error(`path ${JSON.stringify(s)} cannot go into a unit file`);
  return /[\s"\\']/.test(s) ? `"${s.replace(/[\\"]/g, "\\$&")}"` : s;
}

export function systemdUnit(o: UnitOptions): string {
  for (const [what, v] of [
    ["--user", o.user],
    ["--group", o.group],
  ] as const) {
    if (!NAME.test(v)) throw new Error(`${what} "${v}" is not a valid user or group name`);
  }
  for (const p of [o.node, o.script, o.configFile, ...o.writablePaths]) {
    if (!p.startsWith("/")) throw new Error(`path "${p}" must be absolute in a unit file`);
  }
  const writable = [...new Set(o.writablePaths)];
  return `# idbot renewal daemon: written by \`idbot install systemd\`.
[Unit]
Description=idbot machine identity (joins, renews certificates)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${o.user}
Group=${o.group}
ExecStart=${quote(o.node)} ${quote(o.script)} start -c ${quote(o.configFile)}
Restart=on-failure
RestartSec=10s
UMask=0077

# Sandboxing: read-only system, no privilege gain, writes only where outputs go.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
ReadWritePaths=${writable.map(quote).join(" ")}

[Install]
WantedBy=multi-user.target
`;
}
