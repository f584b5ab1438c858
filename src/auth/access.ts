/**
 * The vocabulary between the HTTP layer and the security layer: what a
 * request needs (the HTTP layer says, from its routes), and what the caller
 * may pull (the guard answers, for catalog filtering and mount sources).
 * Defined here so that auth/ never needs to know the HTTP layer's routes.
 */
import type { Action } from './config.js';

export type AccessNeed =
  /** GET /v2/: any authenticated caller (the login probe). */
  | { kind: 'login' }
  | { kind: 'catalog' }
  /** `upload`: the request carries (or starts) an upload, which the per-client upload cap counts. */
  | { kind: 'repository'; action: Action; upload: boolean };

export interface PullAccess {
  canPull(repository: string): boolean;
}
