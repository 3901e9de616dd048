# jfs-sidecar image: the webhook, controller and node service in one binary.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
COPY scripts ./scripts
# The harness (src/local: a local control plane, the kubelet stand-in) is not the product: it is not
# shipped, and `jfs-sidecar local` says so (src/cli/main.ts loads it on demand).
# npm run build: tsc, then the dashboard's page (scripts/build-dashboard.mjs).
RUN npm run build --silent && rm -rf dist/src/local && npm prune --omit=dev

FROM node:20-bookworm-slim
# The controller mounts JuiceFS volumes to create and remove PV directories.
RUN apt-get update && apt-get install -y --no-install-recommends fuse3 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=juicedata/mount:ce-v1.3.1 /usr/local/bin/juicefs /usr/local/bin/juicefs
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# package.json (the version) and proto/ (the CSI spec) beside dist/: src/util/package-root.ts finds them there.
COPY package.json ./
COPY proto ./proto
# The webhook runs as 65532 (manifests/webhook.yaml); the controller as root, privileged, for FUSE.
USER 65532:65532
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
