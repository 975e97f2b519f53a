// The `kubernetes` join method. (Being written: see issue 8.)
import { z } from "zod";
import type { ClaimJoinMethod } from "./method.ts";

export const KubernetesTokenSpecSchema = z.strictObject({});
export type KubernetesTokenSpec = z.output<typeof KubernetesTokenSpecSchema>;

export const kubernetesMethod: ClaimJoinMethod<KubernetesTokenSpec> = {
  issuer: () => "kubernetes",
  async check() {
    throw new Error("the kubernetes join method is not implemented yet");
  },
  rules: () => [],
  globFields: new Set(),
  keep: (c) => c,
  subject: () => "kubernetes",
  shownClaims: [],
};
