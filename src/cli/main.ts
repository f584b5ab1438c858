#!/usr/bin/env -S node --max-semi-space-size=8
/**
 * The `berth` command line.
 *
 * The shebang caps V8's young generation at 8 MiB per semi-space (Node's
 * default grows to 16): measured over the whole benchmark it keeps peak RSS
 * about 10 MiB lower at no measurable cost in throughput, while 4 MiB cost
 * 10-15% (docs/benchmarks.md). `npm start` and the benchmark run this file
 * directly, so the flag lives here only.
 */
import './thread-pool.js';
import { Command, Option } from 'commander';
import type { PolicyCheckFlags } from './policy.js';
import { ConfigError, loadConfig, type ConfigOverrides } from '../config.js';
import type { FsckFlags, GcFlags } from './lifecycle.js';
import type { MigrateFlags } from './migrate.js';

const program = new Command();

program
  .name('berth')
  .description(
    'Berth: a container image registry (OCI Distribution v1.1, Docker Registry HTTP API v2)\n' +
      'that never lies about what it stores. Metadata in SQLite, blobs on local disk by default.',
  )
  .version('0.1.0')
  .showHelpAfterError();

/** Options every command that opens the registry's data shares. */
function withCommonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'YAML configuration file (env: BERTH_CONFIG)')
    .option('-d, --data <dir>', 'data directory: metadata.db and blobs (env: BERTH_DATA; default ./data)')
    .option('--metadata <url>', 'metadata store: postgres://USER@HOST:PORT/DB (env: BERTH_METADATA; default SQLite in the data directory)')
    .option('--storage <url>', 'where blobs go: s3://BUCKET/PREFIX (env: BERTH_STORAGE; default: the data directory)')
    .option('--s3-endpoint <url>', 'S3 endpoint for S3-compatible stores (env: AWS_ENDPOINT_URL_S3); credentials and region from the AWS environment')
    .addOption(
      new Option('--log-level <level>', 'log level; warn and above turns the per-request log off (env: BERTH_LOG_LEVEL; default info)').choices([
        'trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent',
      ]),
    );
}

withCommonOptions(program.command('serve'))
  .description('run the registry server')
  .option('-a, --addr <host:port>', 'address to listen on (env: BERTH_ADDR; default 0.0.0.0:5000)')
  .option('--no-deletes', 'refuse DELETE of manifests, tags and blobs (env: BERTH_DELETES=false)')
  .option('--read-only', 'serve pulls only: every write answers 405 UNSUPPORTED and GC does not run (env: BERTH_READ_ONLY; config: readOnly or storage.maintenance.readonly.enabled)')
  .option('--htpasswd <file>', 'turn auth on: users from this htpasswd file (bcrypt, `htpasswd -B`), Basic and token auth (env: BERTH_HTPASSWD)')
  .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (chain), reloaded on change (env: BERTH_TLS_CERT)')
  .option('--tls-key <file>', 'the PEM private key of --tls-cert (env: BERTH_TLS_KEY)')
  .option('--trusted-proxies <list>', 'comma-separated addresses/CIDRs whose X-Forwarded-* headers are believed (env: BERTH_TRUSTED_PROXIES)')
  .option('--header-timeout <duration>', 'time a client has to send a request head; 0 = none (env: BERTH_HEADER_TIMEOUT; default 30s)')
  .option('--idle-timeout <duration>', 'time a request body may go without a byte; 0 = none; there is no total request time (env: BERTH_IDLE_TIMEOUT; default 60s)')
  .option('--connections-per-client <n>', 'open connections per client address (IPv6: per /64), trusted proxies exempt; 0 = unlimited (env: BERTH_CONNECTIONS_PER_CLIENT; default 128)')
  .option('--upload-sessions-per-user <n>', 'open upload sessions per user with auth on; 0 = unlimited (env: BERTH_UPLOAD_SESSIONS_PER_USER; default 1000)')
  .option('--notify <url>', 'send registry events (push, pull, delete, …) to this webhook URL, as the reference registry does; repeatable (more in the config file: notifications)', (v: string, all: string[] = []) => [...all, v])
  .option('--no-notify-pulls', 'record no pull events (they are the most frequent)')
  .option('--proxy <url>', 'be a pull-through cache of this upstream registry: every name maps to the same name upstream, as dockerd --registry-mirror expects; credentials from BERTH_PROXY_USERNAME and BERTH_PROXY_PASSWORD(_FILE) (env: BERTH_PROXY; more upstreams: mirrors: in the config file, docs/pull-through-cache.md)')
  .option('--audit-log <file>', 'write the audit log (logins refused, denials, deletes, admin calls) as JSON lines to this file, or stdout/stderr (env: BERTH_AUDIT_LOG)')
  .addHelpText(
    'after',
    `
Settings come from defaults, then the --config file, then BERTH_* environment
variables, then flags. A config file looks like:

  addr: 0.0.0.0:5000
  data: /var/lib/berth
  metadata: postgres://berth@db:5432/berth   # optional; default SQLite in data
  deletes: true
  readOnly: false      # pulls only, no GC (maintenance, migration)
  ui: true             # the web console under /ui (env BERTH_UI)
  log:
    level: info        # trace|debug|info|warn|error|fatal|silent
    audit: /var/log/berth/audit.log   # optional: security events as JSON lines (or stdout, stderr)
  gc:
    enabled: true      # background collector inside serve
    interval: 10m
    blobGrace: 1h      # unreferenced blobs are kept this long
    manifestGrace: 1h  # manifests without tag or parent are kept this long
    untagged: true     # collect untagged manifests at all
    uploadTimeout: 24h # abandoned uploads are purged after this
  storage: s3://my-bucket/berth   # default: blobs in the data directory
  # or, with settings:
  # storage:
  #   url: s3://my-bucket/berth
  #   endpoint: http://127.0.0.1:9000   # S3-compatible store (env AWS_ENDPOINT_URL_S3)
  #   partSize: 16MiB
  #   redirect: true   # blob GETs answer 307 to a pre-signed URL
  policies:            # reloaded on SIGHUP; check with \`berth policy check FILE\`; docs/policies.md
    - repositories: ["ci/**"]
      retention: { keepLast: 10, keepTags: ["v*"], untaggedAfter: 7d, pulledWithin: 30d }
    - repositories: ["team-a/**"]
      quota: 50GiB
      immutableTags: ["v*", "release-*"]

Security (all off by default; see README "Securing Berth"):

  auth:
    htpasswd: /etc/berth/htpasswd   # users; --htpasswd alone gives every user pull/push/delete on **
    groups: { team-a: [alice, bob], ops: [root] }
    rules:                          # grants are the union of matching rules
      - { repositories: ["team-a/**"], groups: [team-a], actions: [pull, push, delete] }
      - { repositories: ["public/**"], anonymous: true, actions: [pull] }
    admins: { groups: [ops] }       # /admin/* and /metrics; none: loopback only
    metrics: admin                  # or public
    failedLogins: 10                # login attempts per (address, user); then 429 until they decay (failedLoginDecay: 1m)
    failedLoginsPerAddress: 30      # per address whatever the user (IPv6: per /64)
    passwordChecks: 1               # bcrypt checks at once (default cores-1, 1..4); passwordCheckQueue: 16 more wait
    token: { realm: https://registry.example.com/auth/token, service: berth, ttl: 5m, key: /etc/berth/token.pem, trusted: [{ issuer: ..., jwks: https://... }] }
                                    # no realm: only loopback clients get a token realm, others a Basic challenge
  tls: { cert: /etc/berth/tls.crt, key: /etc/berth/tls.key, plainAddr: 127.0.0.1:5080 }   # plainAddr: loopback only
  proxy: { trusted: [10.0.0.0/8] }
  limits:
    maxHeaderBytes: 16384
    uploadsPerClient: 16        # concurrent upload requests per client (address + user)
    headerTimeout: 30s          # to send a request head (slowloris); 0 = none
    idleTimeout: 60s            # a request body without a byte; no total request time
    connectionsPerClient: 128   # per address (IPv6 /64), trusted proxies exempt; 0 = unlimited
    uploadSessionsPerUser: 1000 # open upload sessions per user, with auth

Pull-through cache (docs/pull-through-cache.md): any number of upstreams.

  mirrors:
    - url: https://registry-1.docker.io
      prefix: docker.io        # docker.io/alpine -> library/alpine upstream
      username: me             # password from passwordFile or passwordEnv
      passwordFile: /etc/berth/hub-password
      tagTtl: 5m               # a cached tag is re-checked upstream after this
      expireAfter: 30d         # a cached tag nobody pulls this long is untagged (GC does the rest)
    - url: https://mirror.example.com
      # no prefix: the default mirror (what dockerd --registry-mirror sends)
      ca: /etc/berth/mirror-ca.pem   # or insecure: true

Secrets come from files or the environment (BERTH_TOKEN_KEY holds a PEM signing
key), never from flags. Without auth.token.key a signing key is generated in
<data>/auth/.

Endpoints: /v2/ (the registry API), /auth/token (token service, with auth),
/healthz, /metrics, /admin/gc, /admin/events (and POST /admin/events/replay),
/admin/policies (+ /reload), /admin/quotas, /admin/tags (an admin deletes an
immutable tag), /ui (the web console; its JSON API under /ui/api/).

Notifications (see docs/notifications.md): events are written to the metadata
database with the change they report, and delivered from there:

  notifications:
    pulls: true                       # record pull events at all
    endpoints:
      - name: ci
        url: https://ci.example.com/registry-events
        headers: { Authorization: [Bearer xyz] }
        timeout: 5s
        threshold: 3                  # failures retried at once, then back off
        backoff: 1s                   # doubling, up to maxbackoff (5m)
        ignore: { mediatypes: [application/octet-stream], actions: [pull] }
        maxage: 24h                   # undelivered longer: dead-lettered
        maxevents: 1000000            # more pending: oldest dead-lettered
        batch: 100                    # events per envelope
        secret: s3cr3t                # optional: Berth-Signature HMAC header`,
  )
  .action(async (opts: ConfigOverrides & { deletes: boolean }) => {
    // Commander sets deletes=true by default for a --no- flag; only an explicit flag overrides.
    const explicit = program.commands.find((c) => c.name() === 'serve')!.getOptionValueSource('deletes') === 'cli';
    const { serve } = await import('./serve.js'); // loaded on demand: the other commands start faster without the HTTP stack
    await serve(loadConfig({ ...opts, deletes: explicit ? opts.deletes : undefined }));
  });

withCommonOptions(program.command('gc'))
  .description('collect garbage: untagged manifests, unreferenced blobs, abandoned uploads')
  .option('-n, --dry-run', 'report what would be deleted, delete nothing')
  .option('-v, --verbose', 'list each manifest and blob deleted')
  .option('-g, --grace <duration>', 'grace period for blobs and untagged manifests, overriding the config (0, 30m, 1h)')
  .option('--json', 'print the report as JSON')
  .addHelpText(
    'after',
    `
Safe to run at any time, while \`berth serve\` runs, and from several places at
once: every deletion is re-checked in the metadata transaction that makes it.
Takes the same --config and --data as serve. Exit status 0 on success.`,
  )
  .action(async (opts: GcFlags) => {
    const { gcCommand } = await import('./lifecycle.js');
    process.exitCode = await gcCommand(opts);
  });

withCommonOptions(program.command('fsck'))
  .description('check metadata against stored bytes, both ways (and repair with --repair)')
  .option('--repair', 'make blobs with missing or corrupt bytes unknown (corrupt bytes are quarantined) and remove orphaned bytes that an earlier run (at least --min-age before) also found unknown')
  .option('--quick', 'compare sizes only; do not hash every blob')
  .option('--min-age <duration>', 'ignore stored objects younger than this, and remove an orphan only this long after a run first found it', '10m')
  .option('--json', 'print the report as JSON')
  .addHelpText(
    'after',
    `
Orphaned bytes (no metadata names them) are removed in two phases: a run
records them, and a --repair run at least --min-age later removes those it
still finds unknown (so a commit under way is never taken for an orphan).
Exit status: 0 when clean, 1 when problems were found (with --repair they were
also repaired, orphans on their second look), 2 on a usage or configuration error.`,
  )
  .action(async (opts: FsckFlags) => {
    const { fsckCommand } = await import('./lifecycle.js');
    process.exitCode = await fsckCommand(opts);
  });

withCommonOptions(program.command('import'))
  .description("import a reference registry's storage (CNCF distribution, registry:2, docker-registry) into Berth")
  .argument('[source]', 'the reference registry\'s root directory (holding docker/registry/v2/), or s3://BUCKET/ROOTDIRECTORY; default: the storage of a reference config.yml given as --config')
  .option('--no-verify', 'do not hash blobs against their digests (faster; manifests are still checked): run berth fsck afterwards')
  .option('-n, --dry-run', 'read and check everything and report what would be imported; no metadata or blob is written (an empty data directory is created if there is none)')
  .option('-r, --repository <name>', 'import only this repository (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
  .option('--incremental', 'final pass of a migration: also remove from Berth the tags deleted in the source since the last import')
  .option('-v, --verbose', 'list every item not imported, with its reason')
  .option('--json', 'print the report as JSON')
  .option('--concurrency <n>', 'repositories imported at once', '32')
  .addHelpText(
    'after',
    `
Takes the same --config, --data, --metadata and --storage as serve, and imports
into those backends. Blobs on the same file system as Berth's data become
Berth's by hard link (copied across file systems); from S3 into S3 by a
server-side copy; otherwise they are streamed. The source is only read.

Safe to interrupt and run again: what is already in Berth is skipped, so a
second run changes nothing and a killed run finishes. Run it while the old
registry still serves, then put that one read-only and run it once more with
--incremental. S3 sources use the --s3-endpoint and AWS_* credentials.

Exit status 0 when the import ran (the summary lists what was not imported
and why), 2 on a usage or configuration error, 1 on a failure.`,
  )
  .action(async (source: string | undefined, opts: import('./import.js').ImportFlags) => {
    const { importCommand } = await import('./import.js');
    process.exitCode = await importCommand(source, opts);
  });

program
  .command('config')
  .description('configuration tools')
  .command('check')
  .description("check a configuration file (Berth's, or the reference registry's config.yml) and print what each key becomes")
  .argument('<file>', 'the YAML file')
  .option('--json', 'print the mapping as JSON')
  .addHelpText(
    'after',
    `
A reference registry config.yml (version: 0.1) is accepted by berth serve
--config as well: each key is shown with the Berth setting it maps to, or why
it is ignored. Exit status 0 when the file is valid, 2 when it is not.`,
  )
  .action(async (file: string, opts: { json?: boolean }) => {
    const { configCheckCommand } = await import('./config-check.js');
    process.exitCode = await configCheckCommand(file, opts);
  });

withCommonOptions(program.command('migrate'))
  .description('apply pending metadata schema migrations (serve also applies them at start)')
  .option('--status', 'only print the schema version and whether migrations are pending (exit 1 if any)')
  .option('--json', 'print the result as JSON')
  .addHelpText(
    'after',
    `
Safe to run while other nodes start or serve: migrations are applied under a
lock, each in its own transaction. A schema newer than this Berth is refused.`,
  )
  .action(async (opts: MigrateFlags) => {
    const { migrateCommand } = await import('./migrate.js');
    process.exitCode = await migrateCommand(opts);
  });

const policy = program.command('policy').description('retention, quota and immutable-tag policies');
withCommonOptions(policy.command('check <file>'))
  .description('validate the policies of a config file and show what each would match today (with --data or --metadata)')
  .option('--json', 'print the result as JSON')
  .addHelpText(
    'after',
    `
Reads the policies: section of FILE (the file serve takes with --config) and
checks it whole. Exit status 0 when valid, 2 with the reason when not. A
running server reads the same section again on SIGHUP (or POST
/admin/policies/reload); see docs/policies.md.`,
  )
  .action(async (file: string, opts: PolicyCheckFlags) => {
    const { policyCheckCommand } = await import('./policy.js');
    process.exitCode = await policyCheckCommand(file, opts);
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  if (e instanceof ConfigError) {
    process.stderr.write(`berth: ${e.message}\n`);
    process.exit(2);
  }
  if ((e as Error).name === 'SchemaTooNewError' || (e as Error).name === 'MetadataUnavailableError') {
    process.stderr.write(`berth: ${(e as Error).message}\n`);
    process.exit(1);
  }
  process.stderr.write(`berth: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
