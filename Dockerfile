# One image, two deployables: `etcdop operator` and `etcdop agent` (the member pods' sidecar).
# The agent restores snapshots with etcdutl and checks them with a one-member etcd (the restore
# drill), so the etcd tools of the supported line come along.
ARG ETCD_VERSION=v3.6.16

FROM gcr.io/etcd-development/etcd:${ETCD_VERSION} AS etcd

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
COPY --from=etcd /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /usr/local/bin/
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin etcdop
USER 65532
ENTRYPOINT ["etcdop"]
CMD ["operator"]
