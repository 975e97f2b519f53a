// The kubernetes proof source. (Being written: see issue 8.)
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";

export function kubernetesProofSource(_opts: CloudSourceOptions): ProofSource {
  return async () => {
    throw new Error("the kubernetes join method is not implemented yet");
  };
}
