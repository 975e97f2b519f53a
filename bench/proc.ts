// What the bench reads about a process from /proc (Linux): its memory and its CPU time.
import { readFileSync } from "node:fs";

export interface ProcMemory {
  rssMb: number;
  /** Peak RSS (VmHWM). */
  hwmMb: number;
}

export function procMemory(pid: number): ProcMemory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rssMb: kb("VmRSS") / 1024, hwmMb: kb("VmHWM") / 1024 };
}

/** utime + stime of a process, in ms (from /proc/PID/stat; clock ticks are 10 ms on Linux). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
