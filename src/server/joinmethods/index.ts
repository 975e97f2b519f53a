// The join methods a token resource can name, and the section of its spec each reads.

import type { TokenResource } from "../policy/resources.ts";
import { azureMethod } from "./azure.ts";
import { gcpMethod } from "./gcp.ts";
import { githubMethod } from "./github.ts";
import { gitlabMethod } from "./gitlab.ts";
import { iamMethod } from "./iam.ts";
import { kubernetesMethod } from "./kubernetes.ts";
import type { ClaimJoinMethod } from "./method.ts";
import { oidcMethod } from "./oidc.ts";

/** The claim-based method and its spec section for a token resource, or undefined for
 *  bound_keypair (which proves a key, not claims). */
export function methodOf(
  token: TokenResource,
): { method: ClaimJoinMethod<unknown>; spec: unknown } | undefined {
  const s = token.spec;
  switch (s.join_method) {
    case "github":
      return { method: githubMethod as ClaimJoinMethod<unknown>, spec: s.github };
    case "gitlab":
      return { method: gitlabMethod as ClaimJoinMethod<unknown>, spec: s.gitlab };
    case "oidc":
      return { method: oidcMethod as ClaimJoinMethod<unknown>, spec: s.oidc };
    case "kubernetes":
      return { method: kubernetesMethod as ClaimJoinMethod<unknown>, spec: s.kubernetes };
    case "gcp":
      return { method: gcpMethod as ClaimJoinMethod<unknown>, spec: s.gcp };
    case "iam":
      return { method: iamMethod as ClaimJoinMethod<unknown>, spec: s.iam };
    case "azure":
      return { method: azureMethod as ClaimJoinMethod<unknown>, spec: s.azure };
    case "bound_keypair":
      return undefined;
  }
}
