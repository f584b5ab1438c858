/**
 * Bearer tokens: JWTs signed by Berth's token endpoint with its own key, or
 * by an external token service trusted by issuer and public key / JWKS.
 * Verification checks the signature (asymmetric algorithms only: never
 * `none`, never an HMAC keyed with a public key), expiry, not-before, issuer
 * and audience; verified tokens are cached briefly by the hash of the token.
 */
import { createHash, createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { calculateJwkThumbprint, createLocalJWKSet, createRemoteJWKSet, decodeJwt, exportJWK, exportPKCS8, generateKeyPair, jwtVerify, SignJWT, type JWK, type JWTVerifyGetKey } from 'jose';
import type { TokenConfig } from './config.js';
import type { ResourceAccess } from './scope.js';

const ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'];
const CACHE_MS = 60_000;
const CACHE_MAX = 10_000;
const CLOCK_TOLERANCE_S = 30;

export interface VerifiedToken {
  issuer: string;
  /** `sub`; empty for an anonymous token. */
  subject: string;
  /** Whether Berth signed it (so its rules, not only the token, describe the subject). */
  own: boolean;
  access: ResourceAccess[];
  /** ms since the epoch. */
  expiresAt: number;
}

export class TokenError extends Error {
  override name = 'TokenError';
}

interface Verifier {
  issuer: string;
  key: KeyObject | JWTVerifyGetKey;
}

function algorithmOf(key: KeyObject): string {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    if (curve === 'secp521r1') return 'ES512';
  }
  if (type === 'rsa') return 'RS256';
  if (type === 'ed25519') return 'EdDSA';
  throw new TokenError(`unsupported token signing key type ${type}`);
}

/**
 * The signing key: BERTH_TOKEN_KEY (PEM) in the environment, else the
 * configured file, else <data>/auth/token-signing-key.pem (generated, 0600).
 */
export async function loadSigningKey(config: TokenConfig, dataDir: string, env: NodeJS.ProcessEnv = process.env): Promise<KeyObject> {
  if (env.BERTH_TOKEN_KEY) return createPrivateKey(env.BERTH_TOKEN_KEY);
  const file = config.key ?? join(dataDir, 'auth', 'token-signing-key.pem');
  if (!existsSync(file)) {
    if (config.key) throw new TokenError(`token signing key ${file} does not exist`);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, await exportPKCS8(privateKey), { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
  }
  return createPrivateKey(readFileSync(file));
}

export class TokenService {
  private readonly verifiers = new Map<string, Verifier>();
  private readonly cache = new Map<string, VerifiedToken>();
  private readonly algorithm: string | undefined;
  private kid = '';

  constructor(
    readonly config: TokenConfig,
    private readonly signingKey: KeyObject | undefined,
  ) {
    if (signingKey) {
      this.algorithm = algorithmOf(signingKey);
      this.verifiers.set(config.issuer, { issuer: config.issuer, key: createPublicKey(signingKey) });
    }
    for (const t of config.trusted) {
      if (t.issuer === config.issuer && signingKey) throw new TokenError(`trusted issuer "${t.issuer}" has Berth's own issuer name`);
      let key: KeyObject | JWTVerifyGetKey;
      if (t.publicKey) key = createPublicKey(readFileSync(t.publicKey));
      else if (/^https?:\/\//.test(t.jwks!)) key = createRemoteJWKSet(new URL(t.jwks!));
      else key = createLocalJWKSet(JSON.parse(readFileSync(t.jwks!, 'utf8')) as { keys: JWK[] });
      this.verifiers.set(t.issuer, { issuer: t.issuer, key });
    }
  }

  async init(): Promise<this> {
    if (this.signingKey) this.kid = await calculateJwkThumbprint(await exportJWK(createPublicKey(this.signingKey)));
    return this;
  }

  get canIssue(): boolean {
    return this.signingKey !== undefined;
  }

  /** Public keys of Berth's own tokens, as a JWKS (for other services that verify them). */
  async jwks(): Promise<{ keys: JWK[] }> {
    if (!this.signingKey) return { keys: [] };
    const jwk = await exportJWK(createPublicKey(this.signingKey));
    return { keys: [{ ...jwk, kid: this.kid, alg: this.algorithm, use: 'sig' }] };
  }

  async issue(subject: string, access: ResourceAccess[], now = Date.now()): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    if (!this.signingKey) throw new TokenError('no signing key');
    const iat = Math.floor(now / 1000);
    const expiresIn = Math.max(1, Math.round(this.config.ttl / 1000));
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: this.algorithm!, typ: 'JWT', kid: this.kid })
      .setIssuer(this.config.issuer)
      .setSubject(subject)
      .setAudience(this.config.service)
      .setIssuedAt(iat)
      .setNotBefore(iat - 1)
      .setExpirationTime(iat + expiresIn)
      .setJti(randomUUID())
      .sign(this.signingKey);
    return { token, expiresIn, issuedAt: new Date(iat * 1000).toISOString() };
  }

  /** Verifies a token or throws TokenError. */
  async verify(token: string, now = Date.now()): Promise<VerifiedToken> {
    const hash = createHash('sha256').update(token).digest('base64');
    const cached = this.cache.get(hash);
    if (cached && cached.expiresAt > now) return cached;
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      throw new TokenError('malformed token');
    }
    const verifier = typeof issuer === 'string' ? this.verifiers.get(issuer) : undefined;
    if (!verifier) throw new TokenError('token from an unknown issuer');
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, verifier.key as KeyObject, {
        issuer: verifier.issuer,
        audience: this.config.service,
        algorithms: ALGORITHMS,
        requiredClaims: ['exp'],
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(now),
      }));
    } catch (e) {
      throw new TokenError(`invalid token: ${(e as { code?: string }).code ?? (e as Error).message}`);
    }
    const verified: VerifiedToken = {
      issuer: verifier.issuer,
      subject: typeof payload.sub === 'string' ? payload.sub : '',
      own: verifier.issuer === this.config.issuer && this.signingKey !== undefined,
      access: parseAccess(payload.access),
      expiresAt: Math.min((payload.exp as number) * 1000 + CLOCK_TOLERANCE_S * 1000, now + CACHE_MS),
    };
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(hash, verified);
    return verified;
  }
}

/** The `access` claim; anything malformed in it grants nothing. */
function parseAccess(claim: unknown): ResourceAccess[] {
  if (!Array.isArray(claim)) return [];
  const out: ResourceAccess[] = [];
  for (const a of claim) {
    if (!a || typeof a !== 'object') continue;
    const { type, name, actions } = a as Record<string, unknown>;
    if (typeof type !== 'string' || typeof name !== 'string' || !Array.isArray(actions)) continue;
    out.push({ type, name, actions: actions.filter((x): x is string => typeof x === 'string') });
  }
  return out;
}

/** Whether a token's access grants `action` on repository `name`. */
export function tokenGrants(token: VerifiedToken, type: string, name: string, action: string): boolean {
  for (const a of token.access) {
    if (a.type === type && a.name === name && (a.actions.includes(action) || a.actions.includes('*'))) return true;
  }
  return false;
}
