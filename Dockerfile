# syntax=docker/dockerfile:1
#
# Keyward container images (BuildKit; the syntax line above picks the Dockerfile frontend).
#
#   runtime   the production image, and the default target (the last stage):
#               docker build -t keyward .
#   dev       runtime plus SoftHSM2 and OpenSC (pkcs11-tool), and an entrypoint that can create a
#             SoftHSM token and AES key on first start, for trying the pkcs11 driver:
#               docker build --target dev -t keyward:dev .
#   standins  the Azure Key Vault / Entra ID and Google Cloud KMS stand-ins of the test suite, on
#             fixed ports, for docker-compose.yml (scripts/standins/serve.ts). Stand-ins written
#             for Keyward's tests, not emulators and not the real services.
#   deps, build, hsm, runtime-base: intermediate stages.
#
# Running the runtime image (production always sets KEYWARD_CONFIG; see docs/configuration.md):
#   docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#     -e KEYWARD_CONFIG=/etc/keyward/tenants.yaml -e KEYWARD_API_KEY \
#     -v /srv/keyward/config:/etc/keyward:ro -p 7777:7777 -p 9000:9000 keyward
# Mount the tenants file's DIRECTORY, not the file: Keyward watches the directory, and a
# single-file bind mount does not follow an editor's or Kubernetes' replace-by-rename.
#
# Without KEYWARD_CONFIG the image runs development mode (config/dev.yaml): it listens on
# 127.0.0.1 only, so it is reachable only from inside the container, and it writes its local
# master key under /app/.keyward-dev, which is writable by `node` on a writable root file system
# and NOT on a read-only one (mount a tmpfs or volume there if you must). Never in production.
#
# PKCS#11 vendor modules. The runtime is Debian (glibc): vendors ship their PKCS#11 modules and
# client libraries as glibc .so files, which do not load on musl (Alpine) or in a distroless
# image without their dependencies. Two ways to give Keyward one:
#   - mount it at run time, with whatever configuration files it needs, and name it in the
#     tenants file:  docker run -v /opt/vendor/lib:/opt/pkcs11:ro … (pkcs11.module: /opt/pkcs11/libvendor.so)
#   - bake it in: build with the named build context `hsm` pointing at the directory holding the
#     module (it replaces the `hsm` stage below, whose contents go to /opt/pkcs11/), and, if the
#     module needs Debian libraries, name their packages in the PKCS11_APT_PACKAGES build arg:
#       docker build --build-context hsm=/path/to/vendor/lib \
#         --build-arg PKCS11_APT_PACKAGES="libssl3 libpcsclite1" -t keyward-hsm .
#     A derived image works as well: FROM keyward, then COPY the module to /opt/pkcs11/.
#
# Signals: Keyward runs as PID 1 without an init process. That is deliberate: src/main.ts handles
# SIGTERM and SIGINT (drain, close drivers, exit) and SIGHUP (reload the tenants file), so the
# kernel's PID-1 rule that ignores signals without a handler does not bite, and Keyward starts no
# child processes that would need reaping. If a vendor PKCS#11 module forks helper processes, run
# the container with `docker run --init` (or `init: true` in compose; Kubernetes: a shared process
# namespace is not needed, the module's children are its own business) so that zombies are reaped.

# One Node.js major for every stage: native modules (pkcs11js) built in `deps` must match the
# runtime's Node ABI, and Debian bookworm on both sides gives the same glibc. Pin the images by
# digest in CI if you need reproducible builds.
ARG NODE_VERSION=24

# ------------------------------------------------------------------------------------------------
# deps: every npm dependency, from the lockfile, with the native module pkcs11js compiled.
FROM node:${NODE_VERSION}-bookworm AS deps
# node:*-bookworm (buildpack-deps) already has python3, make and g++ for node-gyp; install them
# only if a future base image lacks them.
RUN set -eu; \
    missing=""; \
    for tool in python3 make g++; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done; \
    if [ -n "$missing" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends python3 make g++; \
      rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /app
COPY package.json package-lock.json ./
# node-gyp builds pkcs11js against the headers of this image's own Node.js (/usr/local/include/node),
# rather than downloading a headers tarball.
RUN --mount=type=cache,target=/root/.npm,sharing=locked \
    if [ -f /usr/local/include/node/node.h ]; then export npm_config_nodedir=/usr/local; fi; \
    npm ci --no-audit --no-fund

# ------------------------------------------------------------------------------------------------
# build: dist/ compiled from src/, then the dev dependencies (TypeScript, tsx, eslint …) removed.
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ------------------------------------------------------------------------------------------------
# standins: the test suite's Azure and Google Cloud KMS stand-ins, for docker-compose.yml. Runs
# TypeScript through tsx, so it keeps the full dependency set (never the runtime image's).
FROM node:${NODE_VERSION}-bookworm-slim AS standins
# openssl: serve.ts makes the stand-ins' throwaway CA and server certificate on first start.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY src/kms/crc32c.ts ./src/kms/crc32c.ts
COPY test/helpers/emulator.ts test/helpers/https-standin.ts test/helpers/azure-token-standin.ts \
     test/helpers/azure-keyvault-standin.ts test/helpers/gcp-kms-standin.ts ./test/helpers/
COPY scripts/standins ./scripts/standins
# The TLS material lives in $KEYWARD_TEST_CACHE/azure-standin/ (a volume in compose, shared
# read-only with Keyward, which trusts its CA through NODE_EXTRA_CA_CERTS).
RUN mkdir -p /var/lib/keyward-standins \
 && chown node:node /var/lib/keyward-standins \
 && chmod 700 /var/lib/keyward-standins
# METADATA_SERVER_DETECTION: the stand-ins' own Cloud KMS admin client never looks for Google credentials.
ENV NODE_ENV=production \
    KEYWARD_TEST_CACHE=/var/lib/keyward-standins \
    STANDINS_HOST=0.0.0.0 \
    METADATA_SERVER_DETECTION=none
USER node
EXPOSE 8443 8444 8090
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "const net=require('node:net');const e=process.env;const ports=[e.STANDINS_AZURE_VAULT_PORT||8443,e.STANDINS_AZURE_TOKEN_PORT||8444,e.STANDINS_GCP_PORT||8090];Promise.all(ports.map((p)=>new Promise((ok,no)=>{const s=net.connect(Number(p),'127.0.0.1',()=>{s.end();ok()});s.on('error',no)}))).then(()=>process.exit(0),()=>process.exit(1))"]
ENTRYPOINT ["node", "--import", "tsx", "scripts/standins/serve.ts"]

# ------------------------------------------------------------------------------------------------
# hsm: what goes to /opt/pkcs11/ in the runtime image. Only a README here; `docker build
# --build-context hsm=/path/to/vendor/lib` replaces this stage with that directory.
FROM scratch AS hsm
COPY <<'EOF' /README
/opt/pkcs11 holds PKCS#11 vendor modules baked into this Keyward image with
`docker build --build-context hsm=/path/to/vendor/lib`, or mounted here at run time.
Name the module in the tenants file: pkcs11.module: /opt/pkcs11/<library>.so
EOF

# ------------------------------------------------------------------------------------------------
# runtime-base: everything the runtime image is; `runtime` and `dev` both start from it.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime-base
ARG NODE_VERSION
# Debian packages a baked-in PKCS#11 module needs (e.g. "libssl3"); none by default.
ARG PKCS11_APT_PACKAGES=""
RUN set -eu; \
    if [ -n "$PKCS11_APT_PACKAGES" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends $PKCS11_APT_PACKAGES; \
      rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /app
# Owned by root and read-only to the `node` user that runs Keyward.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config/dev.yaml ./config/dev.yaml
COPY LICENSE ./LICENSE
COPY --from=hsm / /opt/pkcs11/
# .keyward-dev: development mode's key directory (see the top of this file); the `keyward`
# command runs the CLI (docs/cli.md), e.g. `docker run --rm --entrypoint keyward IMAGE config check`.
RUN mkdir -p /app/.keyward-dev \
 && chown node:node /app/.keyward-dev \
 && chmod 700 /app/.keyward-dev \
 && printf '#!/bin/sh\nexec node /app/dist/cli.js "$@"\n' >/usr/local/bin/keyward \
 && chmod 755 /usr/local/bin/keyward
ARG KEYWARD_VERSION=0.1.0
LABEL org.opencontainers.image.title="Keyward" \
      org.opencontainers.image.description="Tenant security proxy: customer managed keys for SaaS, through each tenant's own KMS or HSM" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${KEYWARD_VERSION}" \
      org.opencontainers.image.base.name="docker.io/library/node:${NODE_VERSION}-bookworm-slim"
ENV NODE_ENV=production
# The `node` user of the Node.js images: uid 1000, gid 1000.
USER node
# API (KEYWARD_PORT) and ops (KEYWARD_OPS_PORT: /live /ready /health /metrics).
EXPOSE 7777 9000
# With node itself: the slim image has no curl or wget. Follows KEYWARD_OPS_PORT (an empty value
# counts as unset, as in Keyward); a KEYWARD_OPS_PORT of 0 (any free port) cannot be probed.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "const p=(process.env.KEYWARD_OPS_PORT||'').trim()||'9000';fetch('http://127.0.0.1:'+p+'/live',{signal:AbortSignal.timeout(2500)}).then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/main.js"]
# No arguments: the base image's CMD ["node"] must not reach main.js.
CMD []

# ------------------------------------------------------------------------------------------------
# dev: runtime plus SoftHSM2 and OpenSC, for trying the pkcs11 driver without hardware. With
# KEYWARD_SOFTHSM_INIT=1 the entrypoint creates, on first start, a SoftHSM token and an AES-256
# key in the writable directory KEYWARD_SOFTHSM_DIR (default /var/lib/keyward-softhsm: mount a
# volume there to keep it), then starts Keyward (or runs the command given):
#   KEYWARD_SOFTHSM_INIT=1            create the token and key when missing
#   KEYWARD_SOFTHSM_PIN               the token's user PIN (required with INIT; name it in the
#                                     tenants file as pin: { env: KEYWARD_SOFTHSM_PIN })
#   KEYWARD_SOFTHSM_TOKEN_LABEL       default keyward-dev
#   KEYWARD_SOFTHSM_KEY_LABEL         default keyward-master
#   KEYWARD_SOFTHSM_SO_PIN            default: random, not kept (the security officer PIN)
# The module is /usr/lib/softhsm/libsofthsm2.so; SOFTHSM2_CONF points into KEYWARD_SOFTHSM_DIR.
# Development only: the PINs are passed to softhsm2-util and pkcs11-tool on their command lines.
FROM runtime-base AS dev
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 opensc \
 && rm -rf /var/lib/apt/lists/*
COPY --chmod=755 <<'EOF' /usr/local/bin/keyward-dev-entrypoint
#!/bin/sh
# keyward-dev-entrypoint: the `dev` image's entrypoint (Dockerfile). Creates a SoftHSM token and
# AES key when asked (KEYWARD_SOFTHSM_INIT=1), then runs Keyward or the command given.
set -eu

say() { echo "keyward-dev: $*" >&2; }

module="${KEYWARD_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
dir="${KEYWARD_SOFTHSM_DIR:-/var/lib/keyward-softhsm}"
export SOFTHSM2_CONF="${SOFTHSM2_CONF:-$dir/softhsm2.conf}"

if [ "${KEYWARD_SOFTHSM_INIT:-0}" = 1 ]; then
  token="${KEYWARD_SOFTHSM_TOKEN_LABEL:-keyward-dev}"
  key="${KEYWARD_SOFTHSM_KEY_LABEL:-keyward-master}"
  pin="${KEYWARD_SOFTHSM_PIN:-}"
  if [ -z "$pin" ]; then
    say "KEYWARD_SOFTHSM_INIT=1 needs KEYWARD_SOFTHSM_PIN, the user PIN of the token to create or use"
    exit 2
  fi
  if [ ! -f "$SOFTHSM2_CONF" ]; then
    say "writing $SOFTHSM2_CONF (tokens in $dir/tokens)"
    mkdir -p "$dir/tokens"
    chmod 700 "$dir/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir/tokens" >"$SOFTHSM2_CONF"
  fi
  if pkcs11-tool --module "$module" --list-token-slots 2>/dev/null |
    awk -v t="$token" 'index($0, "token label") { sub(/^[^:]*: /, ""); if ($0 == t) found = 1 } END { exit !found }'; then
    say "SoftHSM token '$token' is there"
  else
    so_pin="${KEYWARD_SOFTHSM_SO_PIN:-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')}"
    say "creating SoftHSM token '$token' in $dir/tokens"
    out="$(softhsm2-util --init-token --free --label "$token" --so-pin "$so_pin" --pin "$pin" 2>&1)" ||
      { say "softhsm2-util --init-token failed: $out"; exit 1; }
  fi
  if pkcs11-tool --module "$module" --token-label "$token" --login --pin "$pin" \
    --list-objects --type secrkey --label "$key" 2>/dev/null | grep -q '^Secret Key Object'; then
    say "AES key '$key' is there on token '$token'"
  else
    say "creating AES-256 key '$key' on token '$token' (sensitive, never extractable; encrypt, decrypt, wrap, unwrap)"
    out="$(pkcs11-tool --module "$module" --token-label "$token" --login --pin "$pin" \
      --keygen --key-type AES:32 --label "$key" --sensitive --private --usage-decrypt --usage-wrap 2>&1)" ||
      { say "pkcs11-tool --keygen failed: $out"; exit 1; }
  fi
fi

if [ "$#" -eq 0 ]; then set -- node /app/dist/main.js; fi
exec "$@"
EOF
RUN mkdir -p /var/lib/keyward-softhsm /var/lib/keyward \
 && chown node:node /var/lib/keyward-softhsm /var/lib/keyward \
 && chmod 700 /var/lib/keyward-softhsm /var/lib/keyward
ENV SOFTHSM2_CONF=/var/lib/keyward-softhsm/softhsm2.conf
USER node
# exec keeps Keyward as PID 1, as in the runtime image.
ENTRYPOINT ["/usr/local/bin/keyward-dev-entrypoint"]
CMD ["node", "/app/dist/main.js"]

# ------------------------------------------------------------------------------------------------
# runtime: the production image. The last stage, so a plain `docker build` builds it.
FROM runtime-base AS runtime
USER node
