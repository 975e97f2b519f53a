// The `iam` join method. (Being written: see issue 8.)
import { z } from "zod";
import type { ClaimJoinMethod } from "./method.ts";

export const IamTokenSpecSchema = z.strictObject({});
export type IamTokenSpec = z.output<typeof IamTokenSpecSchema>;

export const iamMethod: ClaimJoinMethod<IamTokenSpec> = {
  issuer: () => "iam",
  async check() {
    throw new Error("the iam join method is not implemented yet");
  },
  rules: () => [],
  globFields: new Set(),
  keep: (c) => c,
  subject: () => "iam",
  shownClaims: [],
};
